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
    to a higher maximum (bool (n+1,)), and where each of them drains (int (n+1,)).

    Basins merge from the highest pass down (union-find); where two meet at ``level``,
    the one with the lower maximum is significant when ``peak - level >= h``, and it
    drains into the basin across that pass (flooding from the h-maxima enters it
    there).  Maxima that never meet a higher one meet the rest through the
    background (0) and drain into themselves.
    """
    h32 = np.float32(h)
    parent = list(range(len(peaks)))
    drain = list(range(len(peaks)))
    top = peaks.tolist()
    keep = np.ones(len(peaks), bool)

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i in np.argsort(-levels, kind="stable").tolist():
        x, y = int(a[i]), int(b[i])
        ra, rb = root(x), root(y)
        if ra == rb:
            continue
        if top[ra] < top[rb] or (top[ra] == top[rb] and ra > rb):
            ra, rb, x, y = rb, ra, y, x
        keep[rb] = np.float32(peaks[rb]) - levels[i] >= h32
        parent[rb], drain[rb] = ra, x               # flooding enters rb from basin x
    for r in range(1, len(peaks)):
        if parent[r] == r:
            keep[r] = peaks[r] >= h32
    keep[int(np.argmax(peaks))] = len(peaks) > 1
    keep[0] = False
    return keep, np.asarray(drain, np.int64)


def _owners(peaks: np.ndarray, keep: np.ndarray, drain: np.ndarray) -> np.ndarray:
    """int32 (n+1,): the object (1..k, in order of the maxima) each basin belongs to:
    its own when its maximum is an ``h``-maximum, else that of the basin it drains
    into, 0 when it drains into no ``h``-maximum."""
    ids = np.zeros(len(peaks), np.int32)
    ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    owner = np.full(len(peaks), -1, np.int64)
    owner[keep] = ids[keep]
    owner[(~keep) & (drain == np.arange(len(peaks)))] = 0      # drains nowhere
    owner[0] = 0
    drain = drain.tolist()
    for r in range(len(peaks)):                  # follow each chain of drains once
        chain = []
        while owner[r] < 0:
            chain.append(r)
            r = drain[r]
        for c in chain:
            owner[c] = owner[r]
    return owner.astype(np.int32)


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


#: The eight neighbours (dy, dx).
_NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def _uphill(surface: np.ndarray) -> np.ndarray:
    """int32 (H, W): the flat offset from each pixel to its highest 8-neighbour when
    that is higher than the pixel, else 0 (a maximum, or a flat)."""
    h, w = surface.shape
    pad = np.pad(surface, 1, constant_values=-np.inf)
    best = surface.copy()
    step = np.zeros((h, w), np.int32)
    for dy, dx in _NEIGHBOURS:
        near = pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        up = near > best
        np.copyto(best, near, where=up)
        step[up] = dy * w + dx
    return step


def _ascent(surface: np.ndarray, maxima: np.ndarray, flood: np.ndarray,
            workers: int | None = None) -> np.ndarray:
    """The basin (int32 label of ``maxima``) of every pixel of ``flood``: the maximum
    its steepest ascent ends on.  Every pixel climbs to its maximum inside its basin,
    so two basins touch at the same passes as a watershed's do.  Pixels whose ascent
    ends on a flat that is not a maximum take the basin flooding reaches them from."""
    workers = workers or min(4, os.cpu_count() or 1)
    banded = workers > 1 and surface.size >= PARALLEL_PIXELS and surface.shape[0] >= 8 * workers
    step = _banded(_uphill, surface, 1, workers) if banded else _uphill(surface)
    where = np.flatnonzero(flood)
    at = np.full(flood.size, -1, np.int64 if where.size >= 2 ** 31 else np.int32)
    at[where] = np.arange(where.size)
    nxt = at[where + step.ravel()[where]]                  # uphill, among the flood's pixels
    del at
    while True:                                            # pointer jumping to the top
        top = nxt[nxt]
        if np.array_equal(top, nxt):
            break
        nxt = top
    basins = np.zeros(flood.shape, np.int32)
    basins.ravel()[where] = maxima.ravel()[where[nxt]]
    if (basins[flood] == 0).any():                         # flats that are not maxima
        basins = _grow(surface, basins, flood, connectivity=2)
    return basins


def _basins(surface: np.ndarray, flood: np.ndarray, h: float):
    """Every regional maximum (8-connected plateaus) of ``surface`` flooded into its
    basin within ``flood``: (basins int32, peaks, keep, drain), where ``peaks[i]`` is
    maximum i's value and ``keep``/``drain`` say which maxima are ``h``-maxima and where
    the others drain (see :func:`_dynamics`)."""
    from skimage.morphology import local_maxima

    top = local_maxima(surface, connectivity=2, allow_borders=True) & (surface > 0)
    maxima, n = ndi.label(top, structure=_EIGHT)
    peaks = np.zeros(n + 1, np.float32)
    peaks[maxima[top]] = surface[top]            # a plateau has one value
    if n == 0 or h > np.ptp(surface):
        return maxima, peaks, np.zeros(n + 1, bool), np.arange(n + 1)
    basins = _ascent(surface, maxima, flood)
    return (basins, peaks) + _dynamics(peaks, *_basin_passes(basins, surface, n), h)


def h_maxima_seeds(surface: np.ndarray, h: float) -> np.ndarray:
    """Labelled seeds (int32 (H, W), 8-connected) of the maxima of ``surface`` (float32,
    >= 0, 0 between nuclei) that rise at least ``h`` above their surroundings: the same
    pixels as ``skimage.morphology.h_maxima(surface, h)``, found from the regional
    maxima's basins (:func:`_basins`) without a grey-level reconstruction of the whole
    image (several times slower)."""
    from skimage.morphology import local_maxima

    surface = np.asarray(surface, np.float32)
    basins, _, keep, _ = _basins(surface, surface > 0, h)
    top = local_maxima(surface, connectivity=2, allow_borders=True) & (surface > 0)
    seeds, _ = ndi.label(top & keep[basins], structure=_EIGHT)
    return seeds


#: Rows of context each band of :func:`_banded` reads beyond its own (the distance
#: transform is exact in a band where it stays below this).
BAND_HALO = 64


def _banded(fn, image: np.ndarray, halo: int, workers: int) -> np.ndarray:
    """``fn(image)`` computed in bands of rows, each with ``halo`` rows of context, in
    threads (the scipy filters used here release the GIL)."""
    h = image.shape[0]
    cuts = np.linspace(0, h, workers + 1).astype(int)

    def one(k):
        lo, hi = max(cuts[k] - halo, 0), min(cuts[k + 1] + halo, h)
        return fn(image[lo:hi])[cuts[k] - lo:cuts[k + 1] - lo]

    with ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(one, range(workers))))


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

    banded = workers > 1 and core.size >= PARALLEL_PIXELS and core.shape[0] >= 4 * BAND_HALO
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


#: :func:`_grow` floods each region left in its own box up to this many regions.
BOXED_REGIONS = 4096


def _grow(surface: np.ndarray, labels: np.ndarray, mask: np.ndarray,
          connectivity: int = 1) -> np.ndarray:
    """``labels`` (int) flooded down ``surface`` over the unlabelled pixels of ``mask``
    (in place): each connected region left is flooded in its own box, from the labels
    next to it, so the cost is that of the pixels left, not of the image."""
    from skimage.segmentation import watershed

    todo = mask & (labels == 0)
    structure = _EIGHT if connectivity == 2 else None
    parts, n = ndi.label(todo, structure=structure)
    if n == 0:
        return labels
    if n > BOXED_REGIONS:
        ring = (labels > 0) & ndi.binary_dilation(todo, structure or
                                                  ndi.generate_binary_structure(2, 1))
        grown = _flood(surface, np.where(ring, labels, 0), todo | ring, connectivity)
        return np.where(todo, grown, labels)
    h, w = labels.shape
    for i, (ys, xs) in enumerate(ndi.find_objects(parts), 1):
        box = (slice(max(ys.start - 1, 0), min(ys.stop + 1, h)),
               slice(max(xs.start - 1, 0), min(xs.stop + 1, w)))
        mine = parts[box] == i
        seeds = labels[box]
        grown = watershed(-surface[box], seeds, connectivity=connectivity, mask=mine | (seeds > 0))
        seeds[mine] = grown[mine]
    return labels


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
