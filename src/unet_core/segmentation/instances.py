"""Network outputs to instance labels, and instance labels to training targets.

The instance models predict up to three maps:

0. foreground: pixels inside nuclei;
1. boundary: a band of ``boundary_width`` px just inside each nucleus, so touching
   nuclei are split by a band of twice that;
2. centre: each nucleus's distance to its own edge, divided by its largest value,
   so 1 at its centre and falling towards 0 at its edge.

Seeds (one per nucleus) are the peaks of the distance transform of the foreground
minus the boundary, weighted by the centre map where there is one; a watershed over
that map grows them to fill the foreground.
"""
from __future__ import annotations

import os

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ..inference.resample import nearest_labels, resample
from . import basins as _b
from .basins import (
    _banded,
    _basins,
    _grow,
    _owners,
    h_maxima_seeds,  # noqa: F401  (part of this module's interface)
)

OUTPUTS = ("foreground", "boundary", "centre")


def _edges(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another id (background included)."""
    footprint = ndi.generate_binary_structure(2, 1)
    grown_max = ndi.grey_dilation(labels, footprint=footprint)
    grown_min = -ndi.grey_dilation(-labels.astype(np.int64), footprint=footprint)
    return (grown_max != labels) | (grown_min != labels)


def centre_map(labels: np.ndarray) -> np.ndarray:
    """float32 (H, W): each object's distance to its edge over its largest distance."""
    labels = np.asarray(labels)
    inside = (labels > 0) & ~(_edges(labels) & (labels > 0))
    dist = ndi.distance_transform_edt(inside).astype(np.float32)
    dist[labels > 0] += 1.0
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not len(ids):
        return np.zeros(labels.shape, np.float32)
    # index the peaks by rank, not by id: ids may be large (3e9) and sparse
    peak = np.asarray(ndi.maximum(dist, labels, ids), np.float32)
    rank = np.minimum(np.searchsorted(ids, labels), len(ids) - 1)
    out = dist / np.maximum(peak[rank], 1.0)
    out[labels == 0] = 0
    return out.astype(np.float32)


def labels_to_targets(labels: np.ndarray, boundary_width: int = 2) -> np.ndarray:
    """Instance labels (H, W) -> float32 targets (3, H, W): foreground, boundary, centre.

    A pixel is boundary when any pixel within ``boundary_width`` px (city-block) has
    another id, background included.  Models with fewer outputs train on the first
    channels.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2D (H, W), got shape {labels.shape}")
    fg = labels > 0
    edge = _edges(labels)
    if boundary_width > 1:
        edge = ndi.binary_dilation(edge, ndi.generate_binary_structure(2, 1),
                                   iterations=boundary_width - 1)
    return np.stack([fg.astype(np.float32), (edge & fg).astype(np.float32), centre_map(labels)])


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    if min_size > 1 and labels.max():
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels[small[labels]] = 0
    return labels


#: Rows of context each band of :func:`_banded` reads beyond its own (the distance
#: transform is exact in a band where it stays below this).
BAND_HALO = 64


def _every_band_has(pixels: np.ndarray, workers: int) -> bool:
    """Whether every band of :func:`_banded` (with its context) holds one of ``pixels``."""
    rows = np.flatnonzero(pixels.any(axis=1))
    cuts = np.linspace(0, pixels.shape[0], workers + 1).astype(int)
    lo, hi = np.maximum(cuts[:-1] - BAND_HALO, 0), cuts[1:] + BAND_HALO
    return bool(rows.size) and all(np.any((rows >= a) & (rows < b)) for a, b in zip(lo, hi))


def _seed_surface(core: np.ndarray, centre, sigma: float, workers: int) -> np.ndarray:
    """float32: the distance transform of ``core``, times ``0.5 + centre`` when given,
    smoothed by a Gaussian of ``sigma`` px; in bands of rows in threads on large
    images, with the same values as on the whole image."""
    def edt(x):
        return ndi.distance_transform_edt(x).astype(np.float32)

    def smooth(x):
        return ndi.gaussian_filter(x, sigma) if sigma > 0 else x

    banded = workers > 1 and core.size >= _b.PARALLEL_PIXELS and core.shape[0] >= 4 * BAND_HALO
    if banded:
        surface = _banded(edt, core, BAND_HALO, workers)
        # exact where each band sees a background pixel within its context
        if surface.max(initial=0) >= BAND_HALO - 1 or not _every_band_has(~core, workers):
            surface = edt(core)
    else:
        surface = edt(core)
    if centre is not None:
        surface *= 0.5 + centre
    radius = int(4.0 * sigma + 0.5) + 1          # gaussian_filter's kernel (truncate=4)
    return _banded(smooth, surface, radius, workers) if banded else smooth(surface)


def _sequential(labels: np.ndarray, min_size: int) -> np.ndarray:
    """uint32 labels with ids 1..N in order of first id, objects under ``min_size`` px
    dropped."""
    sizes = np.bincount(labels.ravel())
    alive = sizes >= max(min_size, 1)
    alive[0] = False
    lut = np.zeros(len(sizes), np.uint32)
    lut[alive] = np.arange(1, int(alive.sum()) + 1, dtype=np.uint32)
    return lut[labels]


def probs_to_labels(prob: np.ndarray, fg_threshold: float = 0.5, boundary_threshold: float = 0.5,
                    h: float = 1.0, sigma: float = 1.0, min_size: int = 16,
                    workers: int | None = None) -> np.ndarray:
    """Probabilities (C, H, W) -> uint32 instance labels (H, W), ids 1..N.

    The seed map is the distance transform of foreground > ``fg_threshold`` and
    boundary < ``boundary_threshold`` (the nuclei shrunk apart by their predicted
    boundaries), weighted by ``0.5 + centre`` where there is a centre map (C >= 3),
    and smoothed by a Gaussian of ``sigma`` px.  Every regional maximum of that map is
    flooded into its basin (one watershed over where the map is above 0); a basin
    whose maximum rises less than ``h`` above the pass to a higher one (not an
    ``h``-maximum, see :func:`h_maxima_seeds`) joins the basin it drains into.  The
    objects so made grow over the rest of the foreground (a second watershed over the
    pixels left only).  This is a watershed seeded by the ``h``-maxima up to how a
    drained basin's pixels are shared out (AP50 against it 0.999 or more on real
    images).  Foreground regions without a maximum become objects of their own.
    Objects under ``min_size`` px are dropped.  With one channel the foreground alone
    is used.  Large images run in ``workers`` threads (default: up to 4 cores).
    """
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 3 or prob.shape[0] < 1:
        raise ValueError(f"prob must be (C, H, W), got shape {prob.shape}")
    workers = workers or min(4, os.cpu_count() or 1)
    mask = prob[0] > fg_threshold
    if not mask.any():
        return np.zeros(mask.shape, np.uint32)
    core = mask & (prob[1] < boundary_threshold) if prob.shape[0] > 1 else mask
    surface = _seed_surface(core, prob[2] if prob.shape[0] >= 3 else None, sigma, workers)
    basins, peaks, keep, drain = _basins(surface, surface > 0, h)
    labels = _grow(surface, np.where(mask, _owners(peaks, keep, drain)[basins], 0), mask)
    # foreground the seeds could not reach (e.g. all boundary) still becomes objects
    rest, n = ndi.label(mask & (labels == 0))
    if n:
        labels = np.where(rest > 0, rest + int(keep.sum()), labels)
    return _sequential(labels, min_size)


def labels_to_grid(labels: np.ndarray, prob: np.ndarray, shape: tuple[int, int],
                   fg_threshold: float = 0.5) -> np.ndarray:
    """Instance labels made at another scale, brought to the image's grid ``shape``.

    ``labels`` (h, w) and ``prob`` (C, h, w) are the network's scale.  Each id keeps
    one connected object: its nearest-neighbour interior seeds the watershed over the
    resampled boundary map (the foreground map with one channel), within the resampled
    foreground, so outlines are as smooth as the probabilities, not blocky.  An object
    too small to keep an interior pixel keeps the pixel nearest its centre, so none
    is dropped.  Returns uint32 (H, W) with the same ids.
    """
    shape = tuple(int(s) for s in shape)
    if labels.shape == shape:
        return labels.astype(np.uint32, copy=False)
    up = resample(np.moveaxis(np.asarray(prob, np.float32), 0, -1), shape)
    near = nearest_labels(labels, shape)
    footprint = ndi.generate_binary_structure(2, 1)
    inner = (ndi.grey_erosion(near, footprint=footprint) == near) & \
            (ndi.grey_dilation(near, footprint=footprint) == near)
    markers = np.where(inner, near, 0)
    mask = (up[..., 0] > fg_threshold) | (markers > 0)
    surface = up[..., 1] if up.shape[-1] > 1 else -up[..., 0]
    out = watershed(surface, markers, mask=mask).astype(np.uint32)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    missing = np.setdiff1d(ids, np.unique(out))
    if len(missing):
        centres = ndi.center_of_mass(np.ones(labels.shape), labels, missing)
        for i, (cy, cx) in zip(missing, centres):
            y = int(np.clip(round((cy + 0.5) * shape[0] / labels.shape[0] - 0.5), 0, shape[0] - 1))
            x = int(np.clip(round((cx + 0.5) * shape[1] / labels.shape[1] - 0.5), 0, shape[1] - 1))
            out[y, x] = i
    return out
