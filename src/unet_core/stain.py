"""Stains: what the network sees of fluorescence, brightfield and H&E images.

The bundled models see nuclei bright on a dark background (a nuclear fluorescence
stain).  Other images are brought to that look, pixel by pixel, before normalization:

- ``"fluorescence"``: as is (colour images as the mean of R, G and B);
- ``"brightfield"``: grey, inverted (dark nuclei on a bright background);
- ``"he"``: hematoxylin optical density by colour deconvolution (Ruifrok & Johnston's
  H&E-DAB vectors, as :func:`skimage.color.rgb2hed`), which is high in nuclei.

``"auto"`` decides from the channels and the background (:func:`detect_stain`).
Every conversion is per pixel, so it can be applied window by window.
"""
from __future__ import annotations

from enum import Enum

import numpy as np

from .errors import InputError


class Stain(str, Enum):
    FLUORESCENCE = "fluorescence"
    BRIGHTFIELD = "brightfield"
    HE = "he"

    def __str__(self) -> str:  # so f-strings and argparse show the plain value
        return self.value


STAIN_CHOICES = ("auto",) + tuple(s.value for s in Stain)


def parse_stain(value) -> str:
    """"auto" or a :class:`Stain` value; anything else is a clear error."""
    v = "auto" if value is None else str(getattr(value, "value", value)).lower()
    if v in ("h&e", "hne", "h-e"):
        v = "he"
    if v not in STAIN_CHOICES:
        raise InputError(f"Unknown stain {value!r}; use one of {', '.join(STAIN_CHOICES)}.")
    return v


def _hematoxylin_vector() -> np.ndarray:
    from skimage.color import hed_from_rgb

    return np.asarray(hed_from_rgb, np.float32)[:, 0]


def white_level(overview: np.ndarray) -> float:
    """The level of unstained (white) light of an RGB image, from an overview
    (h, w, C): the 99.5th percentile of its brightest channel, at least 1."""
    rgb = np.asarray(overview[..., :3], np.float32)
    return float(max(np.percentile(rgb.max(axis=-1), 99.5), 1e-6))


def convert(window: np.ndarray, stain: str, white: float = 1.0) -> np.ndarray:
    """One window (h, w, C) of raw pixels -> float32 (h, w, 1) as the network sees them
    (before percentile normalization)."""
    x = np.asarray(window)
    if x.ndim == 2:
        x = x[..., None]
    x = x.astype(np.float32, copy=False)
    colour = x.shape[-1] >= 3
    if stain == Stain.HE:
        if not colour:
            raise InputError("H&E needs a colour (RGB) image; this one has "
                             f"{x.shape[-1]} channel(s). Use stain 'brightfield' for grey images.")
        od = -np.log(np.clip(x[..., :3] / np.float32(white), 1e-3, None))
        return np.maximum(od @ _hematoxylin_vector(), 0)[..., None]
    grey = x[..., :3].mean(axis=-1, keepdims=True) if colour else x[..., :1]
    return -grey if stain == Stain.BRIGHTFIELD else grey


def detect_stain(overview: np.ndarray) -> str:
    """Guess the stain of an image from an overview (h, w, C) of raw pixels.

    Nuclei cover a minority of a field, so the median pixel is background.  A background
    in the upper half of the 1st-99.8th percentile range is bright: brightfield or H&E;
    in colour, H&E when the stained pixels are clearly coloured (pink/purple: the
    spread between channels is a sizeable part of the darkness), brightfield otherwise.
    """
    x = np.asarray(overview, np.float32)
    if x.ndim == 2:
        x = x[..., None]
    colour = x.shape[-1] >= 3
    grey = x[..., :3].mean(axis=-1) if colour else x[..., 0]
    finite = grey[np.isfinite(grey)]
    if finite.size == 0:
        return Stain.FLUORESCENCE.value
    lo, med, hi = np.percentile(finite, [1.0, 50.0, 99.8])
    bright_background = hi > lo and (med - lo) / (hi - lo) > 0.5
    if not bright_background:
        return Stain.FLUORESCENCE.value
    if not colour:
        return Stain.BRIGHTFIELD.value
    rgb = x[..., :3]
    dark = grey < np.percentile(finite, 30)
    if not dark.any():
        return Stain.BRIGHTFIELD.value
    spread = (rgb.max(axis=-1) - rgb.min(axis=-1))[dark]
    darkness = (hi - grey)[dark]
    chroma = float(np.median(spread) / max(float(np.median(darkness)), 1e-6))
    return Stain.HE.value if chroma > 0.25 else Stain.BRIGHTFIELD.value
