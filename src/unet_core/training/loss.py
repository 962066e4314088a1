"""The training loss: binary cross-entropy plus soft Dice, on reviewed pixels only."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce_dice_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                         bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0,
                         return_parts: bool = False):
    """BCE + (1 - soft Dice) over the pixels where ``mask`` is set.

    Pixels outside the mask contribute nothing, and their logits get a gradient of
    exactly zero: the BCE term is multiplied by the mask, and the Dice sums run over
    ``sigmoid(logits) * mask``.

    Parameters
    ----------
    logits : Tensor, float (N, C, H, W)
        Network output before the sigmoid.
    targets : Tensor, float (N, C, H, W)
        Targets in [0, 1] (see :func:`unet_core.segmentation.instances.labels_to_targets`).
    mask : Tensor, (N, 1, H, W), (N, C, H, W) or (N, H, W)
        1 (or True) where a pixel was reviewed.
    bce_weight, dice_weight : float
        Weights of the two terms.
    smooth : float
        Added to the Dice numerator and denominator; keeps Dice defined (and near 1)
        for channels that are empty in both target and prediction.
    return_parts : bool
        Also return ``{"bce": float, "dice": float}`` (Dice as a score, not a loss).

    Returns
    -------
    loss : Tensor, scalar
        (and the parts, if asked).  Averages over channels; BCE is the mean over
        reviewed pixels, Dice is computed per channel over the whole batch.
    """
    if mask.dim() == 3:
        mask = mask[:, None]
    mask = mask.to(logits.dtype).expand_as(logits)
    n = mask.sum().clamp(min=1.0)
    bce = (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * mask).sum() / n
    prob = torch.sigmoid(logits) * mask
    t = targets * mask
    dims = (0, 2, 3)
    inter = (prob * t).sum(dims)
    dice = (2 * inter + smooth) / (prob.sum(dims) + t.sum(dims) + smooth)
    loss = bce_weight * bce + dice_weight * (1.0 - dice.mean())
    if return_parts:
        return loss, {"bce": float(bce.detach()), "dice": float(dice.mean().detach())}
    return loss
