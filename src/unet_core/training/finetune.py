"""Fine-tuning a model on corrected examples (training from scratch: :mod:`.scratch`).

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
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files.safefiles import replace_dir
from ..inference.predict import Predictor
from ..models.modelio import DEFAULT_MODEL, Model, load_model, make_card, save_model
from ..progress import Progress, Stage, run_to_end
from .checkpoint import discard_dir
from .config import FinetuneConfig
from .dataset import Example, TrainingSet, as_example
from .outdir import CHECKPOINTS, check_out_dir, new_model_dir, new_sibling, out_dir_lock
from .results import HELD_BACK_BAND, FinetuneResult
from .scaling import to_model_scale
from .train import train_iter
from .validate import evaluate_iter

log = logging.getLogger(__name__)

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _examples(examples) -> tuple[list, list]:
    """Examples from a sequence, a TrainingSet or a training-set folder; plus load problems."""
    if isinstance(examples, (str, Path)):
        examples = TrainingSet(examples)
    if isinstance(examples, TrainingSet):
        return examples.load()
    return [as_example(e, i) for i, e in enumerate(examples)], []


#: A single example keeps at least this many px (along its longer side) and objects in
#: its held-back band; smaller examples are used both to train and to validate.
MIN_BAND_PX, MIN_BAND_OBJECTS = 48, 3


def hold_back_band(example, fraction: float):
    """(train, val) from one example: the last ``fraction`` of its reviewed region along
    the longer side becomes a validation example, and the training copy no longer
    learns there (its reviewed mask leaves the band out).  None when the band would be
    too small to score (see ``MIN_BAND_PX``, ``MIN_BAND_OBJECTS``)."""
    rows, cols = np.nonzero(example.mask)
    if rows.size == 0:
        return None
    box = [slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)]
    axis = 0 if box[0].stop - box[0].start >= box[1].stop - box[1].start else 1
    length = box[axis].stop - box[axis].start
    width = int(round(length * fraction))
    band = list(box)
    band[axis] = slice(box[axis].stop - width, box[axis].stop)
    band = tuple(band)
    labels, mask = example.labels[band], example.mask[band]
    n_objects = np.unique(labels[mask & (labels > 0)]).size
    if width < MIN_BAND_PX or n_objects < MIN_BAND_OBJECTS:
        return None
    train_mask = example.mask.copy()
    train_mask[band] = False
    record = dict(example.record, held_back_band=[[b.start, b.stop] for b in band])
    val = Example(f"{example.id} {HELD_BACK_BAND}", example.image[band], labels, mask, record)
    train = Example(example.id, example.image, example.labels, train_mask, dict(example.record))
    return train, val


def split_examples(examples, val_fraction: float, seed: int):
    """Hold back ``val_fraction`` of the examples (at least one, if there are two or more).

    A single example is split instead: a band of ``val_fraction`` of it (see
    :func:`hold_back_band`) is held back.  Returns (train, val, held_back); when even
    that is too small the example is used for both and ``held_back`` is False.
    """
    n = len(examples)
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    if val_fraction == 0 or n == 0:
        return list(examples), [], False
    if n == 1:
        split = hold_back_band(examples[0], val_fraction)
        if split is not None:
            return [split[0]], [split[1]], True
        log.warning("only one small example: it is used both to train and to validate")
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
        replace_dir(new, out, discard_dir)
    except BaseException:
        discard_dir(new)
        raise
    log.info("saved model %s", out)
    return out


def finetune_iter(base=DEFAULT_MODEL, examples=(), out_dir=None, config: FinetuneConfig | None = None,
                  *, val_examples=None, resume=False, overwrite: bool = False,
                  name: str | None = None, description: str = "", keep_checkpoints: bool = False,
                  **overrides) -> Generator[Progress, None, FinetuneResult]:
    """Fine-tune ``base`` on corrected examples into a new model folder.

    Parameters
    ----------
    base : str, path or Model
        Model name (bundled / user), folder, or a loaded Model.  Never modified.
    examples : sequence of Example or (image, labels[, mask]), TrainingSet, or folder
    out_dir : path, optional
        New model folder (default: :func:`~.outdir.new_model_dir` of the base).
    config : FinetuneConfig, optional
        Steps, learning rate, crops, held-back share, device ...; keyword ``overrides``
        (its field names: ``steps=``, ``lr=`` ...) replace some.
    val_examples : sequence, optional
        Examples to compare the base and new model on (instead of holding back
        ``config.val_fraction`` of ``examples``).
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
    FinetuneResult
    """
    cfg = (config or FinetuneConfig()).replace(**overrides)
    model = base if isinstance(base, Model) else load_model(base)
    with out_dir_lock(out_dir or new_model_dir(model.name), model.path) as out:
        return (yield from _finetune_locked(
            model, examples, out, cfg, val_examples=val_examples, resume=resume,
            overwrite=overwrite, name=name, description=description,
            keep_checkpoints=keep_checkpoints))


def _split(examples, val_examples, val_fraction: float, seed: int, pred=None):
    """(examples, problems) read and, given a Predictor ``pred``, brought to its model's
    scale and stain (see :func:`~.scaling.to_model_scale`), then (train, val, held_back)
    split."""
    def view(e):
        return e if pred is None else to_model_scale(e, pred)

    examples, problems = _examples(examples)
    examples = [view(e) for e in examples]
    if val_examples is not None:
        train, held = examples, True
        val = [view(as_example(e, i)) for i, e in enumerate(val_examples)]
    else:
        train, val, held = split_examples(examples, val_fraction, seed)
    if not train:
        raise InputError("There are no usable training examples"
                         + (f" ({len(problems)} could not be read)." if problems else "."))
    return train, val, held, problems


def _finetune_locked(model, examples, out, cfg: FinetuneConfig, *, val_examples, resume,
                     overwrite, name, description, keep_checkpoints):
    """:func:`finetune_iter` once the output folder's lock is held."""
    out = check_out_dir(out, model.path, resume=resume, overwrite=overwrite)
    # the examples as the network will see them at prediction: its stain and size
    viewer = Predictor(model, device="cpu", backend="torch")
    train, val, held, problems = _split(examples, val_examples, cfg.val_fraction, cfg.seed, viewer)
    before = yield from evaluate_iter(model, val, cfg.device, stage=Stage.VALIDATE_BASE)
    net = copy.deepcopy(model.net)
    card = make_card(net.config, name or out.name, normalization=model.normalization,
                     instances=model.card.get("instances"), parent=model.name,
                     description=description or f"{model.name} fine-tuned on {len(train)} examples",
                     diameter=model.diameter)
    if model.card.get("diameter_range"):
        card["diameter_range"] = model.card["diameter_range"]
    gen = train_iter(net, train, val, cfg.train_config(), checkpoint_dir=out / CHECKPOINTS,
                     resume=resume, normalization=model.normalization, card=card,
                     device=cfg.device)
    # Keep the best weights seen on the held-back examples, the base model's included,
    # so a fine-tune never scores below its base there.
    best = {"score": _score(before), "step": 0, "state": None} if val else None
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if best is not None and p.stage == Stage.TRAIN and p.info.val \
                and _score(p.info.val) > best["score"]:
            best.update(score=_score(p.info.val), step=p.done,
                        state={k: v.detach().clone() for k, v in net.state_dict().items()})
        yield p
    after = result.val
    if after is None and val:
        after = yield from evaluate_iter(Model(net=net, card=card), val, cfg.device)
    kept = result.step
    if best is not None and after is not None and _score(after) < best["score"]:
        if best["state"] is None:
            net.load_state_dict(model.net.state_dict())
            after, kept = before, 0
        else:
            net.load_state_dict(best["state"])
            kept = best["step"]
            after = yield from evaluate_iter(Model(net=net, card=card), val, cfg.device)
        log.info("kept the weights of step %d (best on the held-back examples)", kept)
    card["training"] = {
        "mode": "finetune", "date": _now(), "parent": model.name,
        "parent_sha256": model.card.get("sha256"),
        "parent_path": str(Path(model.path).resolve()) if model.path else None,
        "examples": _summary(train), "val_examples": _summary(val), "held_back": held,
        "steps": result.step, "resumed_from": result.start_step if resume else None,
        "stopped_by": result.stopped_by, "kept_step": kept, "lr": cfg.lr, "seed": cfg.seed,
        "batch_size": cfg.batch_size, "crop": cfg.crop, "seconds": round(result.seconds, 1),
        "final_loss": result.loss,
    }
    card["metrics"] = {"before": before, "after": after or {}, "held_back": held}
    _finish(net, out, card, keep_checkpoints)
    return FinetuneResult(out, before, after or {}, held, result.without_history(), problems, card)


def finetune(*args, **kwargs) -> FinetuneResult:
    """:func:`finetune_iter` run to the end."""
    return run_to_end(finetune_iter(*args, **kwargs))



__all__ = ["HELD_BACK_BAND", "check_out_dir", "finetune", "finetune_iter", "hold_back_band",
           "split_examples"]
