"""The per-image settings of a Predictor: stain, normalization range, nucleus size, scale.

Decided once per image (on a strided overview and a few windows of large ones) and
then applied to every tile, block or copy of it alike (:class:`ImageSettings`).
"""
from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from ..files.inputs import arrange_planes, as_planes
from ..progress import Progress, run_to_end
from .normalize import percentile_range, percentiles
from .resample import Resampled, resampled_shape
from .scale import MAX_SCALE, MIN_SCALE
from .sizing import estimate_diameter_iter
from .stain import STAIN_NAMES, Prepared, Stain, guess_stain, white_level

log = logging.getLogger(__name__)


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
        "fluorescence", "brightfield" or "he" (see :mod:`unet_core.inference.stain`).
    low, high : ndarray, (C,) float64
        Percentile range of the stain-converted image, mapped to 0 and 1.
    white : float
        Unstained light level of an RGB image (H&E conversion).
    estimated : bool
        Whether ``diameter`` was estimated from the image ("auto").
    stain_note : str or None
        When the stain was guessed on weak evidence: which stain was assumed and how to
        change it (:meth:`unet_core.inference.stain.StainGuess.note`).
    size_note : str or None
        When the size estimate cannot be trusted: why, and how to set the size
        (:meth:`unet_core.inference.sizing.SizeEstimate.note`).
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


def overview(plane, max_pixels: int = 1_000_000) -> np.ndarray:
    """A regular subsample of an (H, W, ...) plane with at most ~``max_pixels`` px,
    read with a stride (lazy arrays are never read whole)."""
    h, w = plane.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
    return np.asarray(plane[::step, ::step])


class SettingsMixin:
    """The settings methods of :class:`~unet_core.inference.predict.Predictor` (which provides
    ``model``, ``diameter`` and ``stain``)."""

    def settings_for(self, image) -> ImageSettings:
        """Stain, normalization and nucleus size for ``image``, decided once.

        ``image`` is (H, W), (H, W, C) or a stack (then its middle plane decides);
        numpy, dask or zarr (large images are read on a strided overview and a few
        windows only).  Pass the result to :meth:`predict` / :meth:`segment` of any
        block or copy of the same image to treat them all alike.
        """
        return run_to_end(self.settings_iter(image))

    def settings_iter(self, image) -> Generator[Progress, None, ImageSettings]:
        """Generator form of :meth:`settings_for` (yields while estimating the size)."""
        planes, _ = arrange_planes(image)
        return (yield from self._settings_iter(planes[planes.shape[0] // 2]))

    def _settings_iter(self, plane):
        norm = self.model.normalization
        note = None
        if self.model.config.in_channels != 1:
            stain, white = Stain.FLUORESCENCE.value, 1.0
        else:
            ov = overview(plane)
            if self.stain == "auto":
                guess = guess_stain(ov)
                stain, note = guess.stain, guess.note()
                if note:
                    log.warning("%s", note)
            else:
                stain = self.stain
            white = white_level(ov) if stain == Stain.HE else 1.0
        base = self._stained(plane, stain, white)
        lo, hi = percentile_range(base, *percentiles(norm))
        model_d = self.model.diameter
        diameter, estimated, size_note = None, False, None
        if self.diameter == "auto" and model_d:
            found = yield from estimate_diameter_iter(self, base, lo, hi)
            if found is not None:
                diameter, estimated, size_note = found.diameter, True, found.note()
                if size_note:
                    log.warning("%s", size_note)
        elif isinstance(self.diameter, float):
            diameter = self.diameter
            if not model_d:
                log.warning("model %s records no nucleus diameter: the image is used at its "
                            "own scale", self.model.name)
        scale = 1.0
        if diameter and model_d:
            scale = float(np.clip(model_d / diameter, MIN_SCALE, MAX_SCALE))
            lo_d, hi_d = self.model.diameter_range
            if estimated and lo_d <= diameter <= hi_d:
                # the network works over a range of sizes, and resampling changes the
                # pixel noise it learnt to read: within its range, the image stays as is
                scale = 1.0
        return ImageSettings(diameter, scale, stain, lo, hi, white, estimated, note, size_note)

    def _stained(self, plane, stain, white):
        """The plane as the network's channels see it, before normalization."""
        cin = self.model.config.in_channels
        if stain == Stain.FLUORESCENCE and plane.shape[-1] == cin:
            return plane
        if cin != 1:
            return as_planes(plane, cin)[0][0]
        return Prepared(plane, stain, white)

    def model_view(self, plane, settings: ImageSettings):
        """A raw plane (H, W, C) at the network's scale and stain: a lazy (h, w, C_in)
        view (or the plane itself when nothing changes)."""
        base = self._stained(plane, settings.stain, settings.white)
        if settings.scale == 1.0:
            return base
        return Resampled(base, resampled_shape(plane.shape[:2], settings.scale))
