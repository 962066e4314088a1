"""The Batch dock widget: segment every image of a folder, with a report of failures."""
from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_error, show_warning
from qtpy.QtWidgets import QComboBox, QLabel, QLineEdit, QListWidget, QListWidgetItem, QWidget

from unet_core import Progress
from unet_core.progress import Stage
from unet_core.scaleout.route import INPUT_SUFFIXES

from ._common import PredictorCache, PredictorKey, batch_job
from ._controls import (
    FolderEdit,
    ModelPicker,
    RunBar,
    ScaleControls,
    boxes_row,
    check_box,
    inference_combo,
    make_form,
    scroll_body,
    tta_check,
)
from ._jobs import JobRunner


def scheduler_combo() -> QComboBox:
    """Where a batch runs: here, a local dask cluster, or a typed scheduler address."""
    combo = QComboBox()
    combo.setEditable(True)
    combo.addItem("this machine", "")
    combo.addItem("local dask cluster (one worker per core)", "local")
    combo.setToolTip("this machine: one file after another in napari's process.\n"
                     "local dask cluster: files spread over worker processes.\n"
                     "Or type a dask scheduler's address, e.g. tcp://10.0.0.5:8786, to run "
                     "on a cluster (needs dask.distributed).")
    return combo


class BatchWidget(QWidget):
    """Segment a folder of images in a background thread (:func:`unet_core.scaleout.batch.batch_iter`).

    Writes ``<stem>_labels.tif``, optionally ``<stem>_prob.tif`` and
    ``<stem>_objects.csv`` per input into the output folder, resumes a previous run
    (files whose outputs are up to date are skipped) and lists files that failed.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (only for napari's activity area; nothing is added to it).
    """

    def __init__(self, napari_viewer=None, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._cache = PredictorCache()
        self._counts = {"done": 0, "skipped": 0, "failed": 0}
        self._input_dir = ""

        self.input_edit = FolderEdit("Choose the folder of input images")
        self.pattern_edit = QLineEdit()
        every = ", ".join(f"*{ext}" for ext in INPUT_SUFFIXES)
        self.pattern_edit.setPlaceholderText("every image (TIFF, PNG, JPEG, BMP, .zarr)")
        self.pattern_edit.setToolTip(f"Which files to segment, e.g. *.tif*, *.png, **/*.tif.\n"
                                     f"Empty: every image of the folder ({every}).")
        self.output_edit = FolderEdit("Choose the folder for the results")
        self.model_picker = ModelPicker()
        self.device_combo = inference_combo()
        self.labels_check = check_box("labels", "<stem>_labels.tif: uint32 instance labels", True)
        self.prob_check = check_box("probabilities", "<stem>_prob.tif: float32 probability maps")
        self.csv_check = check_box("CSV", "<stem>_objects.csv: area, centroid, intensity ... per "
                                   "object", True)
        self.tta_check = tta_check()
        self.scale = ScaleControls(self, estimate=False)   # "auto": estimated per file
        self.scheduler_combo = scheduler_combo()
        self.resume_check = check_box("skip files already done", "Resume: skip files done before "
                                      "with the same content, model and settings whose outputs "
                                      "are all there", True)
        self.run_bar = RunBar()
        self.jobs = JobRunner(self.run_bar, "Batch segmentation", progress=self._on_progress,
                              result=self._on_result,
                              cancelled="Cancelled (finished files are kept; Run resumes).")
        self.counts_label = QLabel()
        self.failed_list = QListWidget()
        self.failed_list.setWordWrap(True)
        self.failed_list.setToolTip("Files that could not be segmented, and why; results to check")
        self.failed_list.setMinimumHeight(60)

        layout = scroll_body(self)
        layout.addLayout(make_form(
            ("Input", self.input_edit), ("Files", self.pattern_edit),
            ("Output", self.output_edit), ("Model", self.model_picker),
            ("Nucleus size", self.scale.size_row), ("Stain", self.scale.stain_combo),
            ("Device", self.device_combo), ("Run on", self.scheduler_combo),
            ("Write", boxes_row(self.labels_check, self.prob_check, self.csv_check)),
            ("", self.tta_check), ("", self.resume_check)))
        layout.addWidget(self.run_bar)
        layout.addWidget(self.counts_label)
        layout.addWidget(QLabel("Failed files:"))
        layout.addWidget(self.failed_list, 1)

        self.run_bar.run.connect(self._on_run)
        self._show_counts()

    @property
    def running(self) -> bool:
        """Whether a batch is in progress."""
        return self.jobs.running

    def outputs(self) -> tuple[str, ...]:
        """The outputs ticked, as :func:`~unet_core.scaleout.batch.batch_iter` names them."""
        boxes = (("labels", self.labels_check), ("prob", self.prob_check), ("csv", self.csv_check))
        return tuple(name for name, box in boxes if box.isChecked())

    def _show_counts(self) -> None:
        c = self._counts
        self.counts_label.setText(f"done {c['done']}  ·  skipped {c['skipped']}  ·  "
                                  f"failed {c['failed']}")

    # -- slots ---------------------------------------------------------------------
    def _on_run(self) -> None:
        if self.running:
            return
        problem = ("Choose an input folder." if not self.input_edit.path() else
                   "Choose an output folder." if not self.output_edit.path() else
                   "Tick at least one output to write." if not self.outputs() else
                   "No model: choose a model folder with Model > Browse..."
                   if self.model_picker.model_path() is None else None)
        if problem:
            show_error(problem)
            return
        device, backend, precision = self.device_combo.currentData()
        key = PredictorKey(self.model_picker.model_path(), device, tta=self.tta_check.isChecked(),
                           backend=backend, precision=precision)
        self._counts = {"done": 0, "skipped": 0, "failed": 0}
        self._input_dir = str(Path(self.input_edit.path()))
        self.failed_list.clear()
        self._show_counts()
        self.jobs.start("Batch segmentation", batch_job, self._cache, key, self.input_edit.path(),
                        self.output_edit.path(), pattern=self.pattern_edit.text().strip() or None,
                        outputs=self.outputs(), device=key.device,
                        resume=self.resume_check.isChecked(), diameter=self.scale.diameter(),
                        stain=self.scale.stain(), scheduler=self.scheduler())

    def scheduler(self) -> str | None:
        """None (this process), "local" (a dask LocalCluster) or a scheduler address."""
        text = self.scheduler_combo.currentText().strip()
        index = self.scheduler_combo.findText(text)
        if index >= 0 and self.scheduler_combo.itemData(index) is not None:
            return self.scheduler_combo.itemData(index) or None
        return text or None

    def _on_progress(self, p) -> None:
        info = p.info
        if p.stage == Stage.FILE:
            frac = (p.done + info.fraction) / max(p.total, 1)
            text = f"{p.done + 1}/{p.total}  {info.file}"
            self.run_bar.report(Progress(int(frac * 1000), 1000, p.stage), text)
            return
        if p.stage != Stage.BATCH:
            self.run_bar.report(p)
            return
        if info.status in self._counts:
            self._counts[info.status] += 1
            self._show_counts()
        if info.status == "failed":
            # the file's name starts the line: drop its full path from the message
            error = (info.error or "").replace(str(Path(self._input_dir, info.file)), info.file)
            item = QListWidgetItem(f"{info.file}: {error}")
            item.setToolTip(info.error or "")
            self.failed_list.addItem(item)
        elif info.warning:
            item = QListWidgetItem(f"{info.file}: check: {info.warning}")
            item.setToolTip(info.warning)
            self.failed_list.addItem(item)
        self.run_bar.report(p, f"{p.done}/{p.total} files")

    def _on_result(self, report) -> str:
        n_failed, n_flagged = len(report.failed), len(report.flagged)
        if n_failed:
            show_warning(f"Batch: {n_failed} file{'s' if n_failed != 1 else ''} failed; the list says why.")
        if n_flagged:
            show_warning(f"Batch: {n_flagged} result(s) look implausible; check the nucleus size "
                         "and stain (listed below).")
        return (f"Finished: {len(report.done)} segmented, {len(report.skipped)} skipped, "
                f"{n_failed} failed" + (f", {n_flagged} to check." if n_flagged else "."))
