"""Training examples at the network's size and stain, as the Predictor will show them.

A fine-tune must teach the model on nuclei of the size and look it sees at prediction:
each example is stain-converted like a predicted image and, when its nuclei lie
outside the model's size range, resampled to the model's diameter (the diameter is
measured on the example's own corrected labels, more exactly than an estimate).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..inference.resample import nearest_labels, resample, resampled_shape
from ..inference.scale import labels_diameter
from ..inference.stain import Stain, convert, hed_density, white_level
from .dataset import Example


def training_diameter(examples) -> float | None:
    """The nucleus diameter a model trained on ``examples`` learns: the median over
    examples of each one's median equivalent diameter."""
    per = [labels_diameter(e.labels, e.mask) for e in examples]
    per = [d for d in per if d]
    return float(np.median(per)) if per else None


def resampling(d: float | None, diameter: float | None, size_range) -> float:
    """The factor that brings nuclei of ``d`` px to a model's ``diameter``: 1 when either
    is unknown or ``d`` lies in the model's ``size_range`` (as the Predictor does)."""
    if d and diameter and not size_range[0] <= d <= size_range[1]:
        return diameter / d
    return 1.0


def to_model_scale(ex: Example, pred) -> Example:
    """``ex`` stain-converted (float32 (h, w)) and resampled as ``pred`` (a
    :class:`~unet_core.inference.predict.Predictor`) would show it to its network; the record
    says how (diameter, scale, stain)."""
    d = labels_diameter(ex.labels, ex.mask)
    scale = resampling(d, pred.model.diameter, pred.model.diameter_range)
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


def pair_at_model_scale(ex: Example, diameter: float | None,
                        size_range: tuple[float, float]) -> Example:
    """An annotated pair (:func:`~.pairs.load_pairs`) at a model's size and stain.

    Like :func:`to_model_scale`, nuclei outside the model's size range ``size_range``
    are resampled to its ``diameter`` (measured on the true labels: ``record["diameter"]``).  An H&E
    image keeps all three stain densities (``record["hed"]``), so that training can
    jitter the stains (:func:`~.augment.stain_jitter`) before taking the hematoxylin
    channel; other stains are converted as the Predictor converts them.
    """
    stain = ex.record.get("stain") or Stain.FLUORESCENCE.value
    if stain == Stain.HE:
        image = hed_density(ex.image, white_level(ex.image))
    else:
        image = convert(ex.image, stain)
    d = ex.record.get("diameter") or labels_diameter(ex.labels, ex.mask)
    scale, labels, mask = resampling(d, diameter, size_range), ex.labels, ex.mask
    if scale != 1.0:
        shape = resampled_shape(labels.shape, scale)
        image = resample(image, shape)
        labels = nearest_labels(labels, shape)
        mask = nearest_labels(mask.astype(np.uint8), shape) > 0
    record = dict(ex.record, scale=round(float(scale), 5), hed=stain == Stain.HE)
    return Example(ex.id, np.ascontiguousarray(image, np.float32), labels, mask, record)
