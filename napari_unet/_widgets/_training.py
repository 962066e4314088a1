"""Non-Qt helpers of the Curate and Fine-tune widgets.

Where the training set lives, adding to it, the texts of the training-set lists, and
the fine-tune job that runs in a napari thread worker (the reviewed region of a
layer: :mod:`._regions`).  Nothing here imports Qt.
"""
from __future__ import annotations

import os
from pathlib import Path

from unet_core import Progress, UNetError
from unet_core.progress import Stage
from unet_core.scaleout.child import ChildDied
from unet_core.training.config import FinetuneConfig
from unet_core.training.dataset import example_id
from unet_core.training.identity import source_name


def default_training_dir() -> Path:
    """The per-user training set (``$NAPARI_UNET_TRAINING_SET`` overrides it)."""
    env = os.environ.get("NAPARI_UNET_TRAINING_SET")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-unet")) / "training-set"


def add_example(ts, image, labels, mask, source, region) -> tuple[str, str]:
    """Add (or replace) an example in the training set ``ts``; returns its id and what
    happened, for the user ("Added cells.tif: 12 objects in the training set.")."""
    replaced = example_id(source, region, image) in ts
    ex_id = ts.add(image, labels, region_mask=mask, source=source, region=region)
    n = next((r for r in ts.list() if r["id"] == ex_id), {}).get("n_objects", 0)
    verb = "Replaced" if replaced else "Added"
    return ex_id, (f"{verb} {Path(source).name}: {n} object{'s' if n != 1 else ''} in the "
                   "training set.")


def review_layer(viewer, image):
    """The Shapes layer "<image> reviewed regions" of ``image`` (added when missing)."""
    name = f"{image.name} reviewed regions"
    if name in viewer.layers:
        return viewer.layers[name]
    return viewer.add_shapes(name=name, ndim=image.ndim, scale=image.scale,
                             translate=image.translate, edge_color="yellow",
                             face_color="transparent", edge_width=2)


def set_summary(records: list[dict]) -> str:
    """The line under a training set folder: "3 examples · 24 objects"."""
    n, m = len(records), sum(r.get("n_objects", 0) for r in records)
    return f"{n} example{'s' if n != 1 else ''} · {m} object{'s' if m != 1 else ''}"


def example_text(record: dict) -> str:
    """One line per training example for the list: source, plane, objects, date."""
    region = record.get("region") or {}
    plane = region.get("plane") if isinstance(region, dict) else None
    where = f" [plane {', '.join(map(str, plane))}]" if plane else ""
    n = record.get("n_objects", 0)
    date = str(record.get("date", ""))[:16].replace("T", " ")
    return f"{source_name(record)}{where} · {n} object{'s' if n != 1 else ''} · {date}"


def failure_note(exc) -> str:
    """What a failed fine-tuning leaves: nothing (said where the failure was unexpected)."""
    if isinstance(exc, ChildDied) or not isinstance(exc, UNetError):
        return " No model was saved; the base model and the training set are unchanged."
    return ""


def finetune_child(base: str, folder, out_dir, config: FinetuneConfig):
    """A fine-tuning of ``base`` on the training set ``folder`` into ``out_dir``, to be run
    in a child process (:class:`~unet_core.scaleout.child.ChildJob`): a crash there cannot take
    napari down, and the child's (GPU) memory is freed when it ends.  The child uses as
    many torch threads as this process, at a lower CPU priority, so napari stays
    responsive while it trains on every core."""
    import torch

    from unet_core.scaleout.child import ChildJob
    from unet_core.training.finetune import finetune_iter

    return ChildJob(finetune_iter, str(base), str(folder), str(out_dir), config,
                    what="Fine-tuning", threads=torch.get_num_threads(), nice=10)


def finetune_job(child):
    """Generator job: "load" (the child starting and loading the base model), then the
    child's progress ("validate-base", "train", "validate"; None while it is quiet).
    Returns the engine's :class:`~unet_core.training.FinetuneResult`."""
    yield Progress(0, 1, Stage.LOAD)
    return (yield from child.run())


def train_progress(config: FinetuneConfig, p: Progress, seconds: float) -> tuple[Progress, str, str]:
    """The bar's fraction, its text and what its percentage counts for a training step:
    the share of the steps, or of the time limit when that runs out sooner (then the
    run stops early), so "Step 1/3 · loss 0.41  12% of the time limit" never reads as
    12% of the steps."""
    frac = config.run_fraction(p.fraction, seconds)
    of = "the time limit" if frac > p.fraction else "the steps"
    text = f"Step {p.done}/{p.total} · loss {p.info.loss:.3f}"
    return Progress(int(1000 * frac), 1000, p.stage), text, of


def export_job(model_dir, out):
    """Generator job: a model folder written as a bioimage.io package ``out`` (the
    engine's steps as Progress); returns the :class:`~unet_core.models.export_bioimageio.ExportResult`."""
    from unet_core.models.export_bioimageio import export_iter

    return (yield from export_iter(model_dir, out))


def export_message(result) -> str:
    """The status line after an export."""
    test = "skipped" if result.test is None else result.test
    return (f"Exported {Path(result.path).name} for bioimage.io ({', '.join(result.weights)}; "
            f"licence {result.licence}). bioimageio.spec: {result.validation}, "
            f"bioimageio.core test: {test}.")
