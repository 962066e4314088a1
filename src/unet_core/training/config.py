"""Training and fine-tuning settings: the one place their defaults live.

:class:`TrainConfig` holds what a training run is made of (the keys of a JSON
training config), :class:`FinetuneConfig` what a fine-tuning is made of.  The engine
(:func:`~unet_core.training.train.train_iter`,
:func:`~unet_core.training.finetune.finetune_iter`), the command line (its options
are built from the fields: name, default and help) and the Fine-tune widget (its
boxes start at the defaults) all read them from here.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field, fields

from ..errors import InputError
from ..inference.devices import DEFAULT_DEVICE

SCHEDULES = ("cosine", "restarts", "constant")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def at_least(low: int):
    """argparse type: an integer >= ``low``."""
    def check(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    check.__name__ = "int"      # argparse names the type in its messages
    return check


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _opt(default, text: str, kind=None, metavar: str | None = None, flag: str | None = None):
    """A config field with what its command-line option needs: ``text`` (its help), an
    argparse type ``kind``, ``metavar`` and, for a flag that turns a True default off,
    ``flag``."""
    meta = {"help": text, "type": kind, "metavar": metavar, "flag": flag}
    return field(default=default, metadata=meta)


_UNSET = object()


def _like(name: str, default=_UNSET, text: str | None = None):
    """The :class:`TrainConfig` field ``name`` (its default and option), for a config
    that shares it; ``default`` / ``text`` where it differs."""
    base = TrainConfig.__dataclass_fields__[name]
    meta = dict(base.metadata, help=text or base.metadata["help"])
    return field(default=base.default if default is _UNSET else default, metadata=meta)


class _Config:
    """What both configs share: checked construction from a dict, and ``replace``."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def _check(cls, values: dict) -> None:
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise InputError(f"Unknown training parameters {unknown}; use {list(cls.names())}.")

    @classmethod
    def from_dict(cls, values: dict):
        """A config from ``values`` (unknown keys are an :class:`InputError`)."""
        cls._check(values)
        return cls(**values)

    def replace(self, **changes):
        """A copy with ``changes``; None values keep the current one (an option not given)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        self._check(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig(_Config):
    """The settings of a training run (:func:`~unet_core.training.train.train_iter`).

    See :func:`~unet_core.training.train.lr_at` for the schedule and
    :class:`~unet_core.training.augment.AugmentConfig` for ``augment``.
    """

    steps: int = _opt(1000, "training steps", positive_int, "N")
    max_seconds: float | None = _opt(None, "time budget in seconds: stop (and save) when "
                                     "spent; the learning rate then anneals over the time",
                                     positive_float, "S")
    lr: float = _opt(1e-3, "peak learning rate", positive_float)
    batch_size: int = _opt(4, "crops per step", positive_int)
    crop: int = _opt(128, "crop size in px", positive_int)
    seed: int = _opt(0, "random seed", int)
    checkpoint_every: int = _opt(100, "write a checkpoint every N steps", positive_int, "N")
    val_every: int | None = _opt(None, "validate every N steps (and at the end)", positive_int, "N")
    schedule: str = _opt("cosine", f"learning-rate schedule: {', '.join(SCHEDULES)}")
    min_lr_fraction: float = _opt(0.01, "the schedule's lowest learning rate, as a share of lr")
    restart_period: int | None = _opt(None, "steps between warm restarts (default a third of "
                                      "the run)", positive_int, "N")
    warmup: int = _opt(0, "steps of linear learning-rate warm-up", int, "N")
    weight_decay: float = _opt(0.0, "Adam weight decay")
    augment: bool | dict = _opt(True, "train without augmentation", flag="--no-augment")
    reviewed_fraction: float = _opt(0.9, "share of crops centred on a reviewed pixel")
    average_from: int | None = _opt(None, "average the weights from this step on", positive_int, "N")
    average_every: int = _opt(250, "steps between two averaged snapshots", positive_int, "N")


@dataclass(frozen=True)
class FinetuneConfig(_Config):
    """The settings of a fine-tuning (:func:`~unet_core.training.finetune.finetune_iter`).

    A small learning rate and large crops keep the base model's skills; the held-back
    share of the examples compares the base and the new model.
    """

    steps: int = _like("steps", 300)
    max_seconds: float | None = _like("max_seconds")
    lr: float = _like("lr", 1e-4)
    seed: int = _like("seed")
    batch_size: int = _like("batch_size")
    crop: int = _like("crop", 256)
    warmup: int = _like("warmup", 20)
    val_fraction: float = _opt(0.2, "share of examples held back for the comparison", float)
    checkpoint_every: int = _like("checkpoint_every", 50)
    val_every: int | None = _like("val_every", text="validate every N steps (default: ten "
                                  "times a run)")
    augment: bool = _like("augment")
    device: str = _opt(DEFAULT_DEVICE, "auto, cpu, cuda, mps")

    @property
    def validation_interval(self) -> int:
        """Steps between validations: ``val_every``, or a tenth of the run.  Validating
        during the run lets the fine-tuning keep its best weights (never below the base)."""
        return self.val_every or max(1, self.steps // 10)

    def run_fraction(self, step_fraction: float, seconds: float) -> float:
        """How far a run is (0..1): its share of the steps, or of the time budget when
        that is spent sooner (the run then stops early)."""
        spent = seconds / self.max_seconds if self.max_seconds else 0.0
        return min(max(step_fraction, spent), 1.0)

    def train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` of the training loop (its other fields at their defaults)."""
        shared = {k: getattr(self, k) for k in TrainConfig.names() if k in self.names()}
        return TrainConfig(**dict(shared, val_every=self.validation_interval))


def lr_at(step: int, steps: int, lr: float, schedule: str = TrainConfig.schedule,
          min_lr_fraction: float = TrainConfig.min_lr_fraction,
          restart_period: int | None = TrainConfig.restart_period,
          warmup: int = TrainConfig.warmup) -> float:
    """Learning rate of the step with 0-based index ``step``.

    "cosine" anneals from ``lr`` to ``lr * min_lr_fraction`` over ``steps``;
    "restarts" does the same over every ``restart_period`` steps (default a third
    of the run); "constant" keeps ``lr``.  The first ``warmup`` steps ramp up linearly.
    """
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    if schedule == "restarts":
        period = max(1, restart_period or steps // 3)
        t = (step % period) / period
    else:
        t = step / max(steps - 1, 1)
    return lr * (min_lr_fraction + (1 - min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))
