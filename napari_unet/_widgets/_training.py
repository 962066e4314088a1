"""Non-Qt helpers of the Curate and Fine-tune widgets.

Where the training set lives, which plane of a layer is on screen, the reviewed
region of a Shapes layer as a mask, and the fine-tune job that runs in a napari
thread worker.  Nothing here imports Qt.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
from pathlib import Path

import numpy as np

from unet_core import Progress
from unet_core.modelio import CARD_NAME, user_model_dir

#: Scores of the before / after table: (card key, what the user reads).
SCORES = (("dice", "Dice"), ("ap50", "AP50"), ("map", "mAP 0.5:0.95"))


def default_training_dir() -> Path:
    """The per-user training set (``$NAPARI_UNET_TRAINING_SET`` overrides it)."""
    env = os.environ.get("NAPARI_UNET_TRAINING_SET")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("napari-unet")) / "training-set"


def new_model_dir(base, root=None) -> Path:
    """A fresh folder ``<root>/<base>-ft-<timestamp>`` for a model fine-tuned from ``base``.

    A ``-ft-<timestamp>`` ending of the base's name is dropped first, so a model tuned
    twice is ``nuclei-ft-<new stamp>``, not ``nuclei-ft-<old>-ft-<new>`` (the card's
    ``parent`` keeps the lineage).
    """
    root = Path(root) if root is not None else user_model_dir()
    name = re.sub(r"-ft-\d{8}-\d{6}(-\d+)?$", "", Path(base).name) or "model"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out, k = root / f"{name}-ft-{stamp}", 1
    while out.exists():
        k += 1
        out = root / f"{name}-ft-{stamp}-{k}"
    return out


def current_plane(layer, world_point) -> tuple[int, ...]:
    """Index of the displayed plane of ``layer`` on its leading (non-YX) axes.

    Parameters
    ----------
    layer : napari layer
        Its last two data axes are (Y, X) (RGB / multichannel layers: ``layer.ndim``
        does not count the channel axis).
    world_point : sequence of float
        ``viewer.dims.point``.
    """
    lead = layer.ndim - 2
    if lead <= 0:
        return ()
    data = np.asarray(layer.world_to_data(world_point))[:lead]
    shape = np.asarray(layer.data.shape[:lead])
    return tuple(int(i) for i in np.clip(np.round(data), 0, shape - 1))


def plane_content_key(image: np.ndarray) -> str:
    """A short hash of an image plane: tells two in-memory layers of the same name apart."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]


def rectangles_mask(shapes, image, plane: tuple[int, ...], shape: tuple[int, int],
                    offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Rasterize the shapes of a Shapes layer into a reviewed-region mask of ``image``.

    Rectangles and polygons are filled, ellipses drawn in their bounding box; lines and
    paths enclose nothing and are skipped.  For stacks only shapes drawn on ``plane``
    count (shapes of a 2D Shapes layer count on every plane).

    Parameters
    ----------
    shapes : napari.layers.Shapes
    image : napari layer
        The layer whose pixel grid the mask is in (its scale / translate are used).
    plane : tuple of int
        Index of the plane on the image's leading axes (see :func:`current_plane`).
    shape : (H, W)
        Of the mask: the image's plane, or a box of it starting at ``offset`` (y, x).

    Returns
    -------
    ndarray, bool (H, W)
    """
    from skimage.draw import ellipse, polygon

    mask = np.zeros(shape, bool)
    for verts, kind in zip(shapes.data, shapes.shape_type):
        if kind not in ("rectangle", "polygon", "ellipse"):
            continue
        world = [shapes.data_to_world(v) for v in np.asarray(verts, float)]
        pix = np.array([image.world_to_data(w) for w in world])
        if plane and pix.shape[1] > 2 and shapes.ndim > 2 and \
                np.any(np.round(pix[:, :len(plane)].mean(axis=0)) != plane):
            continue
        yx = pix[:, -2:] - np.asarray(offset, float)
        if kind == "ellipse":
            (y0, x0), (y1, x1) = yx.min(axis=0), yx.max(axis=0)
            rr, cc = ellipse((y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2, shape)
        else:
            # napari puts pixel centres at integer coordinates: pixels whose centre is
            # inside (or on) the outline count as reviewed
            rr, cc = polygon(yx[:, 0], yx[:, 1], shape)
        mask[rr, cc] = True
    return mask


def shapes_box(shapes, image, plane: tuple[int, ...], shape: tuple[int, int],
               margin: int = 64) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1): the pixels of ``image`` (plane ``plane``, ``shape`` (H, W))
    that the region shapes cover, ``margin`` px of context around them, clipped; None
    when no shape encloses any pixel.  A huge image is read in this box only."""
    boxes = []
    for verts, kind in zip(shapes.data, shapes.shape_type):
        if kind not in ("rectangle", "polygon", "ellipse"):
            continue
        pix = np.array([image.world_to_data(shapes.data_to_world(v)) for v in np.asarray(verts, float)])
        if plane and pix.shape[1] > 2 and shapes.ndim > 2 and \
                np.any(np.round(pix[:, :len(plane)].mean(axis=0)) != plane):
            continue
        boxes.append(np.concatenate([pix[:, -2:].min(axis=0), pix[:, -2:].max(axis=0)]))
    if not boxes:
        return None
    lo = np.floor(np.min(boxes, axis=0)[:2]).astype(int) - margin
    hi = np.ceil(np.max(boxes, axis=0)[2:]).astype(int) + 1 + margin
    y0, x0 = (int(v) for v in np.clip(lo, 0, shape))
    y1, x1 = (int(v) for v in np.clip(hi, 0, shape))
    return (y0, x0, y1, x1) if y1 > y0 and x1 > x0 else None


def example_text(record: dict) -> str:
    """One line per training example for the list: source, plane, objects, date."""
    source = Path(str(record.get("source") or record.get("id", "?"))).name
    region = record.get("region") or {}
    plane = region.get("plane") if isinstance(region, dict) else None
    where = f" [plane {', '.join(map(str, plane))}]" if plane else ""
    n = record.get("n_objects", 0)
    date = str(record.get("date", ""))[:16].replace("T", " ")
    return f"{source}{where} · {n} object{'s' if n != 1 else ''} · {date}"


def finetune_child(base: str, folder, out_dir, **params):
    """A fine-tuning of ``base`` on the training set ``folder`` into ``out_dir``, to be run
    in a child process (:class:`~unet_core.child.ChildJob`): a crash there cannot take
    napari down, and the child's (GPU) memory is freed when it ends.  ``params`` go to
    :func:`~unet_core.training.finetune.finetune_iter`; the child uses as many torch
    threads as this process."""
    import torch

    from unet_core.child import ChildJob
    from unet_core.training.finetune import finetune_iter

    return ChildJob(finetune_iter, str(base), str(folder), str(out_dir), what="Fine-tuning",
                    threads=torch.get_num_threads(), **params)


def finetune_job(child):
    """Generator job: "load" (the child starting and loading the base model), then the
    child's progress ("validate-base", "train", "validate"; None while it is quiet).
    Returns the engine's result dict."""
    yield Progress(0, 1, "load")
    return (yield from child.run())


def finished_model(out_dir) -> bool:
    """Whether ``out_dir`` holds a complete model (its card is written last)."""
    return out_dir is not None and (Path(out_dir) / CARD_NAME).exists()
