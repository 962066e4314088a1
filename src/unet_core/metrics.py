"""Segmentation metrics: Dice, IoU and the instance AP of the 2018 Data Science Bowl.

AP(t) = TP / (TP + FP + FN), where a predicted and a true object match when their
IoU >= t, with one-to-one matching (Hungarian assignment maximising IoU among the
pairs above t).  mAP is the mean of AP(t) over t = 0.50, 0.55, ..., 0.95.
"""
from __future__ import annotations

import numpy as np

THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))


def dice(pred, truth) -> float:
    """Dice of the foregrounds (nonzero pixels); 1.0 when both are empty."""
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(p, t).sum() / denom)


def iou(pred, truth) -> float:
    """Intersection over union of the foregrounds; 1.0 when both are empty."""
    p, t = np.asarray(pred) > 0, np.asarray(truth) > 0
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def iou_matrix(pred, truth) -> np.ndarray:
    """IoU of every true object (rows) with every predicted object (columns).

    Ids need not be sequential; row i is the i-th smallest true id.
    """
    pred, truth = np.asarray(pred).ravel(), np.asarray(truth).ravel()
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: {np.shape(pred)} vs {np.shape(truth)}")
    t_ids, t_inv = np.unique(truth, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    inter = np.zeros((len(t_ids), len(p_ids)), np.int64)
    np.add.at(inter, (t_inv, p_inv), 1)
    t_area, p_area = inter.sum(1, keepdims=True), inter.sum(0, keepdims=True)
    union = t_area + p_area - inter
    m = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
    return m[np.ix_(t_ids != 0, p_ids != 0)]


def match_counts(pred, truth, thresholds=THRESHOLDS, ious: np.ndarray | None = None) -> dict:
    """TP, FP, FN at each threshold with one-to-one matching."""
    from scipy.optimize import linear_sum_assignment

    m = iou_matrix(pred, truth) if ious is None else ious
    n_true, n_pred = m.shape
    out = {}
    for t in thresholds:
        tp = 0
        if n_true and n_pred:
            ok = m >= t
            if ok.any():
                rows = np.flatnonzero(ok.any(1))
                cols = np.flatnonzero(ok.any(0))
                sub = np.where(ok[np.ix_(rows, cols)], m[np.ix_(rows, cols)], 0.0)
                r, c = linear_sum_assignment(-sub)
                tp = int((sub[r, c] >= t).sum())
        out[float(t)] = {"tp": tp, "fp": n_pred - tp, "fn": n_true - tp}
    return out


def average_precision(pred, truth, thresholds=THRESHOLDS) -> dict:
    """AP(t) for each threshold: {t: TP / (TP + FP + FN)} (1.0 when both are empty)."""
    counts = match_counts(pred, truth, thresholds)
    return {t: (1.0 if c["tp"] + c["fp"] + c["fn"] == 0 else c["tp"] / (c["tp"] + c["fp"] + c["fn"]))
            for t, c in counts.items()}


def evaluate(pred, truth) -> dict:
    """Dice, IoU, AP50, AP75 and mAP(0.50:0.95) of one labelled image."""
    ap = average_precision(pred, truth)
    return {"dice": dice(pred, truth), "iou": iou(pred, truth), "ap50": ap[0.5], "ap75": ap[0.75],
            "map": float(np.mean(list(ap.values()))),
            "n_true": int(len(np.unique(truth)) - (np.asarray(truth) == 0).any()),
            "n_pred": int(len(np.unique(pred)) - (np.asarray(pred) == 0).any())}
