"""The training data as the network sees it: examples normalized once, and batches of
random crops (centred mostly on reviewed pixels), augmented, with the targets derived
from their instance labels.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..files.inputs import as_planes
from ..inference.normalize import normalize, percentile_range, percentiles
from ..segmentation.instances import labels_to_targets
from .augment import augment as augment_crop
from .augment import reviewed_points, scaled_crop, stain_jitter
from .example import Example


def prepared_examples(examples: Sequence[Example], in_channels: int, norm: dict) -> list[tuple]:
    """Normalize every example once: (image float32 (H, W, C), labels, mask, centre
    points, hematoxylin range).  An H&E pair at model scale (``record["hed"]``) keeps its
    three stain densities, normalized per crop after the stain jitter, with the range
    (low, high) of its hematoxylin channel; for the others the range is None."""
    out = []
    for ex in examples:
        if ex.record.get("hed"):
            h = np.maximum(np.asarray(ex.image[..., 0], np.float32), 0)
            lo, hi = percentile_range(h[..., None], *percentiles(norm))
            out.append((np.asarray(ex.image, np.float32), ex.labels, ex.mask,
                        reviewed_points(ex.mask), (float(lo[0]), float(hi[0]))))
            continue
        planes, stack = as_planes(ex.image, in_channels)
        if stack:
            raise InputError(f"Training example {ex.id} is a stack {ex.image.shape}; "
                             "train on single planes (H, W) or (H, W, C).")
        img = normalize(np.asarray(planes[0]), *percentiles(norm))
        out.append((img, ex.labels, ex.mask, reviewed_points(ex.mask), None))
    return out


def crop_batch(data, p, batch_size, crop, rng, aug, reviewed_fraction, out_channels):
    """(x (B, C, S, S), targets (B, K, S, S), mask (B, 1, S, S)) float32 tensors."""
    xs, ys, ms = [], [], []
    for k in rng.choice(len(data), size=batch_size, p=p):
        img, lab, msk, pts, hed_range = data[k]
        img, lab, msk = scaled_crop(img, lab, msk, crop, rng, pts, reviewed_fraction, aug)
        if hed_range is not None:
            img = stain_jitter(img, rng, aug, *hed_range)
        if aug is not None:
            img, lab, msk = augment_crop(img, lab, msk, rng, aug)
        xs.append(img.transpose(2, 0, 1))
        ys.append(labels_to_targets(lab)[:out_channels])
        ms.append(msk[None].astype(np.float32))
    return tuple(torch.from_numpy(np.ascontiguousarray(np.stack(a), np.float32)) for a in (xs, ys, ms))
