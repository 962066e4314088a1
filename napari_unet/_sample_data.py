"""napari sample data: a synthetic fluorescence-nuclei image and its ground truth.

Imports only numpy and :mod:`unet_core` (no Qt), so napari can list it cheaply.
"""
from __future__ import annotations

from unet_core.data.synthetic import SAMPLE_PARAMS, SAMPLE_SEED, synthetic_nuclei


def sample_nuclei() -> list:
    """A 512 x 512 uint16 synthetic nuclei image and its uint32 instance labels.

    Returns
    -------
    list of (data, kwargs, layer_type)
        ``image`` (512, 512) uint16 and ``labels`` (512, 512) uint32 (hidden).
    """
    image, labels = synthetic_nuclei((512, 512), seed=SAMPLE_SEED, dtype="uint16", **SAMPLE_PARAMS)
    return [
        (image, {"name": "synthetic nuclei"}, "image"),
        (labels, {"name": "synthetic nuclei (truth)", "visible": False}, "labels"),
    ]
