"""The model choice of the dock widgets: installed models and any model folder."""
from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFileDialog

from unet_core import list_models

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
