"""One training example in memory (:class:`Example`), the checks of its arrays, and its
id: derived from the source image and region, so adding the same region of the same
image again replaces the example in a :class:`~unet_core.training.dataset.TrainingSet`.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage.segmentation import relabel_sequential

from ..errors import InputError


@dataclass
class Example:
    """One training example in memory.

    Attributes
    ----------
    id : str
        Example id (folder name in a :class:`TrainingSet`, file stem for folders).
    image : ndarray, (H, W) or (H, W, C)
        The image in its own dtype.
    labels : ndarray, uint32 (H, W)
        Instance labels, 0 = background.
    mask : ndarray, bool (H, W)
        Reviewed pixels; the loss ignores the others.
    record : dict
        Source, region, date and object count.
    """

    id: str
    image: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    record: dict = field(default_factory=dict)


def as_example(obj, index: int = 0) -> Example:
    """An :class:`Example` from an Example or a tuple ``(image, labels[, mask])``."""
    if isinstance(obj, Example):
        return obj
    if isinstance(obj, (tuple, list)) and len(obj) in (2, 3):
        image, labels = np.asarray(obj[0]), np.asarray(obj[1])
        mask = np.ones(labels.shape, bool) if len(obj) == 2 or obj[2] is None else np.asarray(obj[2]) > 0
        _check_arrays(image, labels, mask)
        return Example(f"example-{index}", image, uint32_ids(labels), mask, {})
    raise InputError(f"Training example {index} is a {type(obj).__name__}; give an Example or a "
                     "tuple (image, labels) or (image, labels, reviewed_mask).")


def uint32_ids(labels: np.ndarray) -> np.ndarray:
    """Instance ids as uint32 (H, W): ids beyond uint32 are renumbered 1..n, never wrapped
    (a cast alone would merge or split objects)."""
    labels = np.asarray(labels)
    if labels.size and labels.dtype.kind in "iu" and int(labels.max()) > np.iinfo(np.uint32).max:
        labels = relabel_sequential(labels)[0]
    return labels.astype(np.uint32)


def _check_arrays(image: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> None:
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] > 4):
        raise InputError(f"A training image must be (H, W) or (H, W, C) with C <= 4, got shape "
                         f"{image.shape}. Add one plane (and one time point) at a time.")
    if image.dtype.kind not in "biuf":
        raise InputError(f"A training image must hold numbers, got dtype {image.dtype}.")
    if labels.shape != image.shape[:2]:
        raise InputError(f"The labels have shape {labels.shape} but the image is {image.shape[:2]}; "
                         "they must cover the same pixels.")
    if labels.dtype.kind not in "biu" or (labels.size and labels.min() < 0):
        raise InputError(f"Labels must be non-negative integers (instance ids), got dtype "
                         f"{labels.dtype}. Use a Labels layer, not an Image layer.")
    if mask.shape != labels.shape:
        raise InputError(f"The reviewed-region mask has shape {mask.shape} but the labels are "
                         f"{labels.shape}.")


def _region_json(region):
    """A JSON form of ``region``: slices -> [start, stop], arrays -> lists."""
    if region is None:
        return None
    if isinstance(region, slice):
        return [_region_json(region.start), _region_json(region.stop)]
    if isinstance(region, np.ndarray):
        return region.tolist()
    if isinstance(region, np.generic):
        return region.item()
    if isinstance(region, (tuple, list)):
        return [_region_json(r) for r in region]
    if isinstance(region, dict):
        return {str(k): _region_json(v) for k, v in region.items()}
    if isinstance(region, (str, int, float, bool)):
        return region
    raise InputError(f"The region {region!r} cannot be recorded; give a bounding box "
                     "(y0, x0, y1, x1), a tuple of slices, or any JSON-compatible value.")


def example_id(source, region, image: np.ndarray | None = None) -> str:
    """Deterministic id of (source, region); without a source, of the image content."""
    key = {"source": None if source is None else str(source), "region": _region_json(region)}
    if source is None and image is not None:
        key["image"] = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(str(source)).stem)[:32].strip("_") if source else ""
    return f"{stem}-{digest}" if stem else digest

