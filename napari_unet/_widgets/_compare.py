"""The Fine-tune widget's comparison of the base and the new model, and "Use in Segment"."""
from __future__ import annotations

import math

from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from unet_core.training.validate import SCORES

from .. import PLUGIN_NAME

#: What the user reads for each score of the engine's validation.
SCORE_TEXT = dict(zip(SCORES, ("Dice", "AP50", "mAP 0.5:0.95")))


def _cell(value, change: bool) -> QTableWidgetItem:
    text = "–" if value is None or math.isnan(value) else (
        f"{value:+.3f}" if change else f"{value:.3f}")
    item = QTableWidgetItem(text)
    item.setTextAlignment(Qt.AlignCenter)
    return item


class CompareBox(QGroupBox):
    """A table of the base and the new model's scores on the held-back examples (and the
    change), a note on what they were scored on, and the "Use in Segment" button."""

    def __init__(self, parent=None):
        super().__init__("Base vs new model", parent)
        self.table = QTableWidget(len(SCORES), 3)
        self.table.setHorizontalHeaderLabels(["base", "new", "change"])
        self.table.setVerticalHeaderLabels([SCORE_TEXT[key] for key in SCORES])
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.use_button = QPushButton("Use in Segment")
        self.use_button.setToolTip("Select the new model in the Segment widget")
        box = QVBoxLayout(self)
        box.addWidget(self.table)
        box.addWidget(self.note)
        box.addWidget(self.use_button)
        self.setVisible(False)

    def show_scores(self, before: dict, after: dict, held_back: bool, band: bool = False) -> None:
        """Fill the table with the mean scores (``dice``, ``ap50``, ``map``, ``n``);
        ``band``: the held-back example is a band of the only example."""
        for row, key in enumerate(SCORES):
            b, a = before.get(key), after.get(key)
            cells = [b, a, a - b if a is not None and b is not None else None]
            for col, value in enumerate(cells):
                self.table.setItem(row, col, _cell(value, change=col == 2))
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().height() + 2 * self.table.frameWidth() + sum(
            self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(height)
        n = after.get("n", before.get("n", 0))
        self.note.setText(
            "On a band at the end of the example, held back: the model never trained "
            "on it." if held_back and band else
            f"On {n} held-back example{'s' if n != 1 else ''} the model never trained on."
            if held_back else "No example was held back (the set has one): scored on the "
            "training example itself, so 'new' looks better than it is.")
        self.setVisible(True)


def use_in_segment(viewer, model_dir) -> None:
    """Select the model folder ``model_dir`` in the viewer's Segment widget (docking one
    when there is none) and bring it to the front."""
    from .segment import SegmentWidget

    found = [w for w in viewer.window.dock_widgets.values() if isinstance(w, SegmentWidget)]
    if found:
        segment = found[0]
    else:
        _, segment = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, "Segment")
    segment.model_picker.set_model(model_dir)
    dock = segment.parent()      # napari's dock around the widget: bring it to the front
    if dock is not None:
        dock.show()
        dock.raise_()
    show_info(f"Segment now uses {model_dir.name}.")
