"""Nucleus size: the sizes and scales the engine accepts, and how a size is measured
(from labels, from a foreground mask) and where (the probe windows).

The size estimate itself is :mod:`unet_core.inference.sizing`; the per-image settings that use
it are :mod:`unet_core.inference.image_settings`.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max

# Nucleus sizes the engine accepts, px; beyond them the estimate is clipped.
MIN_DIAMETER, MAX_DIAMETER = 3.0, 600.0
# Resampling factors the Predictor accepts (a 600 px nucleus to 20 px is 1/30).
MIN_SCALE, MAX_SCALE = 1 / 32, 8.0


def equivalent_diameters(labels: np.ndarray, drop_edge: bool = True) -> np.ndarray:
    """Equivalent diameters (px) of the objects of ``labels`` (H, W); objects touching
    the edge are left out (they are cut) unless that leaves fewer than 5."""
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    if drop_edge and len(ids):
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        keep = ~np.isin(ids, edge)
        if keep.sum() >= 5:
            areas = areas[keep]
    return 2.0 * np.sqrt(areas / np.pi)


def labels_diameter(labels: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Median equivalent diameter (px) of the objects in ``labels`` (H, W) that lie in
    ``mask`` (all when None); None when there are none."""
    lab = np.asarray(labels)
    if mask is not None:
        lab = np.where(np.asarray(mask, bool), lab, 0)
    areas = np.bincount(lab.ravel().astype(np.int64))[1:]
    areas = areas[areas > 0]
    return float(np.median(2 * np.sqrt(areas / np.pi))) if areas.size else None


def distance_diameter(foreground: np.ndarray) -> float | None:
    """Nucleus diameter (px) from a foreground mask, robust to touching nuclei.

    Touching nuclei merge in a mask but keep one ridge peak of the distance transform
    each, at about their minor radius; twice the median peak height, times 1.1 for the
    typical elongation, is their equivalent diameter.  None when there is no nucleus.
    """
    if not foreground.any():
        return None
    dist = ndi.distance_transform_edt(foreground)
    # peaks of the whole map at once (per connected component it is ~4x slower, and the
    # median height came out the same on the DSB image at 0.5x-4x)
    peaks = peak_local_max(dist, min_distance=2, threshold_abs=1.0, exclude_border=False)
    if len(peaks) == 0:
        return None
    heights = dist[tuple(peaks.T)]
    return float(2.2 * np.median(heights))


def probe_windows(shape: tuple[int, int], side: int, count: int,
                  score=None) -> list[tuple[slice, slice]]:
    """Up to ``count`` windows of ``side`` px where the size is measured: the whole
    image when it is small, else the best-scoring of a 3 x 3 set of candidates
    (``score(window) -> float``, e.g. how much of it looks like nuclei)."""
    h, w = shape
    if h * w <= count * side * side * 1.5:
        return [(slice(0, h), slice(0, w))]
    cands = []
    for fy in (0.2, 0.5, 0.8):
        for fx in (0.2, 0.5, 0.8):
            y0 = int(np.clip(fy * h - side / 2, 0, max(h - side, 0)))
            x0 = int(np.clip(fx * w - side / 2, 0, max(w - side, 0)))
            cands.append((slice(y0, min(y0 + side, h)), slice(x0, min(x0 + side, w))))
    if score is not None:
        cands.sort(key=score, reverse=True)
    return cands[:count]

