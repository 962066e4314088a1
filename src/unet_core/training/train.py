"""The training loop, in small steps: a :class:`Trainer` whose :meth:`~Trainer.train_step`
takes one optimisation step, :meth:`~Trainer.validate` scores the network,
:meth:`~Trainer.save_checkpoint` writes a checkpoint, and :meth:`~Trainer.run_training`
(behind :func:`train_iter`) strings them into a generator that can stop at any yield.

Each step draws a batch of random crops (centred mostly on reviewed pixels),
augments them, derives the foreground / boundary targets from the instance labels,
and takes one Adam step on BCE + Dice over the reviewed pixels.  The learning rate
follows a cosine (or cosine-with-warm-restarts) schedule computed from the step
alone, so a resumed run continues exactly where it left off.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..inference.devices import resolve_device
from ..inference.normalize import DEFAULT_NORMALIZATION
from ..models.modelio import Model, make_card
from ..progress import Progress, Stage, TrainStep
from .augment import AugmentConfig
from .batches import crop_batch, prepared_examples
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import DEFAULT_DEVICE, SCHEDULES, TrainConfig, lr_at
from .dataset import as_example
from .loss import masked_bce_dice_loss
from .pairs import sampling_weights
from .results import TrainResult
from .validate import evaluate_iter

log = logging.getLogger(__name__)


def _check_args(net, cfg: TrainConfig, train) -> None:
    steps, batch_size, crop, schedule = cfg.steps, cfg.batch_size, cfg.crop, cfg.schedule
    if not train:
        raise InputError("There are no training examples. Add corrected regions to the training "
                         "set (or give image and label folders) first.")
    if steps < 1 or batch_size < 1:
        raise InputError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}.")
    if crop < 1:
        raise InputError(f"crop must be >= 1 px, got {crop}.")
    if schedule not in SCHEDULES:
        raise InputError(f"Unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}.")
    if net.config.out_channels > 3:
        raise InputError(f"Training builds 3 target maps (foreground, boundary, centre); the "
                         f"network has {net.config.out_channels} outputs.")
    if cfg.average_from is not None and (int(cfg.average_from) < 1 or int(cfg.average_every) < 1):
        raise InputError(f"average_from and average_every must be >= 1, got {cfg.average_from} "
                         f"and {cfg.average_every}.")


class Trainer:
    """A U-Net being trained, one step at a time (nnU-Net's ``train_step`` /
    ``run_training`` shape).

    Building it prepares the examples, the optimizer and the random generators (and
    resumes from a checkpoint when asked); :meth:`train_step` takes one optimisation
    step, :meth:`validate` scores the network, :meth:`save_checkpoint` writes one, and
    :meth:`run_training` does all of it as a generator.  A run driven step by step
    and an uninterrupted one take the same steps with the same random numbers.

    Parameters
    ----------
    net : UNet
        Trained in place.
    train_examples, val_examples : sequence of Example or (image, labels[, mask])
        Images (H, W) or (H, W, C) of any dtype, labels uint (H, W), masks bool (H, W).
    config : TrainConfig, optional
        The run's settings; keyword ``overrides`` (its field names) replace some.
    checkpoint_dir : path, optional
        Where checkpoints go (see :mod:`.checkpoint`), every ``config.checkpoint_every``
        steps and at the end; ``keep_checkpoints`` of them are kept.
    resume : bool or path
        True: continue from the latest checkpoint in ``checkpoint_dir`` (if any);
        a path: from that checkpoint folder.
    normalization : dict, optional
        Percentiles ``{"low", "high"}``; default from ``card`` or the usual ones.
    card : dict, optional
        Model card written with checkpoints and used for validation.
    device : str
    """

    def __init__(self, net, train_examples, val_examples=(), config: TrainConfig | None = None, *,
                 checkpoint_dir=None, resume=False, normalization: dict | None = None,
                 card: dict | None = None, device=DEFAULT_DEVICE, keep_checkpoints: int = 2,
                 **overrides):
        cfg = self.config = (config or TrainConfig()).replace(**overrides)
        self.train = [as_example(e, i) for i, e in enumerate(train_examples)]
        self.val = [as_example(e, i) for i, e in enumerate(val_examples or ())]
        _check_args(net, cfg, self.train)
        if resume is True and checkpoint_dir is None:
            raise InputError("resume needs a checkpoint_dir to resume from.")
        self.net, self.device = net, resolve_device(device)
        self.checkpoint_dir, self.keep_checkpoints = checkpoint_dir, keep_checkpoints
        align = net.config.alignment
        self.crop = -(-int(cfg.crop) // align) * align
        norm = dict(normalization or (card or {}).get("normalization") or DEFAULT_NORMALIZATION)
        self.card = dict(card or make_card(net.config, "training", normalization=norm))
        self.card["normalization"] = norm
        self.aug = AugmentConfig.from_value(cfg.augment)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.data = prepared_examples(self.train, net.config.in_channels, norm)
        self.p = sampling_weights(self.train)
        if self.p is None:
            weight = np.array([float(d[2].sum()) for d in self.data])
            self.p = weight / weight.sum() if weight.sum() > 0 else None
        net.to(self.device).train()
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step = self.start_step = 0
        self.history: list[dict] = []
        self.avg: dict = {}
        self.averaged, self._elapsed_before, self.checkpoint = 0, 0.0, None
        if resume:
            self._resume(Path(resume) if resume is not True else latest_checkpoint(checkpoint_dir))
        self._t0 = time.monotonic()
        self._time_validations = 0
        self._saved_step = self.step if self.checkpoint is not None else None
        self.last_val = next((rec["val"] for rec in reversed(self.history) if rec.get("val")), None)

    def _resume(self, path: Path | None) -> None:
        if path is None:
            log.info("no checkpoint in %s; starting from step 0", self.checkpoint_dir)
            return
        extra: dict = {}
        doc = load_checkpoint(path, self.net, self.opt, self.rng, extra=extra)
        self.avg = {k.removeprefix("avg."): v.to(self.device) for k, v in extra.items()
                    if k.startswith("avg.")}
        self.averaged = int(doc.get("averaged", 0)) if self.avg else 0
        self.step = self.start_step = int(doc["step"])
        self.history = list(doc.get("history", []))
        self._elapsed_before = float(doc.get("seconds", 0.0))
        self.checkpoint = path
        log.info("resuming from %s (step %d)", path, self.step)

    @property
    def seconds(self) -> float:
        """Training time so far, earlier runs of a resumed one included."""
        return self._elapsed_before + time.monotonic() - self._t0

    def train_step(self) -> dict:
        """Take one optimisation step; returns its record (also added to ``history``):
        ``step``, ``loss``, ``lr``, ``bce``, ``dice``."""
        cfg, net = self.config, self.net
        cur_lr = lr_at(self._schedule_step(), cfg.steps, cfg.lr, cfg.schedule,
                       cfg.min_lr_fraction, cfg.restart_period, cfg.warmup)
        for g in self.opt.param_groups:
            g["lr"] = cur_lr
        x, y, m = (t.to(self.device) for t in crop_batch(
            self.data, self.p, cfg.batch_size, self.crop, self.rng, self.aug,
            cfg.reviewed_fraction, net.config.out_channels))
        net.train()
        loss, parts = masked_bce_dice_loss(net(x), y, m, return_parts=True)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        if cfg.average_from is not None and self.step >= cfg.average_from \
                and (self.step - cfg.average_from) % cfg.average_every == 0:
            self._add_to_average()
        rec = {"step": self.step, "loss": float(loss.detach()), "lr": cur_lr, **parts}
        self.history.append(rec)
        return rec

    def _schedule_step(self) -> int:
        """Where the learning-rate schedule is: the steps taken, or, when the time budget
        runs out first, as far into the steps as the run is into its time, so that a run
        stopped by ``max_seconds`` has annealed by then instead of ending at a high rate.
        A warm-up counts steps taken."""
        cfg = self.config
        if not cfg.max_seconds or self.step < cfg.warmup:
            return self.step
        spent = (time.monotonic() - self._t0) / cfg.max_seconds
        return max(self.step, min(int(spent * cfg.steps), cfg.steps - 1))

    def _add_to_average(self) -> None:
        self.averaged += 1
        with torch.no_grad():
            for k, v in self.net.state_dict().items():
                if k in self.avg and v.is_floating_point():
                    self.avg[k] += (v.detach() - self.avg[k]) / self.averaged
                else:  # the first snapshot, and counters (the latest value)
                    self.avg[k] = v.detach().clone()

    def validate(self) -> Generator[Progress, None, dict]:
        """Score the network on the val examples (yields "validate" progress); returns
        the mean scores, also kept as ``last_val``."""
        self.last_val = yield from evaluate_iter(Model(net=self.net, card=self.card), self.val,
                                                 self.device)
        return self.last_val

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the step reached (raw weights, optimizer, random
        generators, the running mean) into ``checkpoint_dir``."""
        cfg = self.config
        params = {"lr": cfg.lr, "batch_size": cfg.batch_size, "crop": self.crop, "seed": cfg.seed,
                  "schedule": cfg.schedule, "augment": self.aug is not None,
                  "weight_decay": cfg.weight_decay, "average_from": cfg.average_from,
                  "average_every": cfg.average_every}
        state = {"steps": cfg.steps, "seconds": self.seconds, "history": self.history[-1000:],
                 "train": params, "averaged": self.averaged}
        card = dict(self.card, training={**self.card.get("training", {}),
                                         "checkpoint_step": self.step})
        self.checkpoint = save_checkpoint(
            self.checkpoint_dir, self.step, self.net, self.opt, self.rng, state, card,
            self.keep_checkpoints, extra_tensors={f"avg.{k}": v for k, v in self.avg.items()})
        self._saved_step = self.step
        return self.checkpoint

    def _due(self, every: int | None) -> bool:
        return bool(every) and (self.step % every == 0 or self.step == self.config.steps)

    #: With a time budget, validation also falls at each of this many shares of it: a
    #: run stopped by time (``steps`` set high) reaches few of its step-based validations.
    TIME_VALIDATIONS = 10

    def _time_due(self) -> bool:
        cfg = self.config
        if not cfg.max_seconds or not cfg.val_every:
            return False
        share = int((time.monotonic() - self._t0) / cfg.max_seconds * self.TIME_VALIDATIONS)
        if share > self._time_validations:
            self._time_validations = share
            return True
        return False

    def run_training(self) -> Generator[Progress, None, TrainResult]:
        """Train to ``config.steps`` (or the time budget), validating and checkpointing
        on the way; yields ``Progress(step, steps, Stage.TRAIN, TrainStep)`` after each
        step (its ``val`` set when it validated) and "validate" progress while
        validating.  Stop by closing the generator; the network is left in eval mode."""
        cfg, stopped_by = self.config, "steps"
        try:
            while self.step < cfg.steps:
                if cfg.max_seconds is not None and time.monotonic() - self._t0 >= cfg.max_seconds:
                    stopped_by = "time"
                    break
                rec = self.train_step()
                if self.val and (self._due(cfg.val_every) or self._time_due()):
                    rec["val"] = yield from self.validate()
                if self.checkpoint_dir is not None and cfg.checkpoint_every \
                        and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                yield Progress(self.step, cfg.steps, Stage.TRAIN, TrainStep.of(rec))
            if self.checkpoint_dir is not None and self._saved_step != self.step:
                self.save_checkpoint()  # the raw weights (and the mean), to resume from
            if self.averaged:
                self.net.load_state_dict(self.avg)
                log.info("final weights: the mean of %d snapshots from step %d", self.averaged,
                         cfg.average_from)
            if self.val and self.step > self.start_step and (
                    self.averaged or not self.history or "val" not in self.history[-1]):
                self.history[-1]["val"] = yield from self.validate()
        finally:
            self.net.eval()
        return self.result(stopped_by)

    def result(self, stopped_by: str = "steps") -> TrainResult:
        """Where the training stands, as a :class:`TrainResult`."""
        return TrainResult(
            step=self.step, start_step=self.start_step, steps=self.config.steps,
            stopped_by=stopped_by, loss=self.history[-1]["loss"] if self.history else None,
            val=self.last_val, history=self.history, seconds=self.seconds,
            checkpoint=str(self.checkpoint) if self.checkpoint else None, averaged=self.averaged)


def train_iter(net, train_examples, val_examples=(), config: TrainConfig | None = None,
               **options) -> Generator[Progress, None, TrainResult]:
    """Train ``net`` in place; yield progress after every step (see :class:`Trainer`).

    ``options`` are :class:`Trainer`'s keyword arguments (``checkpoint_dir``,
    ``resume``, ``normalization``, ``card``, ``device``, ``keep_checkpoints``) and
    :class:`~.config.TrainConfig` fields (``steps=``, ``lr=`` ...) that replace the
    ``config``'s.

    Averaging (``average_from`` / ``average_every``): from that step on, every so many
    steps, the weights join a running mean, and when training ends the network takes
    that mean (the last validation is of the mean).  Averaging the snapshots of the
    decaying-learning-rate tail gives steadier, better-generalizing weights than the
    last snapshot alone.  Checkpoints keep the raw weights and the mean, so a resumed
    run averages exactly as an uninterrupted one.

    Returns
    -------
    TrainResult
    """
    return (yield from Trainer(net, train_examples, val_examples, config, **options).run_training())
