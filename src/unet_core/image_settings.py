"""The per-image settings of a Predictor: stain, normalization range, nucleus size, scale.

Decided once per image (on a strided overview and a few windows of large ones) and
then applied to every tile, block or copy of it alike; see
:class:`~unet_core.scale.ImageSettings`.
"""
from __future__ import annotations

import logging
from collections.abc import Generator

import numpy as np

from .inputs import arrange_planes, as_planes
from .normalize import percentile_range, percentiles
from .progress import Progress, run_to_end
from .resample import Resampled, resampled_shape
from .scale import MAX_SCALE, MIN_SCALE, ImageSettings, Prepared, overview
from .sizing import estimate_diameter_iter
from .stain import Stain, guess_stain, white_level

log = logging.getLogger(__name__)


class SettingsMixin:
    """The settings methods of :class:`~unet_core.predict.Predictor` (which provides
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
