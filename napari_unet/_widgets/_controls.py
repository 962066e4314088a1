"""Qt controls shared by the dock widgets: model picker, folder field, run bar."""
from __future__ import annotations

from pathlib import Path

from napari.utils import progress as napari_progress
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from unet_core import Progress, list_models
from unet_core.stain import STAIN_CHOICES

from ._common import STAGE_TEXT, available_devices, inference_choices

BROWSE = "Browse..."


class ModelPicker(QComboBox):
    """Installed models (bundled, then the user's) and "Browse..." for any model folder.

    The item data is the model folder (str); "Browse..." has none.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self._extra: list[str] = []
        self._last = -1
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.setToolTip("Model to segment with: an installed model, or Browse... for a "
                        "model folder (model.safetensors + model.json)")
        self.refresh()
        self.activated.connect(self._on_activated)

    def refresh(self) -> None:
        """Re-read the installed models, keeping the current choice when it still exists."""
        current = self.model_path()
        self.blockSignals(True)
        self.clear()
        for m in list_models():
            self.addItem(f"{m['name']} ({m['source']})", str(m["path"]))
            self.setItemData(self.count() - 1, m.get("description") or str(m["path"]),
                             Qt.ToolTipRole)
        for path in self._extra:
            if self.findData(path) < 0:
                self.addItem(f"{Path(path).name} (folder)", path)
                self.setItemData(self.count() - 1, path, Qt.ToolTipRole)
        self.addItem(BROWSE)
        index = self.findData(current) if current else -1
        if index < 0:
            index = next((i for i in range(self.count() - 1)
                          if self.itemText(i).startswith("nuclei (")), 0)
        self.setCurrentIndex(index)
        self._last = index if self.itemData(index) else -1
        self.blockSignals(False)

    def showPopup(self) -> None:   # noqa: N802 (Qt override)
        """Re-read the installed models each time the list opens (new fine-tuned ones)."""
        self.refresh()
        super().showPopup()

    def model_path(self) -> str | None:
        """Folder of the chosen model, or None when there is none."""
        return self.currentData()

    def set_model(self, path) -> None:
        """Add a model folder (if new) and select it."""
        path = str(path)
        if self.findData(path) < 0:
            self._extra.append(path)
            self.refresh()
        self.setCurrentIndex(self.findData(path))
        self._last = self.currentIndex()

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) is not None:
            self._last = index
            return
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder")
        if folder:
            self.set_model(folder)
        else:
            self.setCurrentIndex(max(self._last, 0))


def fill_layer_combo(combo: QComboBox, viewer, kind, prefer: str | None = None) -> None:
    """List the names of the ``kind`` layers of ``viewer`` in ``combo``, keeping its choice.

    ``prefer`` is chosen when it is new in the list (e.g. the "<image> labels" a
    segmentation just made) or when the previous choice is gone; otherwise the active
    layer, otherwise the last one.
    """
    current = combo.currentText()
    before = {combo.itemText(i) for i in range(combo.count())}
    names = [layer.name for layer in viewer.layers if isinstance(layer, kind)]
    active = viewer.layers.selection.active
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if prefer in names and (current not in names or prefer not in before):
        combo.setCurrentText(prefer)
    elif current in names:
        combo.setCurrentText(current)
    elif isinstance(active, kind):
        combo.setCurrentText(active.name)
    elif names:
        combo.setCurrentIndex(len(names) - 1)
    combo.blockSignals(False)


def device_combo(parent=None) -> QComboBox:
    """A combo of the devices PyTorch can use here ("auto" first)."""
    combo = QComboBox(parent)
    combo.addItems(available_devices())
    combo.setToolTip("auto: the GPU when there is one, else the CPU")
    return combo


def inference_combo(parent=None) -> QComboBox:
    """The device and backend choice of Segment and Batch: "auto" (showing what it
    resolved to), the CPU with each installed backend and precision, then the GPUs.
    Item data: (device, backend, precision)."""
    from unet_core.backends import INSTALL_HINT, installed

    combo = QComboBox(parent)
    for text, data in inference_choices():
        combo.addItem(text, data)
    tip = ("What runs the network. auto: the GPU when there is one (PyTorch), else the fastest "
           "CPU backend installed; bf16 only where this CPU executes it natively.")
    if installed() == ["torch"]:
        tip += f"\n{INSTALL_HINT}."
    combo.setToolTip(tip)
    return combo


def tta_check(parent=None) -> QCheckBox:
    """The test-time augmentation box (unticked: one pass per tile)."""
    box = QCheckBox("test-time augmentation (4x slower)", parent)
    box.setToolTip("Average the network over each image and its mirror images: fewer split or "
                   "merged nuclei, four times the compute")
    return box


class ScaleControls(QWidget):
    """Nucleus size (a diameter in px, or "auto") with an Estimate button, and the stain.

    ``size_row`` and ``stain_combo`` go in a form; ``estimate`` is the button's signal.
    """

    estimate = Signal()

    def __init__(self, parent=None, estimate: bool = True):
        super().__init__(parent)
        self.diameter_spin = QDoubleSpinBox()
        self.diameter_spin.setRange(0.0, 600.0)
        self.diameter_spin.setDecimals(1)
        self.diameter_spin.setSuffix(" px")
        self.diameter_spin.setSpecialValueText("auto")
        self.diameter_spin.setToolTip(
            "Typical nucleus diameter in the image's pixels. The image is resampled so its "
            "nuclei come to the size the model was trained at.\nauto: estimated from each "
            "image (Estimate shows the value, which you may then change).")
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setToolTip("Estimate the nucleus diameter of the chosen image")
        self.estimate_button.clicked.connect(self.estimate)
        self.size_row = QWidget(self)
        row = QHBoxLayout(self.size_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.diameter_spin, 1)
        row.addWidget(self.estimate_button)
        self.estimate_button.setVisible(estimate)
        self.stain_combo = QComboBox()
        self.stain_combo.addItems(STAIN_CHOICES)
        self.stain_combo.setToolTip(
            "auto: decided from the channels and the background\nfluorescence: bright nuclei "
            "on dark\nbrightfield: dark nuclei on bright (inverted)\nhe: H&E colour image "
            "(hematoxylin by colour deconvolution)")

    def diameter(self):
        """"auto" or the diameter in px."""
        value = self.diameter_spin.value()
        return "auto" if value == 0 else float(value)

    def stain(self) -> str:
        return self.stain_combo.currentText()

    def show_estimate(self, settings) -> None:
        """Fill in an estimate (an :class:`~unet_core.scale.ImageSettings`)."""
        if settings.diameter:
            self.diameter_spin.setValue(round(settings.diameter, 1))
        if self.stain_combo.currentText() == "auto":
            self.stain_combo.setToolTip(f"auto chose: {settings.stain}")


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


class RunBar(QWidget):
    """Run and Cancel buttons, a progress bar and a status line.

    Mirrors the progress in napari's activity area while a run is going.
    """

    run = Signal()
    cancel = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.run_button = QPushButton("Run", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setTextVisible(True)
        self.bar.setFormat("")
        self.status = QLabel("Ready", self)
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        self._activity = None
        self.set_busy(False)

    def set_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def begin(self, desc: str) -> None:
        """A run starts: busy buttons, empty bar, a progress entry in napari's activity."""
        self.set_busy(True)
        self.bar.setValue(0)
        self.bar.setFormat("Starting...")
        self.status.setText(desc)
        self._activity = napari_progress(total=1000, desc=desc)

    def report(self, p: Progress, text: str | None = None) -> None:
        """Show ``p`` (its fraction) with ``text`` or the stage's name."""
        value = int(round(1000 * min(max(p.fraction, 0.0), 1.0)))
        label = text or STAGE_TEXT.get(p.stage, p.stage.capitalize())
        self.bar.setValue(value)
        self.bar.setFormat(f"{label}  %p%")
        activity = self._activity   # a local: napari may process events (and end()) in here
        if activity is not None:
            activity.update(value - activity.n)
            activity.set_description(label)

    def end(self, message: str, outcome: str = "Done") -> None:
        """The run is over: ``outcome`` ("Done", "Failed", "Cancelled") goes in the bar,
        ``message`` in the status line."""
        self.set_busy(False)
        if outcome == "Done":
            self.bar.setValue(self.bar.maximum())
        self.bar.setFormat(outcome)
        self.status.setText(message)
        if self._activity is not None:
            self._activity.close()
            self._activity = None

    def _on_cancel_clicked(self) -> None:
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelling...")
        self.cancel.emit()


def _on_warned(args: tuple) -> None:
    """A worker's warning (``warnings.showwarning`` arguments): the engine's own ones
    (e.g. a fast backend falling back to PyTorch) reach the user; libraries' notes do not."""
    from napari.utils.notifications import show_warning

    from unet_core.backends import BackendWarning

    message, category = args[0], args[1]
    if issubclass(category, BackendWarning):
        show_warning(str(message))


def start_job(owner, title: str, job, *args, **kwargs):
    """Run the generator function ``job(*args, **kwargs)`` off the GUI thread for ``owner``.

    The worker's signals go to ``owner._on_yielded``, ``_on_returned``, ``_on_errored``,
    ``_on_aborted`` and ``_on_finished`` (connected before it starts), it is kept in
    ``owner._worker`` and ``owner.run_bar`` shows ``title``.  superqt's worker, not
    napari's: napari's also posts every error with its traceback, and the user should
    get one readable message (each widget's ``_on_errored``).
    """
    from napari.qt.threading import create_worker
    from superqt.utils import GeneratorWorker

    worker = create_worker(job, *args, **kwargs, _worker_class=GeneratorWorker,
                           _ignore_errors=True, _start_thread=False)
    for signal in ("yielded", "returned", "errored", "aborted", "finished"):
        getattr(worker, signal).connect(getattr(owner, f"_on_{signal}"))
    worker.warned.connect(_on_warned)
    owner._worker = worker
    owner.run_bar.begin(title)
    worker.start()
    return worker
