"""The network on one window of a large image, with settings decided once per image.

Every block of an image must be normalised alike (and, with a Predictor that resamples,
share one stain and scale), so the settings are decided once on a strided overview of
the whole image and passed to each window.  With a Predictor that has
``settings_for`` (images resampled to the model's nucleus size) its
``segment(window, settings=...)`` is used; otherwise one percentile range for the
whole image normalises every window.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .lazyio import CHUNK

#: Largest tile core the network runs on inside a block (bounds its memory to ~1 GB).
MAX_TILE = 1280


@dataclass(frozen=True)
class RangeSettings:
    """Normalisation of a whole image, decided once: (C,) low and high values."""

    low: tuple
    high: tuple


def _supports_settings(pred) -> bool:
    return hasattr(pred, "settings_for")


def overview(image, max_pixels: int = 4_000_000) -> np.ndarray:
    """A strided sample of an (H, W[, C]) array-like with at most ``max_pixels`` px,
    read band by band (never the whole image at once)."""
    h, w = image.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / max_pixels))))
    band = max(step, (CHUNK // step) * step)
    rows = [np.asarray(image[y:y + band])[::step, ::step] for y in range(0, h, band)]
    return np.concatenate(rows, axis=0)


def image_settings(pred, image):
    """Settings that every block of ``image`` shares (normalisation, and with a
    Predictor that resamples, stain and scale), decided once on an overview."""
    if _supports_settings(pred):
        return pred.settings_for(image)
    from .inputs import as_planes
    from .normalize import percentile_range

    planes, _ = as_planes(overview(image), pred.model.config.in_channels)
    norm = pred.model.normalization
    lo, hi = percentile_range(planes[0], norm.get("low", 1.0), norm.get("high", 99.8))
    return RangeSettings(tuple(lo.tolist()), tuple(hi.tolist()))


def block_predictor(pred, max_tile: int = MAX_TILE):
    """The predictor with its tile capped so one block's forward pass stays ~1 GB
    (a shallow copy: same network, same device)."""
    if pred.tile <= max_tile:
        return pred
    small = copy.copy(pred)
    small.tile = int(max_tile)
    return small


def segment_window(pred, window: np.ndarray, settings, want_prob: bool = False):
    """Labels uint32 (h, w) and probabilities float32 (C, h, w) (or None) of one window,
    normalised with the whole image's ``settings``."""
    if _supports_settings(pred) and not isinstance(settings, RangeSettings):
        out = pred.segment(window, settings=settings, return_prob=True)
        labels, prob = out
        return labels, (prob if want_prob else None)
    from .inputs import as_planes
    from .instances import probs_to_labels
    from .normalize import apply_range

    planes, _ = as_planes(window, pred.model.config.in_channels)
    plane = planes[0]
    lo, hi = np.asarray(settings.low), np.asarray(settings.high)
    grid = pred.grid(plane.shape[:2])
    bs = pred.batch_size_for(grid)
    origins = grid.origins()
    prob = np.empty((pred.model.config.out_channels,) + plane.shape[:2], np.float32)
    for k in range(0, len(origins), bs):
        batch = origins[k:k + bs]
        y = pred._forward(np.stack([apply_range(grid.read(plane, o), lo, hi) for o in batch]))
        for o, t in zip(batch, y):
            dst, src = grid.core_slices(o)
            prob[(slice(None),) + dst] = t[(slice(None),) + src]
    labels = probs_to_labels(prob, **pred.model.card.get("instances", {}))
    return labels, (prob if want_prob else None)
