"""Training examples at the network's size and stain, as the Predictor will show them.

A fine-tune must teach the model on nuclei of the size and look it sees at prediction:
each example is stain-converted like a predicted image and, when its nuclei lie
outside the model's size range, resampled to the model's diameter (the diameter is
measured on the example's own corrected labels, more exactly than an estimate).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..resample import nearest_labels, resampled_shape
from ..scale import labels_diameter
from .dataset import Example


def training_diameter(examples) -> float | None:
    """The nucleus diameter a model trained on ``examples`` learns: the median over
    examples of each one's median equivalent diameter."""
    per = [labels_diameter(e.labels, e.mask) for e in examples]
    per = [d for d in per if d]
    return float(np.median(per)) if per else None


def to_model_scale(ex: Example, pred) -> Example:
    """``ex`` stain-converted (float32 (h, w)) and resampled as ``pred`` (a
    :class:`~unet_core.predict.Predictor`) would show it to its network; the record
    says how (diameter, scale, stain)."""
    model = pred.model
    d = labels_diameter(ex.labels, ex.mask)
    scale = 1.0
    lo_d, hi_d = model.diameter_range
    if d and model.diameter and not lo_d <= d <= hi_d:
        scale = model.diameter / d
    s = dataclasses.replace(pred.with_options(diameter="none").settings_for(ex.image), scale=scale,
                            diameter=d)
    plane = ex.image if ex.image.ndim == 3 else ex.image[..., None]
    image = np.asarray(pred.model_view(plane, s), np.float32)[..., 0]
    labels, mask = ex.labels, ex.mask
    if scale != 1.0:
        shape = resampled_shape(ex.labels.shape, scale)
        labels = nearest_labels(ex.labels, shape)
        mask = nearest_labels(ex.mask.astype(np.uint8), shape) > 0
    record = dict(ex.record, **s.as_record())
    return Example(ex.id, image, labels, mask, record)


def hed_density(rgb: np.ndarray, white: float) -> np.ndarray:
    """Optical densities of an RGB image (H, W, 3) in hematoxylin, eosin and DAB
    (Ruifrok & Johnston's vectors, as :func:`skimage.color.rgb2hed`), float32
    (H, W, 3).  Channel 0, clipped at 0, is what the Predictor shows the network of an
    H&E image (:func:`unet_core.stain.convert`)."""
    from skimage.color import hed_from_rgb

    od = -np.log(np.clip(np.asarray(rgb[..., :3], np.float32) / np.float32(white), 1e-3, None))
    return od @ np.asarray(hed_from_rgb, np.float32)


def pair_at_model_scale(ex: Example, model) -> Example:
    """An annotated pair (:func:`~.pairs.load_pairs`) at the model's size and stain.

    Like :func:`to_model_scale`, nuclei outside the model's size range are resampled
    to its diameter (measured on the true labels: ``record["diameter"]``).  An H&E
    image keeps all three stain densities (``record["hed"]``), so that training can
    jitter the stains (:func:`~.augment.stain_jitter`) before taking the hematoxylin
    channel; other stains are converted as the Predictor converts them.
    """
    from ..stain import Stain, convert, white_level

    stain = ex.record.get("stain") or Stain.FLUORESCENCE.value
    if stain == Stain.HE:
        image = hed_density(ex.image, white_level(ex.image))
    else:
        image = convert(ex.image, stain)
    d = ex.record.get("diameter") or labels_diameter(ex.labels, ex.mask)
    scale, labels, mask = 1.0, ex.labels, ex.mask
    lo_d, hi_d = model.diameter_range
    if d and model.diameter and not lo_d <= d <= hi_d:
        scale = model.diameter / d
        shape = resampled_shape(labels.shape, scale)
        from ..resample import resample

        image = resample(image, shape)
        labels = nearest_labels(labels, shape)
        mask = nearest_labels(mask.astype(np.uint8), shape) > 0
    record = dict(ex.record, scale=round(float(scale), 5), hed=stain == Stain.HE)
    return Example(ex.id, np.ascontiguousarray(image, np.float32), labels, mask, record)
