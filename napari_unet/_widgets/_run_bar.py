"""Run and Cancel buttons, a progress bar and a status line, and what each stage reads as."""
from __future__ import annotations

from napari.utils import progress as napari_progress
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from unet_core import Progress
from unet_core.progress import Stage

#: What the user reads for each stage of the engine's work: the one table of them.
STAGE_TEXT = {
    Stage.LOAD: "Loading model", Stage.COMPILE: "Compiling the network (once per model)",
    Stage.ESTIMATE: "Estimating nucleus size", Stage.PREDICT: "Predicting tiles",
    Stage.INSTANCES: "Separating nuclei", Stage.MEASURE: "Measuring nuclei",
    Stage.WRITE: "Writing", Stage.PYRAMID: "Making the overview levels",
    Stage.FILE: "Segmenting", Stage.BATCH: "Segmenting",
    Stage.VALIDATE_BASE: "Scoring the base model", Stage.VALIDATE: "Validating",
    Stage.TRAIN: "Training",
}


def stage_text(stage: str) -> str:
    """What the user reads for ``stage`` (a :class:`~unet_core.progress.Stage` or its value)."""
    return STAGE_TEXT.get(stage, str(stage).capitalize())


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

    def report(self, p: Progress, text: str | None = None, of: str | None = None) -> None:
        """Show ``p`` (its fraction) with ``text`` or the stage's name; ``of`` says what
        the percentage counts ("12% of the time limit")."""
        value = int(round(1000 * min(max(p.fraction, 0.0), 1.0)))
        label = text or stage_text(p.stage)
        self.bar.setValue(value)
        self.bar.setFormat(f"{label}  %p%" + (f" of {of}" if of else ""))
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
