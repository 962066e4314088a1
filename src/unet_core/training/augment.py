"""Random crops and cheap augmentations of (image, labels, mask) crops (numpy/scipy).

Geometric transforms (flips, 90-degree rotations, elastic deformation) move image,
labels and reviewed mask together; labels and mask are resampled with nearest
neighbour, so instance ids stay ids.  Intensity transforms (gain/offset/gamma
jitter, Gaussian noise, blur) touch only the image.  Random erasing blanks a
rectangle of the image and takes it out of the reviewed mask: the network is not
asked to find nuclei it cannot see.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..inference.resample import Resampled, nearest_labels


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the augmentations (all on normalized images)."""

    flip: bool = True
    rot90: bool = True
    elastic_p: float = 0.3
    elastic_alpha: float = 6.0        # largest displacement, px
    elastic_grid: int = 4             # control points per side
    erase_p: float = 0.15
    erase_max_fraction: float = 0.2   # of the crop area
    intensity_p: float = 0.8
    gain: tuple = (0.75, 1.25)
    offset: tuple = (-0.1, 0.1)
    gamma: tuple = (0.7, 1.4)
    noise_p: float = 0.3
    noise_std: tuple = (0.0, 0.08)
    blur_p: float = 0.2
    blur_sigma: tuple = (0.5, 1.2)
    scale_p: float = 0.0              # resample the crop (nuclei sizes, interpolated pixels)
    scale_range: tuple = (0.5, 2.0)   # log-uniform factor of the resampling
    stain_p: float = 0.8              # H&E crops: jitter the stains (HED optical density)
    stain_gain: tuple = (0.8, 1.25)   # hematoxylin density gain
    stain_mix: float = 0.15           # largest share of eosin / DAB density mixed in

    @classmethod
    def from_value(cls, value) -> AugmentConfig | None:
        """``True``/``None`` -> defaults, ``False`` -> None (no augmentation), dict -> fields."""
        if value is False:
            return None
        if value is True or value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return cls(**dict(value))


def reviewed_points(mask: np.ndarray, step: int = 4) -> np.ndarray:
    """(N, 2) int coordinates of reviewed pixels on a ``step`` grid (for crop centres)."""
    pts = np.argwhere(mask[::step, ::step]) * step
    if len(pts) == 0:
        pts = np.argwhere(mask)
    return pts.astype(np.int64)


def random_crop(image: np.ndarray, labels: np.ndarray, mask: np.ndarray, size: int,
                rng: np.random.Generator, points: np.ndarray | None = None,
                reviewed_fraction: float = 0.9):
    """A ``size`` x ``size`` crop, centred on a reviewed pixel with ``reviewed_fraction``.

    Parameters
    ----------
    image : ndarray, float32 (H, W, C)
    labels : ndarray, uint32 (H, W)
    mask : ndarray, bool (H, W)
    points : ndarray, (N, 2), optional
        Candidate centres (:func:`reviewed_points`); computed if not given.

    Returns
    -------
    image (size, size, C) float32, labels (size, size) uint32, mask (size, size) bool.
    Parts outside the image are reflect-padded in the image and unreviewed in the mask.
    """
    h, w = labels.shape
    if points is None:
        points = reviewed_points(mask)
    if len(points) and rng.random() < reviewed_fraction:
        cy, cx = points[rng.integers(len(points))]
        y0 = int(np.clip(cy - size // 2, min(0, h - size), max(0, h - size)))
        x0 = int(np.clip(cx - size // 2, min(0, w - size), max(0, w - size)))
    else:
        y0 = int(rng.integers(0, h - size + 1)) if h >= size else (h - size) // 2
        x0 = int(rng.integers(0, w - size + 1)) if w >= size else (w - size) // 2
    ys, xs = slice(max(y0, 0), min(y0 + size, h)), slice(max(x0, 0), min(x0 + size, w))
    img, lab, msk = image[ys, xs], labels[ys, xs], mask[ys, xs]
    pad = ((ys.start - y0, y0 + size - ys.stop), (xs.start - x0, x0 + size - xs.stop))
    if any(p for pair in pad for p in pair):
        img = np.pad(img, pad + ((0, 0),), mode="reflect" if min(img.shape[:2]) > 1 else "edge")
        lab = np.pad(lab, pad)
        msk = np.pad(msk, pad)
    return np.ascontiguousarray(img, np.float32), np.ascontiguousarray(lab), np.ascontiguousarray(msk)


def scaled_crop(image, labels, mask, size: int, rng, points, reviewed_fraction, cfg):
    """A ``size`` crop resampled by a random factor of ``cfg.scale_range`` (with
    probability ``cfg.scale_p``): a ``size / factor`` window brought to ``size`` px,
    the image linearly (as the Predictor resamples), labels and mask by nearest
    neighbour.  Teaches the network other nucleus sizes and interpolated pixels."""
    if cfg is None or cfg.scale_p <= 0 or rng.random() >= cfg.scale_p:
        return random_crop(image, labels, mask, size, rng, points, reviewed_fraction)
    lo, hi = np.log(cfg.scale_range[0]), np.log(cfg.scale_range[1])
    window = max(8, int(round(size / np.exp(rng.uniform(lo, hi)))))
    img, lab, msk = random_crop(image, labels, mask, window, rng, points, reviewed_fraction)
    img = Resampled(img, (size, size))[:, :]
    return (img, nearest_labels(lab, (size, size)),
            nearest_labels(msk.astype(np.uint8), (size, size)) > 0)


def stain_jitter(hed: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig | None,
                 low: float, high: float) -> np.ndarray:
    """The hematoxylin channel of an H&E crop as the network sees it, with the stains
    jittered: (S, S, 3) HED optical densities -> normalized float32 (S, S, 1).

    Another lab's stain vectors and scanner show as a gain on the hematoxylin density
    and some eosin (and residual) density leaking into it (HoVer-Net's and
    tiatoolbox's HED jitter); ``low`` / ``high`` are the image's normalization range.
    """
    h = hed[..., 0]
    if cfg is not None and rng.random() < cfg.stain_p:
        mix = rng.uniform(-cfg.stain_mix, cfg.stain_mix, size=2)
        h = h * rng.uniform(*cfg.stain_gain) + mix[0] * hed[..., 1] + mix[1] * hed[..., 2]
    h = np.maximum(h, 0)
    return ((h - low) / max(high - low, 1e-6)).astype(np.float32)[..., None]


def _elastic(image, labels, mask, rng, cfg: AugmentConfig):
    h, w = labels.shape
    g = max(2, cfg.elastic_grid)
    coarse = rng.uniform(-1, 1, size=(2, g, g)) * cfg.elastic_alpha
    disp = [ndi.zoom(c, (h / g, w / g), order=3, mode="nearest")[:h, :w] for c in coarse]
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    coords = np.stack([yy + disp[0], xx + disp[1]])
    image = np.stack([ndi.map_coordinates(image[..., c], coords, order=1, mode="reflect")
                      for c in range(image.shape[-1])], axis=-1)
    labels = ndi.map_coordinates(labels, coords, order=0, mode="reflect")
    mask = ndi.map_coordinates(mask.astype(np.uint8), coords, order=0, mode="constant", cval=0) > 0
    return image.astype(np.float32), labels, mask


def augment(image: np.ndarray, labels: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            cfg: AugmentConfig | None = None):
    """Randomly augment one square crop.

    Parameters
    ----------
    image : ndarray, float32 (S, S, C)
        Normalized image crop.
    labels : ndarray, uint32 (S, S)
    mask : ndarray, bool (S, S)
    rng : numpy Generator
    cfg : AugmentConfig, optional

    Returns
    -------
    image float32 (S, S, C), labels uint32 (S, S), mask bool (S, S): new arrays.
    """
    cfg = cfg or AugmentConfig()
    if cfg.flip and rng.random() < 0.5:
        image, labels, mask = image[::-1], labels[::-1], mask[::-1]
    if cfg.flip and rng.random() < 0.5:
        image, labels, mask = image[:, ::-1], labels[:, ::-1], mask[:, ::-1]
    if cfg.rot90 and labels.shape[0] == labels.shape[1]:
        k = int(rng.integers(4))
        image, labels, mask = (np.rot90(a, k, axes=(0, 1)) for a in (image, labels, mask))
    image, labels, mask = (np.ascontiguousarray(a) for a in (image, labels, mask))
    image = image.astype(np.float32, copy=True)
    if rng.random() < cfg.elastic_p:
        image, labels, mask = _elastic(image, labels, mask, rng, cfg)
    if rng.random() < cfg.intensity_p:
        lo, hi = float(image.min()), float(image.max())
        if hi > lo:
            u = (image - lo) / (hi - lo)
            image = u ** rng.uniform(*cfg.gamma) * (hi - lo) + lo
        image = image * rng.uniform(*cfg.gain) + rng.uniform(*cfg.offset)
    if rng.random() < cfg.blur_p:
        s = rng.uniform(*cfg.blur_sigma)
        image = ndi.gaussian_filter(image, sigma=(s, s, 0))
    if rng.random() < cfg.noise_p:
        image = image + rng.normal(0.0, rng.uniform(*cfg.noise_std), image.shape)
    if rng.random() < cfg.erase_p:
        h, w = labels.shape
        area = rng.uniform(0.02, cfg.erase_max_fraction) * h * w
        eh = int(np.clip(np.sqrt(area * rng.uniform(0.5, 2.0)), 1, h))
        ew = int(np.clip(area / eh, 1, w))
        y0, x0 = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
        image[y0:y0 + eh, x0:x0 + ew] = rng.uniform(float(image.min()), float(image.max()) + 1e-6)
        mask = mask.copy()
        mask[y0:y0 + eh, x0:x0 + ew] = False
    return image.astype(np.float32), labels, mask
