"""The Fine-tune dock widget: train a new model version on the training set, in the background."""
from __future__ import annotations

import time
from pathlib import Path

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QLabel, QWidget

from unet_core import Progress, UNetError
from unet_core.progress import Stage
from unet_core.training.config import FinetuneConfig
from unet_core.training.dataset import TrainingSet
from unet_core.training.outdir import discard_unfinished, new_model_dir

from .. import PLUGIN_NAME
from ._compare import CompareBox, use_in_segment
from ._controls import (
    ModelPicker,
    RunBar,
    device_combo,
    form_row,
    lr_combo,
    make_form,
    scroll_body,
    spin_box,
    training_set_edit,
)
from ._export import ExportButton
from ._jobs import JobRunner
from ._plot import TrainingPlot, theme_colors
from ._run_bar import stage_text
from ._training import (
    failure_note,
    finetune_child,
    finetune_job,
    set_summary,
    train_progress,
)


class FinetuneWidget(QWidget):
    """Fine-tune a model on the training set into a new model version, in a child process.

    The new model goes to ``<user models>/<base>-ft-<timestamp>``; the base model is never
    changed.  Training runs in its own process (a crash or a kill there is reported and
    napari stays up; its memory is freed when it ends), streaming its progress back:
    loss and validation scores are plotted live, Cancel stops within one step (and
    leaves no model behind), and at the end the base and the new model are compared on
    the held-back examples.  Closing the dock cancels a run.  The boxes start at the
    engine's defaults (:class:`~unet_core.training.config.FinetuneConfig`).

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (its theme colours the plot; "Use in Segment" finds its Segment widget).
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.child = None        # the ChildJob of the run in progress
        self._out_dir: Path | None = None
        self._t0, self._config = 0.0, FinetuneConfig()
        self.new_model: Path | None = None
        defaults = FinetuneConfig()

        self.model_picker = ModelPicker()
        self.model_picker.setToolTip("Model to start from (it is never changed)")
        self.folder_edit = training_set_edit()
        self.set_label = QLabel()
        self.steps_spin = spin_box(1, 1_000_000, defaults.steps, 50, "Optimizer steps to take")
        self.minutes_spin = spin_box(0, 10_000, round((defaults.max_seconds or 0) / 60), 5,
                                     "Stop after so many minutes even if steps are left (the "
                                     "model is saved)", special="none")
        self.minutes_spin.setSuffix(" min")
        self.lr_combo = lr_combo(defaults.lr)
        self.crop_spin = spin_box(32, 2048, defaults.crop, 32, "Side of the training crops, px")
        self.batch_spin = spin_box(1, 64, defaults.batch_size, 1, "Crops per step")
        self.device_combo = device_combo()
        self.device_combo.setCurrentText(defaults.device)
        self.run_bar = RunBar()
        self.run_bar.run_button.setText("Start")
        self.jobs = JobRunner(self.run_bar, "Fine-tuning", progress=self._on_progress,
                              result=self._on_result, failure_note=failure_note,
                              finished=self._on_job_over, cancel=self._on_cancel,
                              cancelled="Cancelled: no model was saved.")
        self.plot = TrainingPlot(*theme_colors(self.viewer))
        self.compare_box = CompareBox()
        self.table, self.compare_note = self.compare_box.table, self.compare_box.note
        self.use_button = self.compare_box.use_button
        self.export_button = ExportButton(self.run_bar, lambda: self.new_model,
                                          lambda: self.running)
        self.export_jobs = self.export_button.jobs
        self.compare_box.layout().addWidget(self.export_button)

        layout = scroll_body(self)
        layout.addLayout(make_form(
            ("Base model", self.model_picker), ("Training set", self.folder_edit),
            ("", self.set_label), ("Steps", self.steps_spin), ("Time limit", self.minutes_spin),
            ("Learning rate", self.lr_combo),
            ("Crops", form_row(("size", self.crop_spin), ("batch", self.batch_spin))),
            ("Device", self.device_combo)))
        layout.addWidget(self.run_bar)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.compare_box)

        self.run_bar.run.connect(self._on_run)
        self.use_button.clicked.connect(self._on_use_in_segment)
        self.folder_edit.line.textChanged.connect(self._on_folder_changed)
        self._on_folder_changed()

    @property
    def running(self) -> bool:
        """Whether a fine-tuning is in progress."""
        return self.jobs.running

    def config(self) -> FinetuneConfig:
        """The fine-tuning as set in the widget (the rest at the engine's defaults)."""
        minutes = self.minutes_spin.value()
        return FinetuneConfig(
            steps=self.steps_spin.value(), max_seconds=60.0 * minutes if minutes else None,
            lr=self.lr_combo.currentData(), crop=self.crop_spin.value(),
            batch_size=self.batch_spin.value(), device=self.device_combo.currentText())

    def count_examples(self) -> int:
        """Re-read the training set into the line under its folder; returns its size."""
        path = self.folder_edit.path()
        try:
            records = TrainingSet(Path(path).expanduser()).list() if path else []
        except UNetError as err:
            self.set_label.setText(str(err))
            return 0
        self.set_label.setText(set_summary(records))
        return len(records)

    def showEvent(self, event) -> None:   # noqa: N802 (Qt override)
        """Re-count the training set whenever the dock is shown (Curate may have added)."""
        self.count_examples()
        super().showEvent(event)

    def event(self, event) -> bool:
        """Closing the dock (napari unparents the widget) cancels a run: nothing else
        could."""
        if event.type() == QEvent.ParentChange and self.parent() is None and self.running:
            self.jobs.cancel()
        return super().event(event)

    # -- slots ---------------------------------------------------------------------
    def _on_folder_changed(self, text=None) -> None:
        self.count_examples()

    def _on_run(self) -> None:
        if self.running:
            return
        base, folder = self.model_picker.model_path(), self.folder_edit.path()
        problem = ("No base model: choose a model folder with Base model > Browse..."
                   if base is None else "Choose a training set folder." if not folder else
                   f"The training set {folder} has no examples yet: add corrected regions with "
                   f"Plugins > {PLUGIN_NAME} > Curate first." if not self.count_examples()
                   else None)
        if problem:
            show_error(problem)
            return
        self._config = self.config()
        self._out_dir, self._t0, self.new_model = new_model_dir(base), time.monotonic(), None
        self.plot.reset()
        self.compare_box.setVisible(False)
        self.child = finetune_child(base, Path(folder).expanduser(), self._out_dir, self._config)
        self.jobs.start(f"Fine-tuning {Path(base).name}", finetune_job, self.child)

    def _on_cancel(self) -> None:
        # the child stops before its next step and the worker ends with it: the clean-up
        # once the job is over runs when nothing writes into the new model's folder
        if self.child is not None:
            self.child.cancel()

    def _on_progress(self, p: Progress | None) -> None:
        if p is None:     # the child is busy and quiet (starting, loading)
            return
        if p.stage == Stage.TRAIN:
            self.plot.add_step(p.done, p.info.loss, p.info.val)
            self.run_bar.report(*train_progress(self._config, p, time.monotonic() - self._t0))
        elif p.stage in (Stage.VALIDATE, Stage.VALIDATE_BASE):
            self.run_bar.report(Progress(self.run_bar.bar.value(), 1000, p.stage),
                                f"{stage_text(p.stage)} {p.done}/{p.total}")
        else:
            self.run_bar.report(p)

    def _on_result(self, result) -> str:
        self.new_model = Path(result.model_dir)
        if result.before:
            self.plot.add_validation(0, result.before)
        self.compare_box.show_scores(result.before, result.after, result.held_back,
                                     result.held_back_band)
        train = result.train
        why = " (time budget)" if train.stopped_by == "time" else ""
        steps = f"{train.step} step{'s' if train.step != 1 else ''}"
        message = f"Saved {self.new_model.name}: {steps}{why} in {train.seconds:.0f} s."
        if result.problems:
            message += f" {len(result.problems)} example(s) could not be read and were skipped."
        self.model_picker.refresh()
        outcome = result.outcome()
        if outcome:
            show_warning(outcome)
            message += "\n" + outcome
        else:
            show_info(message)
        return message

    def _on_job_over(self) -> None:
        discard_unfinished(self._out_dir)   # checkpoints of a cancelled or failed run
        self.child = None
        self.plot.redraw()

    def _on_use_in_segment(self) -> None:
        if self.new_model is not None:
            use_in_segment(self.viewer, self.new_model)
