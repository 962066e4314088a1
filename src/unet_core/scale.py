"""Per-image settings (stain, normalization, nucleus size) and the lazy views that
bring an image to what the network expects.

A :class:`~unet_core.predict.Predictor` decides these once per image
(:meth:`~unet_core.predict.Predictor.settings_for`), so that every tile, block or
worker of that image is treated alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .stain import STAIN_NAMES, convert

# Nucleus sizes the engine accepts, px; beyond them the estimate is clipped.
MIN_DIAMETER, MAX_DIAMETER = 3.0, 600.0
# Resampling factors the Predictor accepts (a 600 px nucleus to 20 px is 1/30).
MIN_SCALE, MAX_SCALE = 1 / 32, 8.0


@dataclass(frozen=True)
class ImageSettings:
    """How one image is brought to the network; decided once per image.

    Attributes
    ----------
    diameter : float or None
        Nucleus diameter in the image's own px (given or estimated); None when the
        image is used at its own scale (the model has no diameter, or none was found).
    scale : float
        Resampling factor before the network: model diameter / ``diameter`` (1.0 for
        none).  Labels and probabilities come back on the image's own grid.
    stain : str
        "fluorescence", "brightfield" or "he" (see :mod:`unet_core.stain`).
    low, high : ndarray, (C,) float64
        Percentile range of the stain-converted image, mapped to 0 and 1.
    white : float
        Unstained light level of an RGB image (H&E conversion).
    estimated : bool
        Whether ``diameter`` was estimated from the image ("auto").
    stain_note : str or None
        When the stain was guessed on weak evidence: which stain was assumed and how to
        change it (:meth:`unet_core.stain.StainGuess.note`).
    size_note : str or None
        When the size estimate cannot be trusted: why, and how to set the size
        (:meth:`unet_core.sizing.SizeEstimate.note`).
    """

    diameter: float | None
    scale: float
    stain: str
    low: np.ndarray = field(repr=False)
    high: np.ndarray = field(repr=False)
    white: float = 1.0
    estimated: bool = False
    stain_note: str | None = None
    size_note: str | None = None

    @property
    def notes(self) -> list[str]:
        """What people should know about these settings (an assumed stain, an uncertain
        size), one line each."""
        return [n for n in (self.stain_note, self.size_note) if n]

    def describe(self) -> str:
        """One line for people: 'nuclei 23.4 px (estimated), resampled x0.97 to the
        model's size, stain fluorescence'."""
        if self.diameter is None:
            size = "nucleus size not used: image at its own scale"
        else:
            how = " (estimated, uncertain)" if self.size_note else " (estimated)" if self.estimated else ""
            size = f"nuclei {self.diameter:.1f} px{how}, " + (
                "used at the image's scale" if self.scale == 1.0
                else f"resampled x{self.scale:.2g} to the model's size")
        stain = STAIN_NAMES.get(self.stain, self.stain)
        return f"{size}, stain {stain}" + (" (assumed)" if self.stain_note else "")

    def as_record(self) -> dict:
        """JSON-friendly record for CSVs, status files and training-set examples."""
        return {"diameter": None if self.diameter is None else round(float(self.diameter), 2),
                "diameter_estimated": bool(self.estimated), "scale": round(float(self.scale), 5),
                "stain": self.stain, "stain_assumed": self.stain_note is not None,
                "diameter_uncertain": self.size_note is not None}


class Prepared:
    """A lazy, stain-converted view of a raw plane: (H, W, C_raw) -> float32 (H, W, 1).

    Indexing with two slices (steps allowed) converts only that window.
    """

    def __init__(self, plane, stain: str, white: float = 1.0):
        self.plane, self.stain, self.white = plane, stain, white
        self.shape = tuple(plane.shape[:2]) + (1,)
        self.ndim = 3
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        return convert(np.asarray(self.plane[key[:2]]), self.stain, self.white)

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)


def overview(plane, max_pixels: int = 1_000_000) -> np.ndarray:
    """A regular subsample of an (H, W, ...) plane with at most ~``max_pixels`` px,
    read with a stride (lazy arrays are never read whole)."""
    h, w = plane.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
    return np.asarray(plane[::step, ::step])


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
    from skimage.feature import peak_local_max

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
