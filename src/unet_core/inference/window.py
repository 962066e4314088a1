"""The network on one window of a large image, with settings decided once per image.

Every block of an image must be treated alike: one normalisation, one stain and one
scale.  So :func:`image_settings` decides them once for the whole image
(:meth:`~unet_core.inference.predict.Predictor.settings_for`, which reads a strided overview and
a few windows of a large image, never all of it), and every window is segmented with
those settings.
"""
from __future__ import annotations

import copy
import os

import numpy as np

from ..files.lazyio import indexable

#: Largest tile core the network runs on inside a block (bounds its memory to ~1 GB).
MAX_TILE = 1280


def image_settings(pred, image):
    """The :class:`~unet_core.inference.predict.ImageSettings` every block of ``image`` shares."""
    return pred.settings_for(indexable(image))


def block_predictor(pred, max_tile: int = MAX_TILE):
    """The predictor with its tile capped so one block's forward pass stays ~1 GB
    (a shallow copy: same network, same device)."""
    if pred.tile <= max_tile:
        return pred
    small = copy.copy(pred)
    small.tile = int(max_tile)
    return small


def block_threads(pred, most: int = 8) -> int:
    """Blocks of a large image segmented at once on this machine by default: one where
    the network runs on the CPU (it uses every core already, and memory stays one
    block's), one per CPU core up to ``most`` on a GPU, whose network pass is far
    quicker than a block's watershed on one core."""
    if pred.device.type == "cpu":
        return 1
    return max(1, min(most, os.cpu_count() or 1))


def segment_window(pred, window: np.ndarray, settings, want_prob: bool = False, lock=None):
    """Labels uint32 (h, w) and probabilities float32 (C, h, w) (or None) of one
    window (h, w[, C]) of an image, with the whole image's ``settings`` (``lock``: see
    :meth:`~unet_core.inference.predict.Predictor.segment_iter`)."""
    labels, prob = pred.segment(window, settings=settings, return_prob=True, lock=lock)
    return labels, (prob if want_prob else None)
