"""Which training example an image plane is: its source and region.

The training set derives an example's id from (source, region)
(:func:`~unet_core.training.dataset.example_id`), so adding the same plane again
replaces its example.  These rules decide the pair for a plane shown in a viewer:
a file keeps its path, an image only in memory its name plus a hash of its pixels
(two in-memory images of the same name are not the same example), a plane of a
stack its index, a part of a huge plane its box, and an example opened from the set
keeps the identity it has there.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def plane_content_key(image: np.ndarray) -> str:
    """A short hash of an image plane's pixels (tells in-memory images apart)."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]


def example_identity(image: np.ndarray, plane: tuple[int, ...] = (), path=None,
                     name: str = "image", opened: dict | None = None,
                     box: tuple[int, int, int, int] | None = None) -> tuple[str, dict | None]:
    """(source, region) of the training example made from one image plane.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        The plane's pixels.
    plane : tuple of int
        Index of the plane on a stack's leading axes (empty for a 2D image).
    path : str or Path, optional
        The file the image was read from; None for an image only in memory.
    name : str
        What the image is called (a layer name) when it has no file.
    opened : dict, optional
        :func:`opened_identity` of an example opened from the training set: it stays
        that example.
    box : (y0, x0, y1, x1), optional
        The part of a huge plane that was read (the example is that part).
    """
    if opened:
        return opened["source"], opened["region"]
    region = {"plane": list(plane)} if plane else {}
    if box is not None:
        region["box"] = [int(v) for v in box]
    if not path:
        region["content"] = plane_content_key(image)
    return str(path or name), region or None


def opened_identity(record: dict) -> dict:
    """What to keep with an example opened from the training set (its record) so that
    adding it again replaces it: ``{"source", "region"}``."""
    return {"source": record.get("source"), "region": record.get("region")}


def source_name(record: dict) -> str:
    """Short name of an example's source image (its file or layer name)."""
    return Path(str(record.get("source") or record.get("id", "?"))).name
