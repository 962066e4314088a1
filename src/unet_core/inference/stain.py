"""Stains: what the network sees of fluorescence, brightfield and H&E images.

The bundled models see nuclei bright on a dark background (a nuclear fluorescence
stain).  Other images are brought to that look, pixel by pixel, before normalization:

- ``"fluorescence"``: as is (colour images as the mean of R, G and B);
- ``"brightfield"``: grey, inverted (dark nuclei on a bright background);
- ``"he"``: hematoxylin optical density by colour deconvolution (Ruifrok & Johnston's
  H&E-DAB vectors, as :func:`skimage.color.rgb2hed`), which is high in nuclei.

``"auto"`` decides from the colour of the stained pixels (:func:`guess_stain`).
Every conversion is per pixel, so it can be applied window by window.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from skimage.color import hed_from_rgb

from ..errors import InputError


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


def optical_density(rgb: np.ndarray, white: float) -> np.ndarray:
    """Optical density (H, W, 3) float32 of RGB pixels against the unstained light level."""
    return -np.log(np.clip(np.asarray(rgb[..., :3], np.float32) / np.float32(white), 1e-3, None))


def hed_density(rgb: np.ndarray, white: float, channels: slice = slice(None)) -> np.ndarray:
    """Hematoxylin, eosin and DAB densities (H, W, 3) float32 of an RGB image (Ruifrok &
    Johnston's vectors, as :func:`skimage.color.rgb2hed`); ``channels`` selects some."""
    return optical_density(rgb, white) @ np.asarray(hed_from_rgb, np.float32)[:, channels]


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
        return np.maximum(hed_density(x, white, slice(0, 1)), 0)
    grey = x[..., :3].mean(axis=-1, keepdims=True) if colour else x[..., :1]
    return -grey if stain == Stain.BRIGHTFIELD else grey


@dataclass(frozen=True)
class StainGuess:
    """What :func:`guess_stain` decided, and how sure it is.

    Attributes
    ----------
    stain : str
        A :class:`Stain` value.
    confident : bool
        False when the evidence was weak (then say which stain was assumed and how to
        set it).
    reason : str
        The evidence, in words, for people.
    """

    stain: str
    confident: bool
    reason: str

    def note(self) -> str | None:
        """A sentence for the user when the guess was weak, else None."""
        where = "Stain in the Segment widget, --stain on the command line"
        return None if self.confident else (
            f"Stain assumed to be {STAIN_NAMES[self.stain]} ({self.reason}); if that is "
            f"wrong, choose the stain by hand ({where}).")


STAIN_NAMES = {"fluorescence": "fluorescence", "brightfield": "brightfield", "he": "H&E"}

# Share of the stained pixels whose green light is absorbed most (hematoxylin and eosin
# both absorb green; the purple and pink of H&E): over 0.97 on every H&E field of the
# shared real data, pale and dark copies included; 0 for fluorescence saved as RGB, whose
# darker pixels are black background.
_HE_GREEN_SHARE = 0.6
# Position of a grey image's median between its 1st and 99.8th percentiles: <= 0.22 on
# every fluorescence field of the shared data (dark background), >= 0.6 for their
# inverted copies (brightfield) and 0.24-0.72 for their H&E fields made grey; between
# 0.2 and 0.55 the evidence is weak (fluorescence below 0.3, brightfield above).
_GREY_DARK, _GREY_SPLIT, _GREY_BRIGHT = 0.2, 0.3, 0.55


def _grey_guess(grey: np.ndarray) -> StainGuess:
    lo, med, hi = np.percentile(grey, [1.0, 50.0, 99.8])
    if not hi > lo:
        return StainGuess(Stain.FLUORESCENCE.value, False, "the image is flat")
    m = float((med - lo) / (hi - lo))
    if m <= _GREY_DARK:
        return StainGuess(Stain.FLUORESCENCE.value, True, "dark background, bright objects")
    if m >= _GREY_BRIGHT:
        return StainGuess(Stain.BRIGHTFIELD.value, True, "bright background, dark objects")
    stain = Stain.FLUORESCENCE if m < _GREY_SPLIT else Stain.BRIGHTFIELD
    return StainGuess(stain.value, False, "the background is neither clearly dark nor bright")


def guess_stain(overview: np.ndarray) -> StainGuess:
    """Guess the stain of an image from an overview (h, w, C) of raw pixels.

    Decided from the colour of the stained pixels, not from where the background lies
    (dense tissue has none):

    - colour images whose darker half is coloured with green absorbed most (the purple
      of hematoxylin, the pink of eosin) are H&E, however dense, pale or dark the field;
    - colour images with (near) identical channels are grey;
    - other images are grey (the mean of R, G and B): fluorescence when most pixels sit
      near the dark end of the range (a dark background; this includes fluorescence
      saved as RGB, one channel or a composite), brightfield when they sit near the
      bright end.
    """
    x = np.asarray(overview, np.float32)
    if x.ndim == 2:
        x = x[..., None]
    finite = np.isfinite(x).all(axis=-1)
    if not finite.any():
        return StainGuess(Stain.FLUORESCENCE.value, False, "no finite pixels")
    x = x[finite]  # (N, C)
    colour = x.shape[-1] >= 3
    grey = x[:, :3].mean(axis=-1) if colour else x[:, 0]
    if colour:
        rgb = x[:, :3]
        white = max(float(np.percentile(rgb.max(axis=-1), 99.5)), 1e-6)
        spread = float(np.percentile(rgb.max(axis=-1) - rgb.min(axis=-1), 99)) / white
        if spread > 0.04:
            darker = rgb[grey <= np.median(grey)]
            margin = 0.02 * white
            g_low = (darker[:, 0] - darker[:, 1] > margin) & (darker[:, 2] - darker[:, 1] > margin)
            lit = float(np.median(darker.max(axis=-1))) / white
            share = float(g_low.mean()) if len(darker) else 0.0
            if share >= _HE_GREEN_SHARE and lit > 0.1:
                confident = share >= 0.85
                return StainGuess(Stain.HE.value, confident,
                                  f"{share:.0%} of the stained pixels are purple or pink")
    return _grey_guess(grey)


def detect_stain(overview: np.ndarray) -> str:
    """The stain :func:`guess_stain` decides (a :class:`Stain` value)."""
    return guess_stain(overview).stain


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
