"""Resampling images by window, so that a tiled result equals a whole-image one.

The network sees nuclei at one size (the model card's ``diameter``); an image whose
nuclei are larger or smaller is resampled by ``scale = model diameter / image
diameter`` before the network and its outputs are brought back afterwards.

Every output pixel ``i`` of a resampled axis of ``n_out`` px sits at source position
``u = (i + 0.5) * n_in / n_out - 0.5`` and is interpolated linearly from its two source
neighbours.  When shrinking (``scale < 1``) the source is first smoothed by a Gaussian
of ``sigma = (1 / scale - 1) / 2`` px (as :func:`skimage.transform.rescale` does against
aliasing).  Beyond the image edges the source is mirrored (``symmetric``).  Both steps
are local, so :class:`Resampled` computes any window from a source window with a
margin, and a window equals the same pixels of the whole resampled image.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

_TRUNCATE = 4.0


def resampled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) of an (H, W) image resampled by ``scale`` (at least 1 px per axis)."""
    return tuple(max(1, int(round(s * scale))) for s in shape[:2])


def _symmetric_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Positions mirrored onto ``[0, n)`` repeating the edge pixel (numpy ``symmetric``)."""
    period = 2 * n
    m = np.mod(idx, period)
    return np.where(m < n, m, period - 1 - m)


class Resampled:
    """A lazy view of an (H, W, C) image resampled to ``shape``; windows on demand.

    Parameters
    ----------
    source : array-like, (H, W, C)
        numpy, dask, zarr or another lazy view (indexed by windows only).
    shape : (int, int)
        Output (H', W').

    Indexing with two slices (steps allowed) returns float32 (h, w, C).
    """

    def __init__(self, source, shape: tuple[int, int]):
        self.source = source
        self.in_shape = tuple(int(s) for s in source.shape[:2])
        self.shape = (int(shape[0]), int(shape[1])) + tuple(source.shape[2:])
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)
        self.ratio = tuple(i / o for i, o in zip(self.in_shape, self.shape[:2]))
        self.sigma = tuple(max(0.0, (r - 1.0) / 2.0) for r in self.ratio)
        self.margin = tuple(int(np.ceil(_TRUNCATE * s)) + 2 for s in self.sigma)

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (2 - len(key))
        idx = [np.arange(*k.indices(n)) for k, n in zip(key[:2], self.shape[:2])]
        pos = [(i + 0.5) * r - 0.5 for i, r in zip(idx, self.ratio)]
        if any(p.size == 0 for p in pos):
            return np.zeros((len(idx[0]), len(idx[1])) + self.shape[2:], np.float32)
        lo = [int(np.floor(p.min())) - m for p, m in zip(pos, self.margin)]
        hi = [int(np.floor(p.max())) + 2 + m for p, m in zip(pos, self.margin)]
        window = self._read(lo, hi)
        if any(s > 0 for s in self.sigma):
            sig = tuple(self.sigma) + (0.0,) * (window.ndim - 2)
            window = ndi.gaussian_filter(window, sig, mode="nearest", truncate=_TRUNCATE)
        for axis, (p, o) in enumerate(zip(pos, lo)):
            p = p - o
            i0 = np.floor(p).astype(np.intp)
            w = (p - i0).astype(np.float32)
            shape = [1] * window.ndim
            shape[axis] = -1
            w = w.reshape(shape)
            window = (np.take(window, i0, axis=axis) * (1 - w)
                      + np.take(window, i0 + 1, axis=axis) * w)
        return window.astype(np.float32, copy=False)

    def _read(self, lo, hi) -> np.ndarray:
        """Source rows lo[0]:hi[0], cols lo[1]:hi[1], mirrored beyond the edges, float32."""
        rows = _symmetric_index(np.arange(lo[0], hi[0]), self.in_shape[0])
        cols = _symmetric_index(np.arange(lo[1], hi[1]), self.in_shape[1])
        r0, c0 = int(rows.min()), int(cols.min())
        block = np.asarray(self.source[r0:int(rows.max()) + 1, c0:int(cols.max()) + 1])
        return block[(rows - r0)[:, None], (cols - c0)[None, :]].astype(np.float32)


def resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The whole of ``image`` (H, W[, C]) resampled to ``shape``, float32."""
    image = np.asarray(image)
    flat = image.ndim == 2
    out = Resampled(image[..., None] if flat else image, shape)[:, :]
    return out[..., 0] if flat else out


def nearest_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels (h, w) brought to ``shape`` by nearest neighbour (same pixel centres as
    :class:`Resampled`)."""
    idx = []
    for n_in, n_out in zip(labels.shape, shape):
        u = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        idx.append(np.clip(np.rint(u).astype(np.intp), 0, n_in - 1))
    return labels[idx[0][:, None], idx[1][None, :]]
