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

import numpy as np
from scipy import ndimage as ndi

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


def probs_to_labels(prob: np.ndarray, fg_threshold: float = 0.5, boundary_threshold: float = 0.5,
                    h: float = 1.0, sigma: float = 1.0, min_size: int = 16) -> np.ndarray:
    """Probabilities (C, H, W) -> uint32 instance labels (H, W), ids 1..N.

    The seed map is the distance transform of foreground > ``fg_threshold`` and
    boundary < ``boundary_threshold`` (the nuclei shrunk apart by their predicted
    boundaries), weighted by ``0.5 + centre`` where there is a centre map (C >= 3),
    and smoothed by a Gaussian of ``sigma`` px.  Its ``h``-maxima seed a watershed
    that fills the foreground; foreground regions without a seed become objects of
    their own.  Objects under ``min_size`` px are dropped.  With one channel the
    foreground alone is used.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import relabel_sequential, watershed

    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 3 or prob.shape[0] < 1:
        raise ValueError(f"prob must be (C, H, W), got shape {prob.shape}")
    mask = prob[0] > fg_threshold
    if not mask.any():
        return np.zeros(mask.shape, np.uint32)
    core = mask & (prob[1] < boundary_threshold) if prob.shape[0] > 1 else mask
    surface = ndi.distance_transform_edt(core).astype(np.float32)
    if prob.shape[0] >= 3:
        surface *= 0.5 + prob[2]
    if sigma > 0:
        surface = ndi.gaussian_filter(surface, sigma)
    seeds, _ = ndi.label(h_maxima(surface, h) > 0)
    labels = watershed(-surface, seeds, mask=mask)
    # foreground the seeds could not reach (e.g. all boundary) still becomes objects
    rest, n = ndi.label(mask & (labels == 0))
    if n:
        labels = np.where(rest > 0, rest + labels.max(), labels)
    labels = _drop_small(labels, min_size)
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.uint32)


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
    from skimage.segmentation import watershed

    from .resample import nearest_labels, resample

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
