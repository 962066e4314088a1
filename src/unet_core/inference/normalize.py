"""Percentile normalization of images of any dtype, per channel."""
from __future__ import annotations

import warnings

import numpy as np

# Percentiles of huge images are taken on a regular subsample of about this many
# pixels: the same answer to a fraction of a grey level, at a fraction of the cost.
_MAX_SAMPLE = 4_000_000
#: Percentiles mapped to 0 and 1 unless a model card says otherwise.
LOW, HIGH = 1.0, 99.8
DEFAULT_NORMALIZATION = {"low": LOW, "high": HIGH}


def percentiles(norm: dict | None) -> tuple[float, float]:
    """(low, high) percentiles of a card's ``normalization`` (the defaults where unset)."""
    norm = norm or {}
    return norm.get("low", LOW), norm.get("high", HIGH)


def percentile_range(image: np.ndarray, low: float = LOW, high: float = HIGH) -> tuple[np.ndarray, np.ndarray]:
    """Low and high percentiles of each channel.

    Parameters
    ----------
    image : ndarray, (H, W, C)
        Any numeric dtype; NaN and inf are ignored.

    Returns
    -------
    lo, hi : ndarray, (C,) float64
    """
    h, w = image.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / _MAX_SAMPLE))))
    sample = np.asarray(image[::step, ::step]).reshape(-1, image.shape[-1]).astype(np.float64)
    lo = np.empty(sample.shape[1])
    hi = np.empty(sample.shape[1])
    for c in range(sample.shape[1]):
        v = sample[:, c]
        v = v[np.isfinite(v)]
        if v.size == 0:
            lo[c], hi[c] = 0.0, 1.0
            continue
        lo[c], hi[c] = np.percentile(v, [low, high])
    return lo, hi


class NonFiniteWarning(UserWarning):
    """The image holds inf or NaN pixels (treated as background)."""


NON_FINITE = ("The image holds pixels that are not finite numbers (inf or NaN); they carry no "
              "intensity and are treated as background. Check how the image was made (a "
              "division by zero, a saturated float conversion).")


def apply_range(tile: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Map ``lo -> 0`` and ``hi -> 1`` per channel; (..., C) -> float32 (..., C).

    A constant channel (``hi == lo``) maps to 0.  NaN and +-inf become 0 (background:
    a saturated +inf would otherwise look like the brightest nucleus) with a
    :class:`NonFiniteWarning`, so no non-finite value reaches the network.
    """
    scale = np.where(hi > lo, 1.0 / np.maximum(hi - lo, 1e-12), 0.0)
    if np.dtype(tile.dtype).itemsize > 4 and np.dtype(tile.dtype).kind == "f":
        # doubles beyond float32's range (1e300) are scaled first, in float64
        with np.errstate(over="ignore", invalid="ignore"):
            out = ((tile - lo) * scale).astype(np.float32)
    else:
        out = (tile.astype(np.float32) - lo.astype(np.float32)) * scale.astype(np.float32)
    if np.dtype(tile.dtype).kind == "f" and not np.isfinite(tile).all():
        warnings.warn(NON_FINITE, NonFiniteWarning, stacklevel=2)
        out[~np.isfinite(tile)] = 0.0
    return np.nan_to_num(out, nan=0.0, posinf=10.0, neginf=-10.0).clip(-10.0, 10.0, out=None)


def normalize(image: np.ndarray, low: float = LOW, high: float = HIGH) -> np.ndarray:
    """Percentile-normalize an (H, W, C) image to float32 (H, W, C)."""
    lo, hi = percentile_range(image, low, high)
    return apply_range(image, lo, hi)
