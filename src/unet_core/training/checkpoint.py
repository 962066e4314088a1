"""Training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint is a folder ``<checkpoint_dir>/step-<NNNNNNN>`` that is itself a model
folder (``model.safetensors`` + ``model.json``, loadable with
:func:`unet_core.models.modelio.load_model`) plus ``optimizer.safetensors`` (Adam moments,
torch RNG state) and ``checkpoint.json`` (step, schedule, numpy RNG state, history).
It is written under a hidden temporary name and renamed into place when complete,
so a crash never leaves a half-written checkpoint under a ``step-*`` name.
"""
from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import ModelFileError
from ..files.fileio import save_tensors
from ..files.safefiles import atomic_write
from ..models.modelio import CARD_NAME, load_model, make_card, save_model

log = logging.getLogger(__name__)

STATE_NAME = "checkpoint.json"
OPTIMIZER_NAME = "optimizer.safetensors"
FORMAT = "unet_core.checkpoint"


def discard_dir(path) -> None:
    """Delete a checkpoint or model folder so that no moment leaves a card without weights.

    The folder is renamed to a hidden name first (atomic), then its cards (which make
    it look like a model or checkpoint) are deleted, then the rest.
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.name.startswith("."):
        hidden = path.with_name(f".tmp-old-{path.name}-{uuid.uuid4().hex[:8]}")
        path.rename(hidden)
        path = hidden
    for card in (STATE_NAME, CARD_NAME):
        for p in path.rglob(card):
            p.unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def _step_dirs(checkpoint_dir: Path) -> list[Path]:
    if not checkpoint_dir.is_dir():
        return []
    return sorted((p for p in checkpoint_dir.glob("step-*") if p.is_dir()), reverse=True)


def latest_checkpoint(checkpoint_dir) -> Path | None:
    """The complete checkpoint with the highest step in ``checkpoint_dir``, or None."""
    for p in _step_dirs(Path(checkpoint_dir)):
        if (p / STATE_NAME).exists():
            return p
    return None


def save_checkpoint(checkpoint_dir, step: int, net, optimizer: torch.optim.Optimizer,
                    rng: np.random.Generator, state: dict, card: dict | None = None,
                    keep: int = 2, extra_tensors: dict | None = None) -> Path:
    """Write a checkpoint atomically and keep only the ``keep`` newest.

    Parameters
    ----------
    checkpoint_dir : path
    step : int
        Steps completed.
    net : UNet
    optimizer : torch Optimizer
        Its tensors go to safetensors, its hyper-parameters to JSON.
    rng : numpy Generator
        The augmentation / sampling RNG, restored on resume.
    state : dict
        JSON-compatible training state (schedule, history, elapsed time ...).
    card : dict, optional
        Model card of the weights (default: a minimal one).
    keep : int
        How many of the newest checkpoints to keep.
    extra_tensors : dict, optional
        More named tensors to keep with the optimizer state (e.g. a running weight
        average); :func:`load_checkpoint` gives them back through ``extra``.
    """
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for stale in checkpoint_dir.glob(".tmp-*"):
        discard_dir(stale)
    final = checkpoint_dir / f"step-{step:07d}"
    tmp = checkpoint_dir / f".tmp-{step:07d}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        card = dict(card or make_card(net.config, f"checkpoint-{step}"))
        save_model(net, tmp, card)
        tensors, extra, groups = _optimizer_parts(optimizer, extra_tensors)
        save_tensors(tensors, tmp / OPTIMIZER_NAME)
        doc = {"format": FORMAT, "version": 1, "step": int(step), "optimizer": type(optimizer).__name__,
               "param_groups": groups, "state_scalars": extra,
               "numpy_rng": rng.bit_generator.state, **state}
        with atomic_write(tmp / STATE_NAME) as p:
            p.write_text(json.dumps(doc, indent=1) + "\n")
        if final.exists():  # re-saving a step (e.g. after a resume): the new one wins
            discard_dir(final)
        tmp.rename(final)
    except BaseException:
        discard_dir(tmp)
        raise
    for old in _step_dirs(checkpoint_dir)[max(keep, 1):]:
        discard_dir(old)
    log.info("checkpoint %s", final)
    return final


def _optimizer_parts(optimizer: torch.optim.Optimizer, extra_tensors: dict | None):
    """What a checkpoint keeps of the training's tensors: (tensors: the torch RNG, the
    extra tensors and the optimizer's state tensors; the optimizer's other state values;
    its parameter groups, JSON-ready)."""
    opt = optimizer.state_dict()
    tensors = {"rng.torch": torch.get_rng_state()}
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous()
                    for k, v in (extra_tensors or {}).items()})
    extra = {}
    for idx, st in opt["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"state.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                extra[f"{idx}.{key}"] = val
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in opt["param_groups"]]
    return tensors, extra, groups


def load_checkpoint(path, net, optimizer: torch.optim.Optimizer | None = None,
                    rng: np.random.Generator | None = None, extra: dict | None = None) -> dict:
    """Restore weights (and optimizer, torch and numpy RNG) from a checkpoint folder.

    Returns the checkpoint's JSON state (``step``, ``history`` ...).  With a dict as
    ``extra``, the checkpoint's extra tensors (see :func:`save_checkpoint`) are put in it.

    Raises
    ------
    ModelFileError
        If the checkpoint is damaged or was made for another architecture.
    """
    path = Path(path)
    try:
        doc = json.loads((path / STATE_NAME).read_text())
    except (OSError, ValueError) as err:
        raise ModelFileError(f"The checkpoint {path} is unreadable ({err}); delete it to start "
                             "again from the previous one.") from None
    if doc.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a napari-unet training checkpoint.")
    model = load_model(path)
    if model.config != net.config:
        raise ModelFileError(f"The checkpoint {path} is for a different network ({model.config}) "
                             f"than the one being trained ({net.config}). Use another output "
                             "folder, or the same model configuration.")
    net.load_state_dict(model.net.state_dict())
    if optimizer is not None or extra is not None:
        try:
            tensors = load_file(str(path / OPTIMIZER_NAME))
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise ModelFileError(f"The optimizer state in {path} is unreadable ({err}).") from None
        if extra is not None:
            extra.update({k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")})
    if optimizer is not None:
        state: dict = {}
        for key, val in tensors.items():
            if key.startswith("state."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = val
        for key, val in doc.get("state_scalars", {}).items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = val
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
                  for g in doc["param_groups"]]
        optimizer.load_state_dict({"state": state, "param_groups": groups})
        if "rng.torch" in tensors:
            torch.set_rng_state(tensors["rng.torch"])
    if rng is not None and doc.get("numpy_rng"):
        rng.bit_generator.state = doc["numpy_rng"]
    return doc
