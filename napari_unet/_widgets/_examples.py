"""The Curate widget's view of a training set: a summary line, its examples, Open / Remove."""
from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from unet_core import UNetError

from ._training import example_text, set_summary


class ExampleList(QWidget):
    """The examples of a training set, one line each (source, plane, objects, date).

    ``summary_label`` goes in a form; the list and the Open / Remove buttons (enabled
    while an example is chosen) are this widget.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.summary_label = QLabel()
        self.list = QListWidget()
        self.list.setToolTip("Examples in the training set")
        self.list.setMinimumHeight(80)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Add the chosen example's image and labels as layers")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Delete the chosen example from the training set")
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.list.currentRowChanged.connect(self._on_selection_changed)

    def selected_id(self) -> str | None:
        """Id of the example chosen in the list, or None."""
        item = self.list.currentItem()
        return item.data(Qt.UserRole) if item is not None else None

    def selected_text(self) -> str:
        """The chosen example's source name, as the list shows it."""
        item = self.list.currentItem()
        return item.text().split(" · ")[0] if item is not None else ""

    def show_set(self, read_set, select: str | None = None) -> None:
        """Re-read the training set (``read_set()`` returns it, or raises UNetError)."""
        self.list.clear()
        try:
            records = read_set().list()
        except UNetError as err:
            self.summary_label.setText(str(err))
            records = []
        else:
            self.summary_label.setText(set_summary(records))
        for record in records:
            item = QListWidgetItem(example_text(record))
            item.setData(Qt.UserRole, record["id"])
            item.setToolTip(f"{record.get('source')}\n{record.get('reviewed_pixels', '?')} "
                            f"reviewed pixels\nid {record['id']}")
            self.list.addItem(item)
            if record["id"] == select:
                self.list.setCurrentItem(item)
        self._on_selection_changed()

    def _on_selection_changed(self, row=None) -> None:
        chosen = self.selected_id() is not None
        self.open_button.setEnabled(chosen)
        self.remove_button.setEnabled(chosen)
