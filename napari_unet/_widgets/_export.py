"""Fine-tune's "Export for bioimage.io..." button: a model folder to a .zip package."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog, QPushButton

from unet_core import Progress

from ._jobs import JobRunner
from ._training import export_job, export_message


class ExportButton(QPushButton):
    """Asks for a .zip and writes a model there as a bioimage.io package, in the background.

    Parameters
    ----------
    run_bar : RunBar
        The bar the export reports on (the widget's own).
    model : callable
        The model folder to export, or None when there is none yet.
    busy : callable
        Whether the widget is running something else (the button then does nothing).
    """

    def __init__(self, run_bar, model: Callable[[], Path | None], busy: Callable[[], bool],
                 parent=None):
        super().__init__("Export for bioimage.io...", parent)
        self.setToolTip("Write the new model as a bioimage.io package (.zip) for QuPath, "
                        "Fiji/deepImageJ, ilastik and BiaPy")
        self.run_bar, self._model, self._busy = run_bar, model, busy
        self.jobs = JobRunner(run_bar, "Export", result=self._on_exported,
                              progress=self._on_progress,
                              cancelled="Cancelled: no package was written.")
        self.clicked.connect(lambda checked=False: self.export())

    def export(self, path: str | None = None) -> None:
        """Ask for a .zip (unless ``path`` is given) and export the model there."""
        from unet_core.models.export_bioimageio import INSTALL_HINT, bioimageio_installed

        model = self._model()
        if model is None or self._busy() or self.jobs.running:
            return
        if not bioimageio_installed():
            show_error("Exporting for bioimage.io needs bioimageio.core, which is not installed. "
                       f"Install it with: {INSTALL_HINT}")
            return
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export for bioimage.io", str(Path.home() / f"{model.name}.zip"),
                "bioimage.io package (*.zip)")
            if not path:
                return
        if not path.lower().endswith(".zip"):
            path += ".zip"
        self.jobs.start(f"Exporting {model.name}", export_job, model, path)

    def _on_progress(self, p: Progress) -> None:
        self.run_bar.report(p, f"Export step {p.done + 1} of {p.total}: {p.info.step}")

    def _on_exported(self, result) -> str:
        message = export_message(result)
        show_info(message)
        return message
