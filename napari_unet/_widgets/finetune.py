"""The Fine-tune dock widget: train a new model version on the training set, in the background."""
from __future__ import annotations

import math
import time
from pathlib import Path

from napari.utils.notifications import show_error, show_info
from napari.utils.theme import get_theme
from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from unet_core import Progress, UNetError
from unet_core.child import ChildDied, JobCancelled
from unet_core.training.checkpoint import discard_dir
from unet_core.training.dataset import TrainingSet

from .. import PLUGIN_NAME
from ._common import describe_error
from ._controls import FolderEdit, ModelPicker, RunBar, device_combo, start_job
from ._plot import TrainingPlot
from ._training import (
    SCORES,
    default_training_dir,
    finetune_child,
    finetune_job,
    finished_model,
    new_model_dir,
)

LEARNING_RATES = ("1e-3", "3e-4", "1e-4", "3e-5", "1e-5")
STAGES = {"load": "Loading", "validate-base": "Scoring the base model",
          "validate": "Validating", "train": "Training"}


def _spin(low: int, high: int, value: int, step: int, tip: str, special: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    if special:
        box.setSpecialValueText(special)
    return box


def _row(*pairs) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for text, box in pairs:
        layout.addWidget(QLabel(text))
        layout.addWidget(box, 1)
    return row


class FinetuneWidget(QWidget):
    """Fine-tune a model on the training set into a new model version, in a child process.

    The new model goes to ``<user models>/<base>-ft-<timestamp>``; the base model is never
    changed.  Training runs in its own process (a crash or a kill there is reported and
    napari stays up; its memory is freed when it ends), streaming its progress back:
    loss and validation scores are plotted live, Cancel stops within one step (and
    leaves no model behind), and at the end the base and the new model are compared on
    the held-back examples.  Closing the dock cancels a run.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (its theme colours the plot; "Use in Segment" finds its Segment widget).
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self.child = None        # the ChildJob of the run in progress
        self._out_dir: Path | None = None
        self._t0, self._budget = 0.0, None   # start time and time budget (s) of the run
        self._ending = ("Done", "Done")
        self.new_model: Path | None = None

        self.model_picker = ModelPicker()
        self.model_picker.setToolTip("Model to start from (it is never changed)")
        self.folder_edit = FolderEdit("Choose the training set folder", button_text="Browse...")
        self.folder_edit.set_path(default_training_dir())
        self.set_label = QLabel()
        self.steps_spin = _spin(1, 1_000_000, 200, 50, "Optimizer steps to take")
        self.minutes_spin = _spin(0, 10_000, 0, 5, "Stop after so many minutes even if steps "
                                  "are left (the model is saved)", special="none")
        self.minutes_spin.setSuffix(" min")
        self.lr_combo = QComboBox()
        self.lr_combo.addItems(LEARNING_RATES)
        self.lr_combo.setCurrentText("1e-4")
        self.lr_combo.setToolTip("Peak learning rate (cosine schedule); small keeps the base "
                                 "model's skills")
        self.crop_spin = _spin(32, 2048, 256, 32, "Side of the training crops, px")
        self.batch_spin = _spin(1, 64, 4, 1, "Crops per step")
        self.device_combo = device_combo()
        self.run_bar = RunBar()
        self.run_bar.run_button.setText("Start")
        self.plot = TrainingPlot(*self._theme_colors())
        self.table = QTableWidget(len(SCORES), 3)
        self.table.setHorizontalHeaderLabels(["base", "new", "change"])
        self.table.setVerticalHeaderLabels([text for _, text in SCORES])
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.compare_note = QLabel()
        self.compare_note.setWordWrap(True)
        self.use_button = QPushButton("Use in Segment")
        self.use_button.setToolTip("Select the new model in the Segment widget")
        self.compare_box = QGroupBox("Base vs new model")
        box = QVBoxLayout(self.compare_box)
        box.addWidget(self.table)
        box.addWidget(self.compare_note)
        box.addWidget(self.use_button)
        self.compare_box.setVisible(False)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Base model", self.model_picker)
        form.addRow("Training set", self.folder_edit)
        form.addRow("", self.set_label)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Time limit", self.minutes_spin)
        form.addRow("Learning rate", self.lr_combo)
        form.addRow("Crops", _row(("size", self.crop_spin), ("batch", self.batch_spin)))
        form.addRow("Device", self.device_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_bar)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.compare_box)

        self.run_bar.run.connect(self._on_run)
        self.run_bar.cancel.connect(self._on_cancel)
        self.use_button.clicked.connect(self._on_use_in_segment)
        self.folder_edit.line.textChanged.connect(self._on_folder_changed)
        self._on_folder_changed()

    def _theme_colors(self) -> tuple[str, str]:
        try:
            theme = get_theme(self.viewer.theme)
        except (AttributeError, ValueError, KeyError):
            return "#23242b", "#f0f1f2"
        return theme.background.as_hex(), theme.text.as_hex()

    @property
    def running(self) -> bool:
        """Whether a fine-tuning is in progress."""
        return self._worker is not None

    def params(self) -> dict:
        """Keyword arguments of :func:`~unet_core.training.finetune.finetune_iter`."""
        steps = self.steps_spin.value()
        minutes = self.minutes_spin.value()
        return {"steps": steps, "max_seconds": 60.0 * minutes if minutes else None,
                "lr": float(self.lr_combo.currentText()), "crop": self.crop_spin.value(),
                "batch_size": self.batch_spin.value(), "device": self.device_combo.currentText(),
                "val_every": max(1, steps // 10), "val_fraction": 0.2, "seed": 0}

    # -- slots ---------------------------------------------------------------------
    def _on_folder_changed(self, text=None) -> None:
        self.count_examples()

    def count_examples(self) -> int:
        """Re-read the training set into the line under its folder; returns its size."""
        path = self.folder_edit.path()
        try:
            records = TrainingSet(Path(path).expanduser()).list() if path else []
        except UNetError as err:
            self.set_label.setText(str(err))
            return 0
        n, m = len(records), sum(r.get("n_objects", 0) for r in records)
        self.set_label.setText(f"{n} example{'s' if n != 1 else ''} · "
                               f"{m} object{'s' if m != 1 else ''}")
        return n

    def showEvent(self, event) -> None:   # noqa: N802 (Qt override)
        """Re-count the training set whenever the dock is shown (Curate may have added)."""
        self.count_examples()
        super().showEvent(event)

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
        params = self.params()
        self._out_dir, self._t0, self.new_model = new_model_dir(base), time.monotonic(), None
        self._budget, self._ending = params["max_seconds"], ("Done", "Done")
        self.plot.reset()
        self.compare_box.setVisible(False)
        self.child = finetune_child(base, Path(folder).expanduser(), self._out_dir, **params)
        start_job(self, f"Fine-tuning {Path(base).name}", finetune_job, self.child)

    def _on_cancel(self) -> None:
        # the child stops before its next step and the worker ends with it: the clean-up
        # in _on_finished runs once nothing writes into the new model's folder any more
        if self.child is not None:
            self.child.cancel()

    def event(self, event) -> bool:
        """Closing the dock (napari unparents the widget) cancels a run: nothing else
        could."""
        if event.type() == QEvent.ParentChange and self.parent() is None and self.running:
            self._on_cancel()
        return super().event(event)

    def _on_yielded(self, p: Progress | None) -> None:
        if p is None:     # the child is busy and quiet (starting, loading)
            return
        info = p.info or {}
        label = STAGES.get(p.stage, p.stage.capitalize())
        if p.stage == "train":
            self.plot.add_step(p.done, info["loss"], info.get("val"))
            spent = (time.monotonic() - self._t0) / self._budget if self._budget else 0.0
            frac = max(p.fraction, spent)
            self.run_bar.report(Progress(int(1000 * min(frac, 1.0)), 1000, p.stage),
                                f"Step {p.done}/{p.total} · loss {info['loss']:.3f}")
        elif p.stage in ("validate", "validate-base"):
            self.run_bar.report(Progress(self.run_bar.bar.value(), 1000, p.stage),
                                f"{label} {p.done}/{p.total}")
        else:
            self.run_bar.report(p, label)

    def _on_returned(self, result: dict) -> None:
        self.new_model = Path(result["model_dir"])
        before, after = result.get("before") or {}, result.get("after") or {}
        if before:
            self.plot.add_validation(0, before)
        self._show_comparison(before, after, result.get("held_back", False))
        train = result.get("train", {})
        why = " (time budget)" if train.get("stopped_by") == "time" else ""
        message = (f"Saved {self.new_model.name}: {train.get('step', '?')} steps{why} in "
                   f"{train.get('seconds', 0.0):.0f} s.")
        problems = result.get("problems") or []
        if problems:
            message += f" {len(problems)} example(s) could not be read and were skipped."
        self._ending = ("Done", message)
        self.model_picker.refresh()
        show_info(message)

    def _show_comparison(self, before: dict, after: dict, held_back: bool) -> None:
        for row, (key, _) in enumerate(SCORES):
            b, a = before.get(key), after.get(key)
            cells = [b, a, a - b if a is not None and b is not None else None]
            for col, value in enumerate(cells):
                text = "–" if value is None or math.isnan(value) else (
                    f"{value:+.3f}" if col == 2 else f"{value:.3f}")
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignCenter)
                self.table.setItem(row, col, item)
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().height() + 2 * self.table.frameWidth() + sum(
            self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(height)
        n = after.get("n", before.get("n", 0))
        self.compare_note.setText(
            f"On {n} held-back example{'s' if n != 1 else ''} the model never trained on."
            if held_back else "No example was held back (the set has one): scored on the "
            "training example itself, so 'new' looks better than it is.")
        self.compare_box.setVisible(True)

    def _on_errored(self, exc) -> None:
        if isinstance(exc, JobCancelled):
            self._on_aborted()
            return
        message = describe_error(exc, "Fine-tuning")
        if isinstance(exc, ChildDied) or not isinstance(exc, UNetError):
            message += " No model was saved; the base model and the training set are unchanged."
        self._ending = ("Failed", f"Failed: {message}")
        show_error(message)

    def _on_aborted(self) -> None:
        self._ending = ("Cancelled", "Cancelled: no model was saved.")

    def _on_finished(self) -> None:
        outcome, message = self._ending
        out, self._worker, self.child = self._out_dir, None, None
        if out is not None and not finished_model(out):
            discard_dir(out)   # checkpoints of a cancelled or failed run: not a model
        self.run_bar.end(message, outcome)
        self.plot.redraw()

    def _on_use_in_segment(self) -> None:
        if self.new_model is None:
            return
        from .segment import SegmentWidget

        found = [w for w in self.viewer.window.dock_widgets.values() if isinstance(w, SegmentWidget)]
        if found:
            segment = found[0]
        else:
            _, segment = self.viewer.window.add_plugin_dock_widget(PLUGIN_NAME, "Segment")
        segment.model_picker.set_model(self.new_model)
        dock = segment.parent()      # napari's dock around the widget: bring it to the front
        if dock is not None:
            dock.show()
            dock.raise_()
        show_info(f"Segment now uses {self.new_model.name}.")
