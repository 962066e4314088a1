"""Qt controls shared by the dock widgets: folder field, layer and device choices, boxes.

The model picker, the run bar and the size / stain controls have modules of their
own; they are imported from here too.
"""
from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from ._inference import device_combo, inference_combo, tta_check
from ._model_picker import ModelPicker
from ._run_bar import RunBar
from ._scale_controls import ScaleControls
from ._scroll import scroll_body
from ._training import default_training_dir

__all__ = ["OUTPUT_KEY", "FolderEdit", "ModelPicker", "RunBar", "ScaleControls", "boxes_row",
           "check_box", "chosen_layer", "combo_box", "device_combo", "fill_layer_combo",
           "follow_selection", "form_row", "inference_combo", "lr_combo", "make_form", "scroll_body",
           "spin_box", "status_label", "training_set_edit", "tta_check", "watch_layers"]


#: Layer metadata key of the plugin's own probability layers: listed in the layer
#: choices, never chosen by themselves (a segmentation adds one and selects it).
OUTPUT_KEY = "napari_unet_output"


def _followed(layer, kind) -> bool:
    """Whether a combo of ``kind`` layers follows ``layer`` when it is opened or selected."""
    return isinstance(layer, kind) and layer.metadata.get(OUTPUT_KEY) != "probabilities"


def fill_layer_combo(combo: QComboBox, viewer, kind, prefer: str | None = None) -> None:
    """List the names of the ``kind`` layers of ``viewer`` in ``combo``.

    ``prefer`` is chosen when it is new in the list (e.g. the "<image> labels" a
    segmentation just made) or when the previous choice is gone; else a layer the user
    has just opened (the last new one); else the previous choice; else the active
    layer, else the last one.
    """
    current = combo.currentText()
    before = {combo.itemText(i) for i in range(combo.count())}
    names = [layer.name for layer in viewer.layers if isinstance(layer, kind)]
    known = getattr(combo, "_known_layers", None)       # ids of the layers listed before
    opened = [layer.name for layer in viewer.layers if known is not None
              and _followed(layer, kind) and id(layer) not in known]
    combo._known_layers = {id(layer) for layer in viewer.layers if isinstance(layer, kind)}
    active = viewer.layers.selection.active
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if prefer in names and (current not in names or prefer not in before):
        combo.setCurrentText(prefer)
    elif opened:
        combo.setCurrentText(opened[-1])
    elif current in names:
        combo.setCurrentText(current)
    elif isinstance(active, kind):
        combo.setCurrentText(active.name)
    elif names:
        combo.setCurrentIndex(len(names) - 1)
    combo.blockSignals(False)
    if current and combo.currentText() != current:
        combo.currentTextChanged.emit(combo.currentText())


def follow_selection(viewer, combo: QComboBox, kind) -> None:
    """Choose in ``combo`` the ``kind`` layer the user selects in the layer list."""
    def on_active(event=None):
        layer = viewer.layers.selection.active
        if _followed(layer, kind) and combo.findText(layer.name) >= 0:
            combo.setCurrentText(layer.name)

    viewer.layers.selection.events.active.connect(on_active)


def check_box(text: str, tip: str, checked: bool = False) -> QCheckBox:
    """A check box with a tooltip."""
    box = QCheckBox(text)
    box.setChecked(checked)
    box.setToolTip(tip)
    return box


def boxes_row(*boxes) -> QHBoxLayout:
    """Widgets side by side, then space."""
    row = QHBoxLayout()
    for box in boxes:
        row.addWidget(box)
    row.addStretch(1)
    return row


def combo_box(tip: str, items=()) -> QComboBox:
    """A combo box with a tooltip and ``items`` of (text, data)."""
    combo = QComboBox()
    for text, data in items:
        combo.addItem(text, data)
    combo.setToolTip(tip)
    return combo


def make_form(*rows) -> QFormLayout:
    """A form of (caption, widget) rows whose fields take the width."""
    form = QFormLayout()
    form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    for text, widget in rows:
        form.addRow(text, widget)
    return form


def status_label(text: str = "") -> QLabel:
    """A wrapping status line whose text can be selected (and copied)."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return label


def watch_layers(viewer, slot) -> None:
    """Call ``slot`` whenever the viewer's layers are added, removed, moved or renamed."""
    events = viewer.layers.events
    for event in (events.inserted, events.removed, events.reordered, events.renamed):
        event.connect(slot)


def training_set_edit() -> FolderEdit:
    """The training set folder field, at the per-user training set."""
    edit = FolderEdit("Choose the training set folder", button_text="Browse...")
    edit.set_path(default_training_dir())
    return edit


def chosen_layer(combo: QComboBox, viewer, kind):
    """The ``kind`` layer of ``viewer`` named in ``combo``, or None."""
    name = combo.currentText()
    layer = viewer.layers[name] if name in viewer.layers else None
    return layer if isinstance(layer, kind) else None


def spin_box(low: int, high: int, value: int, step: int, tip: str, special: str = "") -> QSpinBox:
    """An integer box from ``low`` to ``high`` at ``value``; ``special`` is shown at ``low``."""
    box = QSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    if special:
        box.setSpecialValueText(special)
    return box


def form_row(*pairs) -> QWidget:
    """One form row of (caption, box) pairs side by side."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for text, box in pairs:
        layout.addWidget(QLabel(text))
        layout.addWidget(box, 1)
    return row


def lr_combo(value: float, rates=(1e-3, 3e-4, 1e-4, 3e-5, 1e-5)) -> QComboBox:
    """The learning rates to choose from, shown as "1e-4" ..., ``value`` chosen."""
    combo = QComboBox()
    for lr in sorted(set(rates) | {value}, reverse=True):
        combo.addItem(f"{lr:.0e}".replace("e-0", "e-"), lr)
    combo.setCurrentIndex(combo.findData(value))
    combo.setToolTip("Peak learning rate (cosine schedule); small keeps the base model's skills")
    return combo


class FolderEdit(QWidget):
    """A folder path field with a browse button (``button_text``, "..." by default)."""

    def __init__(self, caption: str, parent=None, button_text: str = "..."):
        super().__init__(parent)
        self.caption = caption
        self.line = QLineEdit(self)
        self.line.setPlaceholderText("folder")
        self.button = QToolButton(self)
        self.button.setText(button_text)
        self.button.setToolTip(caption)
        self.button.clicked.connect(self._on_browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.line)
        layout.addWidget(self.button)
        self.line.textChanged.connect(self.line.setToolTip)

    def path(self) -> str:
        return self.line.text().strip()

    def set_path(self, path) -> None:
        self.line.setText(str(path))

    def _on_browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.caption, self.path())
        if folder:
            self.set_path(folder)
