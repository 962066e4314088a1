"""Network outputs to instance labels, and instance labels to training targets.

The instance models predict two maps: the foreground of nuclei and their inner
boundary (a band of ``boundary_width`` px just inside each nucleus).  Where the
foreground is high and the boundary low lie the cores of single nuclei; they seed
a watershed over the foreground, which splits touching nuclei along the boundary.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def labels_to_targets(labels: np.ndarray, boundary_width: int = 2) -> np.ndarray:
    """Instance labels (H, W) -> float32 targets (2, H, W): foreground, inner boundary.

    A pixel is boundary when any pixel within ``boundary_width`` px (city-block) has
    another id, background included, so touching nuclei are separated by a band of
    ``2 * boundary_width`` px.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2D (H, W), got shape {labels.shape}")
    fg = labels > 0
    footprint = ndi.generate_binary_structure(2, 1)
    grown_max = ndi.grey_dilation(labels, footprint=footprint)
    grown_min = -ndi.grey_dilation(-labels.astype(np.int64), footprint=footprint)
    edge = (grown_max != labels) | (grown_min != labels)
    if boundary_width > 1:
        edge = ndi.binary_dilation(edge, footprint, iterations=boundary_width - 1)
    return np.stack([fg, edge & fg]).astype(np.float32)


def probs_to_labels(prob: np.ndarray, fg_threshold: float = 0.5, boundary_threshold: float = 0.5,
                    min_seed: int = 8, min_size: int = 16) -> np.ndarray:
    """Probabilities (2, H, W) (foreground, boundary) -> uint32 instance labels (H, W).

    Seeds are connected regions of foreground > ``fg_threshold`` and boundary <
    ``boundary_threshold`` of at least ``min_seed`` px; a watershed over the
    foreground probability grows them within the foreground mask.  Objects under
    ``min_size`` px are dropped and ids are renumbered 1..N.
    """
    from skimage.segmentation import relabel_sequential, watershed

    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 3 or prob.shape[0] < 1:
        raise ValueError(f"prob must be (C, H, W), got shape {prob.shape}")
    fg = prob[0]
    mask = fg > fg_threshold
    if not mask.any():
        return np.zeros(fg.shape, np.uint32)
    core = mask & (prob[1] < boundary_threshold) if prob.shape[0] > 1 else mask
    seeds, n = ndi.label(core)
    if n and min_seed > 1:
        sizes = np.bincount(seeds.ravel())
        small = sizes < min_seed
        small[0] = False
        seeds[small[seeds]] = 0
    labels = watershed(-fg, seeds, mask=mask)
    if min_size > 1 and labels.max():
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels[small[labels]] = 0
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.uint32)
