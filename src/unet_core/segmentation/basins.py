"""The seed map's basins: its regional maxima, which of them are h-maxima, and the
objects they make.

Every pixel climbs by steepest ascent to a regional maximum (:func:`_ascent`); the
highest pass between each pair of touching basins (:func:`_basin_passes`) and a
union-find from the highest pass down (:func:`_dynamics`) say which maxima rise at
least ``h`` above the pass to a higher one, and where the others drain
(:func:`_owners`).  :func:`_grow` floods what is left of a mask from the labels next
to it.  Used by :func:`unet_core.segmentation.instances.probs_to_labels`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import local_maxima
from skimage.segmentation import watershed

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
    surface = np.asarray(surface, np.float32)
    basins, _, keep, _ = _basins(surface, surface > 0, h)
    top = local_maxima(surface, connectivity=2, allow_borders=True) & (surface > 0)
    seeds, _ = ndi.label(top & keep[basins], structure=_EIGHT)
    return seeds


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


#: :func:`_grow` floods each region left in its own box up to this many regions.
BOXED_REGIONS = 4096


def _grow(surface: np.ndarray, labels: np.ndarray, mask: np.ndarray,
          connectivity: int = 1) -> np.ndarray:
    """``labels`` (int) flooded down ``surface`` over the unlabelled pixels of ``mask``
    (in place): each connected region left is flooded in its own box, from the labels
    next to it, so the cost is that of the pixels left, not of the image."""
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
