"""The content box of an image: the part inside constant bands at its edges, and a
lazy crop to it (see :func:`content_box`).
"""
from __future__ import annotations

import numpy as np


def _leading_constant(read, n: int, value) -> int:
    """How many leading slabs (``read(i0, i1)`` -> (i1 - i0, ...)) all equal ``value``;
    reads in doubling blocks, so a band costs about twice its own size to find."""
    start, step = 0, 8
    while start < n:
        stop = min(n, start + step)
        block = np.asarray(read(start, stop))
        same = (block == value).reshape(block.shape[0], -1).all(axis=1)
        if not same.all():
            return start + int(np.argmin(same))
        start, step = stop, step * 2
    return n


def content_box(plane, min_band: int = 4) -> tuple[slice, slice]:
    """The part of a plane (H, W, ...) inside constant bands at its edges.

    Stitched mosaics and acquisition borders surround the image with a band of one
    value (black, or a constant grey).  The network reads the step from background to
    band as the edge of a bright object, so nuclei along it merge with a false strip;
    segmenting inside the band avoids it.  A band is a run of at least ``min_band``
    rows or columns holding nothing but the value of the corner it starts at.
    """
    h, w = plane.shape[:2]
    box = [0, h, 0, w]

    def corner(y, x):
        return np.asarray(plane[y:y + 1, x:x + 1]).reshape(-1)[0]

    sides = (
        (0, lambda a, b: plane[a:b], h, corner(0, 0)),
        (1, lambda a, b: plane[h - b:h - a][::-1], h, corner(h - 1, w - 1)),
        (2, lambda a, b: np.swapaxes(np.asarray(plane[:, a:b]), 0, 1), w, corner(0, 0)),
        (3, lambda a, b: np.swapaxes(np.asarray(plane[:, w - b:w - a]), 0, 1)[::-1], w,
         corner(h - 1, w - 1)),
    )
    for side, read, n, value in sides:
        k = _leading_constant(read, n, value)
        if min_band <= k < n:
            box[side] = k if side in (0, 2) else n - k
    y0, y1, x0, x1 = box
    if y1 - y0 < 1 or x1 - x0 < 1:
        return slice(0, h), slice(0, w)
    return slice(y0, y1), slice(x0, x1)


class Crop:
    """A lazy window ``box`` of a plane (H, W, ...): indexing reads only what it needs."""

    def __init__(self, plane, box: tuple[slice, slice]):
        self.plane, self.box = plane, box
        self.shape = (box[0].stop - box[0].start, box[1].stop - box[1].start) + tuple(plane.shape[2:])
        self.ndim, self.dtype = len(self.shape), plane.dtype

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (2 - len(key))
        out = []
        for k, b, n in zip(key[:2], self.box, self.shape[:2]):
            a, z, st = k.indices(n)
            out.append(slice(b.start + a, b.start + z, st))
        return np.asarray(self.plane[tuple(out) + tuple(key[2:])])

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)


def crop(plane, box: tuple[slice, slice]):
    """``plane[box]``: a numpy view, or a lazy :class:`Crop` of other arrays."""
    if isinstance(plane, np.ndarray):
        return plane[box]
    return Crop(plane, box)
