"""Training a new U-Net from a config (architecture + training parameters).

Like a fine-tuning, it writes a new model folder (weights + card) through a locked
output folder, with checkpoints in ``<out_dir>/checkpoints`` while it runs.
"""
from __future__ import annotations

from collections.abc import Generator
from dataclasses import fields

import torch

from ..errors import InputError
from ..models.card import CONFIG_SCHEMA, INSTANCES_SCHEMA, NORMALIZATION_SCHEMA, check_fields
from ..models.model import UNet, UNetConfig
from ..models.modelio import Model, diameter_range, load_model, make_card
from ..progress import Progress, run_to_end
from .config import DEFAULT_DEVICE, FinetuneConfig, TrainConfig
from .finetune import _finish, _now, _split, _summary
from .outdir import CHECKPOINTS, check_out_dir, out_dir_lock
from .pairs import group_summary
from .results import ScratchResult
from .scaling import pair_at_model_scale, training_diameter
from .train import train_iter


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
        elif key in TrainConfig.names():
            train[key] = config.pop(key)
    rest_keys = {"name", "description", "normalization", "val_fraction", "instances", "diameter",
                 "data"}
    unknown = sorted(set(config) - rest_keys) + sorted(set(train) - set(TrainConfig.names()))
    if unknown:
        raise InputError(f"Unknown keys in the training config: {unknown}. Architecture keys: "
                         f"{sorted(arch_keys)}; training keys: {list(TrainConfig.names())}.")
    problems: list[str] = []
    check_fields("model", arch, CONFIG_SCHEMA, problems)     # the ranges a model card may hold
    for key, schema in (("normalization", NORMALIZATION_SCHEMA), ("instances", INSTANCES_SCHEMA)):
        if config.get(key) is not None:
            check_fields(key, config[key], schema, problems)
    if problems:
        raise InputError("The training config is not valid: " + "; ".join(problems) + ".")
    try:
        cfg = UNetConfig.from_dict(arch)
    except (ValueError, TypeError) as err:
        raise InputError(f"Invalid model configuration: {err}") from None
    return cfg, train, config


def train_from_scratch_iter(config_dict: dict, examples, out_dir, *, val_examples=None,
                            resume=False, overwrite: bool = False, device=DEFAULT_DEVICE, init=None,
                            **overrides) -> Generator[Progress, None, ScratchResult]:
    """Train a new U-Net from a config into ``out_dir``.

    Parameters
    ----------
    config_dict : dict
        See :func:`parse_config`; ``overrides`` (:class:`~.config.TrainConfig` fields,
        e.g. ``steps=``, ``seed=``, ``max_seconds=``) replace its training parameters.
    examples, val_examples, resume, overwrite, device
        As in :func:`finetune_iter`.
    init : str, path or Model, optional
        Start from this model's weights instead of a random initialization (a staged
        recipe).  Its architecture must be the config's; it is never modified, and the
        card records its name and hash.

    Returns
    -------
    ScratchResult
    """
    cfg, params, rest = parse_config(config_dict)
    train_cfg = TrainConfig.from_dict(params).replace(**overrides)
    params.update({k: v for k, v in overrides.items() if v is not None})
    params.setdefault("seed", train_cfg.seed)
    with out_dir_lock(out_dir) as out:
        return (yield from _scratch_locked(cfg, train_cfg, params, rest, examples, out,
                                           val_examples=val_examples, resume=resume,
                                           overwrite=overwrite, device=device, init=init))


def _scratch_locked(cfg, train_cfg, params, rest, examples, out, *, val_examples, resume,
                    overwrite, device, init):
    """:func:`train_from_scratch_iter` once the output folder's lock is held."""
    out = check_out_dir(out, resume=resume, overwrite=overwrite)
    val_fraction = float(rest.get("val_fraction", FinetuneConfig.val_fraction))
    train, val, held, problems = _split(examples, val_examples, val_fraction, train_cfg.seed)
    torch.manual_seed(train_cfg.seed)
    net = UNet(cfg)
    start = None
    if init is not None:
        start = init if isinstance(init, Model) else load_model(init)
        if start.config != cfg:
            raise InputError(f"The model to start from ({start.name}) has another architecture "
                             f"than the config: {start.config.to_dict()} vs {cfg.to_dict()}.")
        net.load_state_dict(start.net.state_dict())
    diameter = rest.get("diameter") or (start.diameter if start is not None else None)
    if any("group" in e.record for e in train + val):
        # annotated pairs: at the model's size and stain, as the Predictor shows images
        diameter = diameter or training_diameter(train)
        size_range = diameter_range(diameter) if diameter else (0.0, float("inf"))
        train = [pair_at_model_scale(e, diameter, size_range) for e in train]
        val = [pair_at_model_scale(e, diameter, size_range) for e in val]
    card = make_card(cfg, rest.get("name") or out.name, normalization=rest.get("normalization"),
                     instances=rest.get("instances"),
                     description=rest.get("description") or f"U-Net trained on {len(train)} examples",
                     diameter=diameter or training_diameter(train))
    result = yield from train_iter(net, train, val, train_cfg, checkpoint_dir=out / CHECKPOINTS,
                                   resume=resume, card=card, device=device)
    card["training"] = {"mode": "scratch", "date": _now(), "examples": _summary(train),
                        "val_examples": _summary(val), "held_back": held, "steps": result.step,
                        "stopped_by": result.stopped_by, "seconds": round(result.seconds, 1),
                        "final_loss": result.loss, "params": params}
    if any("group" in e.record for e in train):
        # which data sets (and so which licences) went into the weights
        card["training"]["data"] = group_summary(train)
        card["training"]["val_data"] = group_summary(val)
    if start is not None:
        card["training"]["init"] = {"name": start.name, "sha256": start.card.get("sha256"),
                                    "training": start.card.get("training")}
    card["metrics"] = {"val": result.val or {}, "held_back": held}
    _finish(net, out, card, keep_checkpoints=False)
    return ScratchResult(out, result.val or {}, held, result.without_history(), problems, card)


def train_from_scratch(*args, **kwargs) -> ScratchResult:
    """:func:`train_from_scratch_iter` run to the end."""
    return run_to_end(train_from_scratch_iter(*args, **kwargs))


__all__ = ["parse_config", "train_from_scratch", "train_from_scratch_iter"]
