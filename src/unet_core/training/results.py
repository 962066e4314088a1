"""What a training, a fine-tuning and a training from scratch return."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

#: The id suffix of the band held back from a single example (see
#: :func:`~unet_core.training.finetune.hold_back_band`).
HELD_BACK_BAND = "(held-back band)"


@dataclass
class TrainResult:
    """The end of a :func:`~unet_core.training.train.train_iter` run.

    Attributes
    ----------
    step, start_step, steps : int
        Steps done in all, the step this run started from (a resumed run), steps asked.
    stopped_by : str
        "steps" or "time" (the time budget was spent).
    loss : float or None
        Loss of the last step.
    val : dict or None
        Last validation (mean ``dice``, ``ap50``, ``map``, ``n``).
    history : list of dict
        Per-step records (``step``, ``loss``, ``lr``, ``bce``, ``dice``[, ``val``]).
    seconds : float
        Training time, earlier runs of a resumed one included.
    checkpoint : str or None
        The last checkpoint folder.
    averaged : int
        How many snapshots the final weights average (0 without averaging).
    """

    step: int
    start_step: int
    steps: int
    stopped_by: str
    loss: float | None
    val: dict | None
    history: list = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: str | None = None
    averaged: int = 0

    def without_history(self) -> TrainResult:
        """A copy without the per-step records (small enough for a report)."""
        return dataclasses.replace(self, history=[])


@dataclass
class FinetuneResult:
    """The end of a :func:`~unet_core.training.finetune.finetune_iter` run.

    Attributes
    ----------
    model_dir : Path
        The new model folder.
    before, after : dict
        Mean ``dice`` / ``ap50`` / ``map`` (and ``n``) of the base and the new model on
        the held-back examples (empty without any).
    held_back : bool
        Whether the examples scored were kept out of training.
    train : TrainResult
        The training loop's result, without its history.
    problems : list of (str, str)
        Examples that could not be read, and why.
    card : dict
        The new model's card.
    """

    model_dir: Path
    before: dict
    after: dict
    held_back: bool
    train: TrainResult
    problems: list
    card: dict

    @property
    def held_back_band(self) -> bool:
        """Whether the scores are on a band held back from the one example."""
        val = self.card.get("training", {}).get("val_examples") or []
        return self.held_back and len(val) == 1 and str(val[0].get("id", "")).endswith(HELD_BACK_BAND)

    @property
    def improved(self) -> bool:
        """Whether the new model scores above its base on the held-back examples."""
        keys = ("ap50", "dice")
        return bool(self.after) and tuple(round(float(self.after.get(k, 0)), 4) for k in keys) > \
            tuple(round(float(self.before.get(k, 0)), 4) for k in keys)

    def outcome(self) -> str | None:
        """A plain line for people when the result needs one: no improvement (the new
        model is the base again), nothing held back, or too little held back to tell."""
        n_val = len(self.card.get("training", {}).get("val_examples") or [])
        if not self.held_back:
            return ("Nothing was held back to score on (one small example): the scores are "
                    "on the training example itself. Check the new model on other images.")
        if not self.improved:
            return ("No improvement: on the held-back examples the new model scores no better "
                    "than the base, so it keeps the base's weights. Usual reasons: few "
                    "corrected examples, or too few steps; add corrected regions or train "
                    "longer.")
        if n_val < 2:
            return ("Scored on a single held-back example: a small test. Check the new model "
                    "on other images before relying on it.")
        return None


@dataclass
class ScratchResult:
    """The end of a :func:`~unet_core.training.finetune.train_from_scratch_iter` run:
    as :class:`FinetuneResult`, with ``val`` (the new model on the held-back examples)
    in place of ``before`` / ``after``."""

    model_dir: Path
    val: dict
    held_back: bool
    train: TrainResult
    problems: list
    card: dict
