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
from concurrent.futures import ThreadPoolExecutor

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


_EIGHT = np.ones((3, 3), bool)
#: The four forward 8-neighbour offsets (dy, dx): every adjacent pixel pair once.
_PAIRS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _basin_passes(basins: np.ndarray, surface: np.ndarray, n: int):
    """(a, b, level) of every pair of 8-adjacent basins ``a < b`` (ids 1..n): the
    highest level at which they touch, ``min(surface)`` over the adjacent pixel pair."""
    h, w = basins.shape
    keys, levels = [], []
    for dy, dx in _PAIRS:
        src = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
        dst = (slice(dy, h), slice(max(0, dx), w + min(0, dx)))
        a, b = basins[src], basins[dst]
        touch = (a != b) & (a > 0) & (b > 0)
        a, b = a[touch].astype(np.int64), b[touch].astype(np.int64)
        keys.append(np.minimum(a, b) * (n + 1) + np.maximum(a, b))
        levels.append(np.minimum(surface[src][touch], surface[dst][touch]))
    keys, levels = np.concatenate(keys), np.concatenate(levels)
    order = np.lexsort((-levels, keys))          # per pair, its highest level first
    keys, levels = keys[order], levels[order]
    first = np.r_[True, keys[1:] != keys[:-1]] if keys.size else np.zeros(0, bool)
    keys, levels = keys[first], levels[first]
    return keys // (n + 1), keys % (n + 1), levels


def _dynamics(peaks: np.ndarray, a, b, levels, h: float):
    """Which maxima (index 1..n of ``peaks``) rise at least ``h`` above the highest pass
    to a higher maximum (bool (n+1,)).

    Basins merge from the highest pass down (union-find); where two meet at ``level``,
    the one with the lower maximum is significant when ``peak - level >= h``.  Maxima
    that never meet a higher one meet the rest through the background (0).
    """
    h32 = np.float32(h)
    parent = list(range(len(peaks)))
    top = peaks.tolist()
    keep = np.ones(len(peaks), bool)

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in np.argsort(-levels, kind="stable").tolist():
        ra, rb = root(int(a[i])), root(int(b[i]))
        if ra == rb:
            continue
        if top[ra] < top[rb] or (top[ra] == top[rb] and ra > rb):
            ra, rb = rb, ra
        keep[rb] = np.float32(peaks[rb]) - levels[i] >= h32
        parent[rb] = ra
    for r in range(1, len(peaks)):
        if parent[r] == r:
            keep[r] = peaks[r] >= h32
    keep[int(np.argmax(peaks))] = len(peaks) > 1
    keep[0] = False
    return keep


#: Images of at least this many px flood their regions in threads (see :func:`_flood`).
PARALLEL_PIXELS = 1 << 20


def _flood(surface: np.ndarray, markers: np.ndarray, flood: np.ndarray, connectivity: int = 2,
           workers: int | None = None) -> np.ndarray:
    """``watershed(-surface, markers, connectivity=connectivity, mask=flood)``, the same
    labels, faster: the flood's regions (connected as the flooding is) never meet, so
    they are shared out, balanced by area, into bands of rows flooded in threads
    (skimage's watershed releases the GIL)."""
    from skimage.segmentation import watershed

    def run(surf, mark, mask):
        return watershed(-surf, mark, connectivity=connectivity, mask=mask)

    workers = workers or min(4, os.cpu_count() or 1)
    if workers < 2 or flood.size < PARALLEL_PIXELS:
        return run(surface, markers, flood)
    structure = _EIGHT if connectivity == 2 else None
    regions, n = ndi.label(flood, structure=structure)
    if n < 2 * workers:
        return run(surface, markers, flood)
    boxes = ndi.find_objects(regions)
    centre = np.array([(b[0].start + b[0].stop) / 2 for b in boxes])
    area = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    order = np.argsort(centre, kind="stable")
    share = np.minimum(np.cumsum(area[order]) * workers // max(int(area.sum()), 1), workers - 1)
    group = np.zeros(n + 1, np.int16)
    group[order + 1] = share + 1
    of = group[regions]
    del regions, area                     # memory: only the group of each pixel is needed

    def one(g):
        rows = [boxes[i][0] for i in order[share == g - 1]]
        if not rows:
            return slice(0, 0), None
        band = slice(min(r.start for r in rows), max(r.stop for r in rows))
        mine = of[band] == g
        return band, run(surface[band], np.where(mine, markers[band], 0), mine)

    out = np.zeros(flood.shape, np.int32)
    with ThreadPoolExecutor(workers) as pool:
        for band, lab in pool.map(one, range(1, workers + 1)):
            if lab is not None:
                out[band] += lab
    return out


def _basins(surface: np.ndarray, flood: np.ndarray, h: float):
    """(maxima labels, keep) of ``surface`` within ``flood``: every regional maximum
    (8-connected plateaus) is flooded into its basin, and ``keep`` says which of them
    are ``h``-maxima (see :func:`_dynamics`)."""
    from skimage.morphology import local_maxima

    top = local_maxima(surface, connectivity=2, allow_borders=True) & (surface > 0)
    maxima, n = ndi.label(top, structure=_EIGHT)
    peaks = np.zeros(n + 1, np.float32)
    peaks[maxima[top]] = surface[top]            # a plateau has one value
    if n == 0 or h > np.ptp(surface):
        return maxima, np.zeros(n + 1, bool)
    basins = _flood(surface, maxima, flood)
    return maxima, _dynamics(peaks, *_basin_passes(basins, surface, n), h)


def h_maxima_seeds(surface: np.ndarray, h: float) -> np.ndarray:
    """Labelled seeds (int32 (H, W), 8-connected) of the maxima of ``surface`` (float32,
    >= 0, 0 between nuclei) that rise at least ``h`` above their surroundings: the same
    pixels as ``skimage.morphology.h_maxima(surface, h)``, found from the regional
    maxima's basins (:func:`_basins`) without a grey-level reconstruction of the whole
    image (several times slower)."""
    surface = np.asarray(surface, np.float32)
    maxima, keep = _basins(surface, surface > 0, h)
    seeds, _ = ndi.label(keep[maxima], structure=_EIGHT)
    return seeds


def probs_to_labels(prob: np.ndarray, fg_threshold: float = 0.5, boundary_threshold: float = 0.5,
                    h: float = 1.0, sigma: float = 1.0, min_size: int = 16) -> np.ndarray:
    """Probabilities (C, H, W) -> uint32 instance labels (H, W), ids 1..N.

    The seed map is the distance transform of foreground > ``fg_threshold`` and
    boundary < ``boundary_threshold`` (the nuclei shrunk apart by their predicted
    boundaries), weighted by ``0.5 + centre`` where there is a centre map (C >= 3),
    and smoothed by a Gaussian of ``sigma`` px.  Every regional maximum of that map is
    flooded into its basin over the foreground (one watershed); basins whose maximum
    rises less than ``h`` above the pass to a higher one (not an ``h``-maximum, see
    :func:`h_maxima_seeds`) join the basin they drain into.  That is a watershed seeded
    by the ``h``-maxima, in one flooding.  Foreground regions without a maximum become
    objects of their own.  Objects under ``min_size`` px are dropped.  With one channel
    the foreground alone is used.
    """
    from skimage.segmentation import relabel_sequential

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
    maxima, keep = _basins(surface, surface > 0, h)
    seeds, _ = ndi.label(keep[maxima])
    labels = _flood(surface, seeds, mask, connectivity=1)
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
