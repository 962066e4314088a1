"""The training loop: a generator that trains a U-Net step by step and can stop at any yield.

Each step draws a batch of random crops (centred mostly on reviewed pixels),
augments them, derives the foreground / boundary targets from the instance labels,
and takes one Adam step on BCE + Dice over the reviewed pixels.  The learning rate
follows a cosine (or cosine-with-warm-restarts) schedule computed from the step
alone, so a resumed run continues exactly where it left off.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import InputError
from ..inputs import as_planes
from ..instances import labels_to_targets
from ..modelio import Model, make_card
from ..normalize import normalize
from ..progress import Progress
from .augment import AugmentConfig, reviewed_points, scaled_crop
from .augment import augment as augment_crop
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .dataset import Example, as_example
from .loss import masked_bce_dice_loss
from .validate import evaluate_iter

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "restarts", "constant")


def lr_at(step: int, steps: int, lr: float, schedule: str = "cosine", min_lr_fraction: float = 0.01,
          restart_period: int | None = None, warmup: int = 0) -> float:
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


def _prepare(examples: Sequence[Example], in_channels: int, norm: dict) -> list[tuple]:
    """Normalize every example once: (image float32 (H, W, C), labels, mask, centre points)."""
    out = []
    for ex in examples:
        planes, stack = as_planes(ex.image, in_channels)
        if stack:
            raise InputError(f"Training example {ex.id} is a stack {ex.image.shape}; "
                             "train on single planes (H, W) or (H, W, C).")
        img = normalize(np.asarray(planes[0]), norm.get("low", 1.0), norm.get("high", 99.8))
        out.append((img, ex.labels, ex.mask, reviewed_points(ex.mask)))
    return out


def _batch(data, p, batch_size, crop, rng, aug, reviewed_fraction, out_channels):
    """(x (B, C, S, S), targets (B, K, S, S), mask (B, 1, S, S)) float32 tensors."""
    xs, ys, ms = [], [], []
    for k in rng.choice(len(data), size=batch_size, p=p):
        img, lab, msk, pts = data[k]
        img, lab, msk = scaled_crop(img, lab, msk, crop, rng, pts, reviewed_fraction, aug)
        if aug is not None:
            img, lab, msk = augment_crop(img, lab, msk, rng, aug)
        xs.append(img.transpose(2, 0, 1))
        ys.append(labels_to_targets(lab)[:out_channels])
        ms.append(msk[None].astype(np.float32))
    return tuple(torch.from_numpy(np.ascontiguousarray(np.stack(a), np.float32)) for a in (xs, ys, ms))


def _check_args(net, steps, batch_size, crop, schedule, train):
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


def train_iter(net, train_examples, val_examples=(), *, steps: int = 1000,
               max_seconds: float | None = None, lr: float = 1e-3, batch_size: int = 4,
               crop: int = 128, seed: int = 0, checkpoint_dir=None, checkpoint_every: int = 100,
               val_every: int | None = None, resume=False, schedule: str = "cosine",
               min_lr_fraction: float = 0.01, restart_period: int | None = None, warmup: int = 0,
               weight_decay: float = 0.0, augment=True, reviewed_fraction: float = 0.9,
               normalization: dict | None = None, card: dict | None = None, device="cpu",
               keep_checkpoints: int = 2, average_from: int | None = None,
               average_every: int = 250) -> Generator[Progress, None, dict]:
    """Train ``net`` in place; yield progress after every step.

    Parameters
    ----------
    net : UNet
        Trained in place (left in eval mode when the generator ends or is closed).
    train_examples, val_examples : sequence of Example or (image, labels[, mask])
        Images (H, W) or (H, W, C) of any dtype, labels uint (H, W), masks bool (H, W).
    steps : int
        Total optimizer steps (a resumed run counts the steps already done).
    max_seconds : float, optional
        Time budget of this call; training stops (with a checkpoint) when it is spent.
    lr, batch_size, crop, seed
        Peak learning rate, crops per step, crop side (rounded up to the network's
        alignment), seed of torch and of the numpy sampling / augmentation RNG.
    checkpoint_dir : path, optional
        Where checkpoints go (see :mod:`.checkpoint`), every ``checkpoint_every``
        steps and at the end.
    val_every : int, optional
        Validate every so many steps (and at the end) when there are val examples;
        default: at the end only.
    resume : bool or path
        True: continue from the latest checkpoint in ``checkpoint_dir`` (if any);
        a path: from that checkpoint folder.
    schedule, min_lr_fraction, restart_period, warmup
        Learning-rate schedule (see :func:`lr_at`).
    augment : bool, dict or AugmentConfig
    reviewed_fraction : float
        Share of crops centred on a reviewed pixel (the rest are uniform).
    normalization : dict, optional
        Percentiles ``{"low", "high"}``; default from ``card`` or 1 / 99.8.
    card : dict, optional
        Model card written with checkpoints and used for validation.
    average_from, average_every : int, optional
        Weight averaging: from step ``average_from`` on, every ``average_every`` steps,
        the weights join a running mean, and when training ends the network takes that
        mean (the last validation is of the mean).  Averaging the snapshots of the
        decaying-learning-rate tail gives steadier, better-generalizing weights than
        the last snapshot alone.  Checkpoints keep the raw weights and the mean, so a
        resumed run averages exactly as an uninterrupted one.

    Yields
    ------
    Progress
        ``Progress(step, steps, "train", {"loss", "lr", "bce", "dice"[, "val"]})`` after each
        step; ``Progress(i, n, "validate")`` while validating.  Stop by closing the generator.

    Returns
    -------
    dict
        ``step``, ``start_step``, ``steps``, ``stopped_by`` ("steps" | "time"), ``loss``,
        ``val`` (last validation), ``history`` (per-step records), ``seconds``, ``checkpoint``,
        ``averaged`` (how many snapshots the final weights average; 0 without averaging).
    """
    train = [as_example(e, i) for i, e in enumerate(train_examples)]
    val = [as_example(e, i) for i, e in enumerate(val_examples or ())]
    _check_args(net, steps, batch_size, crop, schedule, train)
    if resume and checkpoint_dir is None and resume is True:
        raise InputError("resume needs a checkpoint_dir to resume from.")
    dev = resolve_device(device)
    align = net.config.alignment
    crop = -(-int(crop) // align) * align
    norm = dict(normalization or (card or {}).get("normalization") or {"low": 1.0, "high": 99.8})
    card = dict(card or make_card(net.config, "training", normalization=norm))
    card["normalization"] = norm
    aug = AugmentConfig.from_value(augment)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = _prepare(train, net.config.in_channels, norm)
    weight = np.array([float(m.sum()) for _, _, m, _ in data])
    p = weight / weight.sum() if weight.sum() > 0 else None
    net.to(dev).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    start, history, elapsed_before, ckpt_path = 0, [], 0.0, None
    if average_from is not None and (int(average_from) < 1 or int(average_every) < 1):
        raise InputError(f"average_from and average_every must be >= 1, got {average_from} "
                         f"and {average_every}.")
    avg: dict = {}
    averaged = 0
    if resume:
        ckpt_path = Path(resume) if resume is not True else latest_checkpoint(checkpoint_dir)
        if ckpt_path is None:
            log.info("no checkpoint in %s; starting from step 0", checkpoint_dir)
        else:
            extra: dict = {}
            doc = load_checkpoint(ckpt_path, net, opt, rng, extra=extra)
            avg = {k.removeprefix("avg."): v.to(dev) for k, v in extra.items() if k.startswith("avg.")}
            averaged = int(doc.get("averaged", 0)) if avg else 0
            start, history = int(doc["step"]), list(doc.get("history", []))
            elapsed_before = float(doc.get("seconds", 0.0))
            log.info("resuming from %s (step %d)", ckpt_path, start)
    params = {"lr": lr, "batch_size": batch_size, "crop": crop, "seed": seed, "schedule": schedule,
              "augment": aug is not None, "weight_decay": weight_decay,
              "average_from": average_from, "average_every": average_every}
    t0 = time.monotonic()
    saved_step = start if ckpt_path is not None else None

    def checkpoint(step):
        state = {"steps": steps, "seconds": elapsed_before + time.monotonic() - t0,
                 "history": history[-1000:], "train": params, "averaged": averaged}
        ck_card = dict(card, training={**card.get("training", {}), "checkpoint_step": step})
        return save_checkpoint(checkpoint_dir, step, net, opt, rng, state, ck_card, keep_checkpoints,
                               extra_tensors={f"avg.{k}": v for k, v in avg.items()})

    def add_to_average():
        nonlocal averaged
        averaged += 1
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if k in avg and v.is_floating_point():
                    avg[k] += (v.detach() - avg[k]) / averaged
                else:  # the first snapshot, and counters (the latest value)
                    avg[k] = v.detach().clone()

    def validate():
        return (yield from evaluate_iter(Model(net=net, card=card), val, dev))

    step, stopped_by, last_val = start, "steps", None
    for rec in reversed(history):
        if rec.get("val"):
            last_val = rec["val"]
            break
    try:
        while step < steps:
            if max_seconds is not None and time.monotonic() - t0 >= max_seconds:
                stopped_by = "time"
                break
            cur_lr = lr_at(step, steps, lr, schedule, min_lr_fraction, restart_period, warmup)
            for g in opt.param_groups:
                g["lr"] = cur_lr
            x, y, m = (t.to(dev) for t in _batch(data, p, batch_size, crop, rng, aug,
                                                   reviewed_fraction, net.config.out_channels))
            net.train()
            loss, parts = masked_bce_dice_loss(net(x), y, m, return_parts=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if average_from is not None and step >= average_from \
                    and (step - average_from) % average_every == 0:
                add_to_average()
            rec = {"step": step, "loss": float(loss.detach()), "lr": cur_lr, **parts}
            if val and val_every and (step % val_every == 0 or step == steps):
                last_val = yield from validate()
                rec["val"] = last_val
            history.append(rec)
            if checkpoint_dir is not None and checkpoint_every and step % checkpoint_every == 0:
                ckpt_path, saved_step = checkpoint(step), step
            yield Progress(step, steps, "train", dict(rec))
        if checkpoint_dir is not None and saved_step != step:
            ckpt_path = checkpoint(step)  # the raw weights (and the mean), to resume from
        if averaged:
            net.load_state_dict(avg)
            log.info("final weights: the mean of %d snapshots from step %d", averaged, average_from)
        if val and step > start and (averaged or not history or "val" not in history[-1]):
            last_val = yield from validate()
            history[-1]["val"] = last_val
    finally:
        net.eval()
    loss = history[-1]["loss"] if history else None
    return {"step": step, "start_step": start, "steps": steps, "stopped_by": stopped_by,
            "loss": loss, "val": last_val, "history": history,
            "seconds": elapsed_before + time.monotonic() - t0,
            "checkpoint": str(ckpt_path) if ckpt_path else None, "averaged": averaged}
