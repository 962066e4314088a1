"""Fine-tuning a model on corrected examples, and training one from scratch.

Both write a new model folder (weights + card) and never touch the base model's
folder or the bundled weights.  Checkpoints go to ``<out_dir>/checkpoints`` while
training runs (so a killed run can resume) and are removed once the final model
is saved.
"""
from __future__ import annotations

import copy
import datetime as _dt
import logging
import os
from collections.abc import Generator
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..model import UNet, UNetConfig
from ..modelio import Model, load_model, make_card, save_model, user_model_dir
from ..progress import Progress, run_to_end
from .checkpoint import discard_dir
from .dataset import TrainingSet, as_example
from .outdir import CHECKPOINTS, check_out_dir, new_sibling, out_dir_lock, replace_dir
from .scaling import to_model_scale, training_diameter
from .train import train_iter
from .validate import evaluate_iter

log = logging.getLogger(__name__)

# Keys of a training config (JSON) that go to train_iter.
TRAIN_KEYS = ("steps", "max_seconds", "lr", "batch_size", "crop", "seed", "checkpoint_every",
              "val_every", "schedule", "min_lr_fraction", "restart_period", "warmup",
              "weight_decay", "augment", "reviewed_fraction", "average_from", "average_every")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _examples(examples) -> tuple[list, list]:
    """Examples from a sequence, a TrainingSet or a training-set folder; plus load problems."""
    if isinstance(examples, (str, Path)):
        examples = TrainingSet(examples)
    if isinstance(examples, TrainingSet):
        return examples.load()
    return [as_example(e, i) for i, e in enumerate(examples)], []


def split_examples(examples, val_fraction: float, seed: int):
    """Hold back ``val_fraction`` of the examples (at least one, if there are two or more).

    Returns (train, val, held_back); with a single example it is used for both and
    ``held_back`` is False.
    """
    n = len(examples)
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    if val_fraction == 0 or n == 0:
        return list(examples), [], False
    if n == 1:
        log.warning("only one example: it is used both to train and to validate")
        return list(examples), list(examples), False
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    val = [examples[i] for i in sorted(order[:n_val])]
    train = [examples[i] for i in sorted(order[n_val:])]
    return train, val, True


def _score(metrics: dict | None) -> tuple:
    """Held-back score to maximise: AP50 first, Dice to break ties."""
    metrics = metrics or {}
    return (round(float(metrics.get("ap50", 0.0)), 6), round(float(metrics.get("dice", 0.0)), 6))


def _summary(examples) -> list[dict]:
    keep = ("source", "n_objects", "diameter", "scale", "stain")
    return [{"id": e.id, **{k: e.record.get(k) for k in keep if k in e.record or k in keep[:2]}}
            for e in examples]


def _finish(net, out: Path, card: dict, keep_checkpoints: bool) -> Path:
    # The new model is written complete beside ``out`` and swapped in: a crash at any
    # moment leaves the previous model (or none) or the new one, never a mix.
    new = new_sibling(out)
    try:
        save_model(net, new, card)
        if keep_checkpoints and (out / CHECKPOINTS).is_dir():
            os.replace(out / CHECKPOINTS, new / CHECKPOINTS)
        replace_dir(new, out)
    except BaseException:
        discard_dir(new)
        raise
    log.info("saved model %s", out)
    return out


def finetune_iter(base="nuclei", examples=(), out_dir=None, *, steps: int = 300,
                  max_seconds: float | None = None, lr: float = 1e-4, val_fraction: float = 0.2,
                  val_examples=None, seed: int = 0, batch_size: int = 4, crop: int = 256,
                  checkpoint_every: int = 50, val_every: int | None = None, resume=False,
                  overwrite: bool = False, name: str | None = None, description: str = "",
                  device="cpu", augment=True, keep_checkpoints: bool = False
                  ) -> Generator[Progress, None, dict]:
    """Fine-tune ``base`` on corrected examples into a new model folder.

    Parameters
    ----------
    base : str, path or Model
        Model name (bundled / user), folder, or a loaded Model.  Never modified.
    examples : sequence of Example or (image, labels[, mask]), TrainingSet, or folder
    out_dir : path, optional
        New model folder (default: ``<user_model_dir>/<base>-ft-<date>``).
    steps, max_seconds, lr, seed, batch_size, crop, checkpoint_every, val_every, augment
        See :func:`unet_core.training.train.train_iter`.
    val_fraction : float
        Share of examples held back to compare the base and new model (ignored when
        ``val_examples`` are given).
    resume : bool
        Continue from the last checkpoint in ``<out_dir>/checkpoints``.
    overwrite : bool
        Replace a finished model already in ``out_dir``.

    Yields
    ------
    Progress
        "validate-base" (scoring the base model), then "train" / "validate".

    Returns
    -------
    dict
        ``model_dir`` (Path), ``before`` and ``after`` (mean dice / ap50 / map on the
        held-back examples), ``held_back``, ``train`` (the train_iter result without
        its history), ``problems`` (examples that could not be read), ``card``.
    """
    model = base if isinstance(base, Model) else load_model(base)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    with out_dir_lock(out_dir or user_model_dir() / f"{model.name}-ft-{stamp}", model.path) as out:
        return (yield from _finetune_locked(
            model, examples, out, steps=steps, max_seconds=max_seconds, lr=lr,
            val_fraction=val_fraction, val_examples=val_examples, seed=seed, batch_size=batch_size,
            crop=crop, checkpoint_every=checkpoint_every, val_every=val_every, resume=resume,
            overwrite=overwrite, name=name, description=description, device=device,
            augment=augment, keep_checkpoints=keep_checkpoints))


def _finetune_locked(model, examples, out, *, steps, max_seconds, lr, val_fraction, val_examples,
                     seed, batch_size, crop, checkpoint_every, val_every, resume, overwrite, name,
                     description, device, augment, keep_checkpoints):
    """:func:`finetune_iter` once the output folder's lock is held."""
    out = check_out_dir(out, model.path, resume=resume, overwrite=overwrite)
    examples, problems = _examples(examples)
    if val_examples is not None:
        train, val, held = examples, [as_example(e, i) for i, e in enumerate(val_examples)], True
    else:
        train, val, held = split_examples(examples, val_fraction, seed)
    if not train:
        raise InputError("There are no usable training examples"
                         + (f" ({len(problems)} could not be read)." if problems else "."))
    # the examples as the network will see them at prediction: its stain and size
    from ..predict import Predictor

    viewer = Predictor(model, device="cpu", backend="torch")
    train = [to_model_scale(e, viewer) for e in train]
    val = [to_model_scale(e, viewer) for e in val]
    before = yield from evaluate_iter(model, val, device, stage="validate-base")
    net = copy.deepcopy(model.net)
    card = make_card(net.config, name or out.name, normalization=model.normalization,
                     instances=model.card.get("instances"), parent=model.name,
                     description=description or f"{model.name} fine-tuned on {len(train)} examples",
                     diameter=model.diameter)
    if model.card.get("diameter_range"):
        card["diameter_range"] = model.card["diameter_range"]
    gen = train_iter(
        net, train, val, steps=steps, max_seconds=max_seconds, lr=lr, batch_size=batch_size,
        crop=crop, seed=seed, checkpoint_dir=out / CHECKPOINTS, checkpoint_every=checkpoint_every,
        val_every=val_every, resume=resume, augment=augment, normalization=model.normalization,
        card=card, device=device)
    # Keep the best weights seen on the held-back examples, the base model's included,
    # so a fine-tune never scores below its base there.
    best = {"score": _score(before), "step": 0, "state": None} if val else None
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if best is not None and p.stage == "train" and (p.info or {}).get("val") \
                and _score(p.info["val"]) > best["score"]:
            best.update(score=_score(p.info["val"]), step=p.done,
                        state={k: v.detach().clone() for k, v in net.state_dict().items()})
        yield p
    after = result["val"]
    if after is None and val:
        after = yield from evaluate_iter(Model(net=net, card=card), val, device)
    kept = result["step"]
    if best is not None and after is not None and _score(after) < best["score"]:
        if best["state"] is None:
            net.load_state_dict(model.net.state_dict())
            after, kept = before, 0
        else:
            net.load_state_dict(best["state"])
            kept = best["step"]
            after = yield from evaluate_iter(Model(net=net, card=card), val, device)
        log.info("kept the weights of step %d (best on the held-back examples)", kept)
    train_info = {k: v for k, v in result.items() if k != "history"}
    card["training"] = {
        "mode": "finetune", "date": _now(), "parent": model.name,
        "parent_sha256": model.card.get("sha256"),
        "parent_path": str(Path(model.path).resolve()) if model.path else None,
        "examples": _summary(train), "val_examples": _summary(val), "held_back": held,
        "steps": result["step"], "resumed_from": result["start_step"] if resume else None,
        "stopped_by": result["stopped_by"], "kept_step": kept, "lr": lr, "seed": seed,
        "batch_size": batch_size, "crop": crop, "seconds": round(result["seconds"], 1),
        "final_loss": result["loss"],
    }
    card["metrics"] = {"before": before, "after": after or {}, "held_back": held}
    _finish(net, out, card, keep_checkpoints)
    return {"model_dir": out, "before": before, "after": after or {}, "held_back": held,
            "train": train_info, "problems": problems, "card": card}


def finetune(*args, **kwargs) -> dict:
    """:func:`finetune_iter` run to the end."""
    return run_to_end(finetune_iter(*args, **kwargs))


def parse_config(config: dict) -> tuple[UNetConfig, dict, dict]:
    """Split a training config into (UNetConfig, train parameters, the rest).

    Accepted forms: ``{"model": {UNetConfig fields}, "training": {...}, "normalization":
    {...}, "name": ..., "description": ..., "val_fraction": ...}``, or one flat dict
    mixing UNetConfig fields and training parameters.
    """
    if not isinstance(config, dict):
        raise InputError("A training config must be a JSON object (a dict).")
    config = dict(config)
    arch_keys = {f.name for f in fields(UNetConfig)}
    arch = dict(config.pop("model", {}) or {})
    train = dict(config.pop("training", {}) or {})
    for key in list(config):
        if key in arch_keys:
            arch[key] = config.pop(key)
        elif key in TRAIN_KEYS:
            train[key] = config.pop(key)
    rest_keys = {"name", "description", "normalization", "val_fraction", "instances"}
    unknown = sorted(set(config) - rest_keys) + sorted(set(train) - set(TRAIN_KEYS))
    if unknown:
        raise InputError(f"Unknown keys in the training config: {unknown}. Architecture keys: "
                         f"{sorted(arch_keys)}; training keys: {list(TRAIN_KEYS)}.")
    try:
        cfg = UNetConfig.from_dict(arch)
    except (ValueError, TypeError) as err:
        raise InputError(f"Invalid model configuration: {err}") from None
    return cfg, train, config


def train_from_scratch_iter(config_dict: dict, examples, out_dir, *, val_examples=None,
                            resume=False, overwrite: bool = False, device="cpu", init=None,
                            **overrides) -> Generator[Progress, None, dict]:
    """Train a new U-Net from a config into ``out_dir``.

    Parameters
    ----------
    config_dict : dict
        See :func:`parse_config`; ``overrides`` (e.g. ``steps=``, ``seed=``,
        ``max_seconds=``) replace its training parameters.
    examples, val_examples, resume, overwrite, device
        As in :func:`finetune_iter`.
    init : str, path or Model, optional
        Start from this model's weights instead of a random initialization (a staged
        recipe).  Its architecture must be the config's; it is never modified, and the
        card records its name and hash.

    Returns
    -------
    dict
        ``model_dir``, ``val`` (metrics on held-back examples), ``train``, ``problems``, ``card``.
    """
    cfg, params, rest = parse_config(config_dict)
    bad = sorted(set(overrides) - set(TRAIN_KEYS))
    if bad:
        raise InputError(f"Unknown training parameters {bad}; use {list(TRAIN_KEYS)}.")
    params.update({k: v for k, v in overrides.items() if v is not None})
    with out_dir_lock(out_dir) as out:
        return (yield from _scratch_locked(cfg, params, rest, examples, out, val_examples=val_examples,
                                           resume=resume, overwrite=overwrite, device=device,
                                           init=init))


def _scratch_locked(cfg, params, rest, examples, out, *, val_examples, resume, overwrite, device, init):
    """:func:`train_from_scratch_iter` once the output folder's lock is held."""
    out = check_out_dir(out, resume=resume, overwrite=overwrite)
    examples, problems = _examples(examples)
    seed = int(params.setdefault("seed", 0))
    if val_examples is not None:
        train, val, held = examples, [as_example(e, i) for i, e in enumerate(val_examples)], True
    else:
        train, val, held = split_examples(examples, float(rest.get("val_fraction", 0.2)), seed)
    if not train:
        raise InputError("There are no usable training examples"
                         + (f" ({len(problems)} could not be read)." if problems else "."))
    torch.manual_seed(seed)
    net = UNet(cfg)
    start = None
    if init is not None:
        start = init if isinstance(init, Model) else load_model(init)
        if start.config != cfg:
            raise InputError(f"The model to start from ({start.name}) has another architecture "
                             f"than the config: {start.config.to_dict()} vs {cfg.to_dict()}.")
        net.load_state_dict(start.net.state_dict())
    card = make_card(cfg, rest.get("name") or out.name, normalization=rest.get("normalization"),
                     instances=rest.get("instances"),
                     description=rest.get("description") or f"U-Net trained on {len(train)} examples",
                     diameter=training_diameter(train))
    result = yield from train_iter(net, train, val, checkpoint_dir=out / CHECKPOINTS, resume=resume,
                                   card=card, device=device, **params)
    card["training"] = {"mode": "scratch", "date": _now(), "examples": _summary(train),
                        "val_examples": _summary(val), "held_back": held, "steps": result["step"],
                        "stopped_by": result["stopped_by"], "seconds": round(result["seconds"], 1),
                        "final_loss": result["loss"], "params": params}
    if start is not None:
        card["training"]["init"] = {"name": start.name, "sha256": start.card.get("sha256"),
                                    "training": start.card.get("training")}
    card["metrics"] = {"val": result["val"] or {}, "held_back": held}
    _finish(net, out, card, keep_checkpoints=False)
    return {"model_dir": out, "val": result["val"] or {}, "held_back": held, "problems": problems,
            "train": {k: v for k, v in result.items() if k != "history"}, "card": card}


def train_from_scratch(*args, **kwargs) -> dict:
    """:func:`train_from_scratch_iter` run to the end."""
    return run_to_end(train_from_scratch_iter(*args, **kwargs))


__all__ = ["check_out_dir", "finetune", "finetune_iter", "parse_config",
           "split_examples", "train_from_scratch", "train_from_scratch_iter"]
