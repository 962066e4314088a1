"""The folder a training writes its new model into: checked, locked, replaced atomically.

* Only a folder that is empty, or holds nothing but a model and checkpoints of ours,
  is written into: a user's own files there (a ``checkpoints/`` of another tool, an
  unrelated ``model.safetensors``) are never deleted or overwritten.
* One training at a time per folder: a lock file beside it (``.<name>.lock``, held
  with an OS lock, so the system releases it when the process dies, even by SIGKILL).
* The finished model is written complete into a hidden sibling folder and swapped in
  with renames, so a kill at any moment leaves the previous model or the new one.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import uuid
from pathlib import Path

from ..errors import InputError
from ..files.safefiles import LockHeld, lock_file
from ..models.modelio import CARD_NAME, WEIGHTS_NAME, bundled_model_dir, user_model_dir
from .checkpoint import STATE_NAME, discard_dir

CHECKPOINTS = "checkpoints"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _is_our_card(path: Path) -> bool:
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and card.get("architecture") == "unet" and "config" in card


def _foreign(out: Path) -> list[str]:
    """Entries of ``out`` that are not a model or checkpoints of ours."""
    strange = []
    for entry in sorted(out.iterdir()):
        name = entry.name
        if name == CARD_NAME and entry.is_file() and _is_our_card(entry):
            continue
        if name == WEIGHTS_NAME and entry.is_file() and (out / CARD_NAME).is_file() \
                and _is_our_card(out / CARD_NAME):
            continue
        if name == CHECKPOINTS and entry.is_dir() and all(
                p.is_dir() and (p.name.startswith(".") or (p / STATE_NAME).is_file()
                                or p.name.startswith("step-")) for p in entry.iterdir()):
            continue
        strange.append(name + ("/" if entry.is_dir() else ""))
    return strange


def _siblings(out: Path, kind: str) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.{kind}-*"))


def _recover(out: Path) -> None:
    """Finish a swap that a kill interrupted, and sweep what it left (under the lock)."""
    if not out.exists():
        for new in _siblings(out, "new"):
            if (new / CARD_NAME).is_file():
                os.replace(new, out)
                break
    for leftover in _siblings(out, "new") + _siblings(out, "old"):
        discard_dir(leftover)


def _check_place(out_dir, base_path=None) -> Path:
    """Refuse places a new model must never go (checked before anything is written there)."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"The output {out} is a file; give a folder for the new model.")
    if base_path is not None and _inside(out, Path(base_path).resolve()):
        raise InputError(f"The output folder {out} is (inside) the base model's folder; the base "
                         "model is never overwritten. Choose a new folder for the fine-tuned model.")
    bundled = bundled_model_dir().resolve()
    if _inside(out, bundled):
        raise InputError(f"The output folder {out} is inside the bundled models folder {bundled}, "
                         f"which belongs to the installed package. Save new models elsewhere, e.g. "
                         f"in {user_model_dir()}.")
    return out


def check_out_dir(out_dir, base_path=None, *, resume=False, overwrite=False) -> Path:
    """Refuse output folders that would overwrite a base model, the bundled weights,
    (unless ``resume`` or ``overwrite``) a finished model, or anything not ours.

    Call it holding :func:`out_dir_lock`.  Returns the resolved path.
    """
    out = _check_place(out_dir, base_path)
    _recover(out)
    if not out.exists():
        return out
    strange = _foreign(out)
    if strange:
        raise InputError(f"The output folder {out} holds files that are not a model of this program "
                         f"({', '.join(strange[:5])}{', ...' if len(strange) > 5 else ''}); they are "
                         "never deleted or overwritten. Choose a new or empty folder.")
    unfinished = resume and any((out / CHECKPOINTS).glob("step-*"))
    if (out / CARD_NAME).exists() and not (unfinished or overwrite):
        raise InputError(f"{out} already holds a finished model. Choose a new folder, or replace "
                         "it (--overwrite).")
    return out


@contextlib.contextmanager
def out_dir_lock(out_dir, base_path=None):
    """Hold the lock of an output folder for one training; refuse if another holds it.

    The lock is the file ``.<name>.lock`` beside the folder (so swapping the folder
    does not drop it), held with :func:`~unet_core.files.safefiles.lock_file`: released when
    this process ends in any way, and removed when the training ends.
    """
    out = _check_place(out_dir, base_path)   # no lock file inside a base model or the package

    def refuse(err: LockHeld) -> InputError:
        if err.removed:
            return InputError(f"Another training has just written into {out}; run again.")
        return InputError(f"Another training (process {err.holder or '?'}) is writing into {out}. "
                          "Wait for it to end, or choose another folder.")

    with lock_file(out.parent / f".{out.name}.lock", refuse):
        existed = out.exists()
        try:
            yield out
        except BaseException:
            _tidy_failed(out, existed)
            raise


def _tidy_failed(out: Path, existed: bool) -> None:
    """What a failed or cancelled training leaves half made: unfinished checkpoints and
    model copies, then the folders they leave empty.  Complete checkpoints stay (a
    ``--resume`` continues from them)."""
    with contextlib.suppress(OSError):
        for new in _siblings(out, "new"):
            if not (new / CARD_NAME).is_file():
                discard_dir(new)
        for part in (out / CHECKPOINTS).glob(".tmp-*"):
            discard_dir(part)
        for folder in (out / CHECKPOINTS, out if not existed else None):
            if folder is not None and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def new_sibling(out: Path) -> Path:
    """A fresh hidden folder beside ``out`` to build its replacement in."""
    return out.parent / f".{out.name}.new-{uuid.uuid4().hex[:8]}"


def new_model_dir(base, root=None) -> Path:
    """A fresh folder ``<root>/<base>-ft-<timestamp>`` for a model fine-tuned from ``base``.

    ``base`` is a model name or folder; ``root`` defaults to the per-user model folder.
    A ``-ft-<timestamp>`` ending of the base's name is dropped first, so a model tuned
    twice is ``nuclei-ft-<new stamp>``, not ``nuclei-ft-<old>-ft-<new>`` (the card's
    ``parent`` keeps the lineage); a folder that exists gets a ``-2``, ``-3`` ... ending.
    """
    root = Path(root) if root is not None else user_model_dir()
    name = re.sub(r"-ft-\d{8}-\d{6}(-\d+)?$", "", Path(str(base)).name) or "model"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out, k = root / f"{name}-ft-{stamp}", 1
    while out.exists():
        k += 1
        out = root / f"{name}-ft-{stamp}-{k}"
    return out


def finished_model(out_dir) -> bool:
    """Whether ``out_dir`` holds a complete model (its card is written last)."""
    return out_dir is not None and (Path(out_dir) / CARD_NAME).is_file()


def discard_unfinished(out_dir) -> bool:
    """Delete what a cancelled or failed training left in ``out_dir`` (checkpoints, no
    model); returns whether it did.  A finished model, or a folder holding anything
    that is not ours, is left alone."""
    if out_dir is None or not Path(out_dir).is_dir() or finished_model(out_dir):
        return False
    if _foreign(Path(out_dir)):
        return False
    discard_dir(out_dir)
    return True
