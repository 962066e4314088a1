"""Segmentation metrics: Dice, IoU and the instance AP of the 2018 Data Science Bowl.

AP(t) = TP / (TP + FP + FN), where a predicted and a true object match when their
IoU >= t, with one-to-one matching (Hungarian assignment maximising IoU among the
pairs above t).  mAP is the mean of AP(t) over t = 0.50, 0.55, ..., 0.95.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

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


def overlaps(pred, truth) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """The IoU of every overlapping (true, predicted) pair of objects, sparse: rows,
    columns (the i-th smallest true / predicted id, background left out), IoUs, and
    the numbers of true and predicted objects.  Memory grows with the pixels, not with
    the product of the object counts (a million objects per image is fine)."""
    pred, truth = np.asarray(pred).ravel(), np.asarray(truth).ravel()
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: {np.shape(pred)} vs {np.shape(truth)}")
    t_ids, t_inv = np.unique(truth, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    t_area, p_area = np.bincount(t_inv), np.bincount(p_inv)
    pairs, inter = np.unique(t_inv.astype(np.int64) * len(p_ids) + p_inv, return_counts=True)
    rows, cols = pairs // len(p_ids), pairs % len(p_ids)
    keep = (t_ids[rows] != 0) & (p_ids[cols] != 0)
    rows, cols, inter = rows[keep], cols[keep], inter[keep]
    ious = inter / (t_area[rows] + p_area[cols] - inter)
    t_bg, p_bg = int(t_ids[0] == 0), int(p_ids[0] == 0)
    return rows - t_bg, cols - p_bg, ious, len(t_ids) - t_bg, len(p_ids) - p_bg


def _true_positives(rows, cols, ious, t: float) -> int:
    """One-to-one matches with IoU >= t: pairs whose objects are in no other pair count
    as they are (above 0.5 nearly all), the rest by Hungarian assignment among them."""
    ok = ious >= t
    rows, cols, ious = rows[ok], cols[ok], ious[ok]
    _, r_inv, r_n = np.unique(rows, return_inverse=True, return_counts=True)
    _, c_inv, c_n = np.unique(cols, return_inverse=True, return_counts=True)
    alone = (r_n[r_inv] == 1) & (c_n[c_inv] == 1)
    tp = int(alone.sum())
    if not alone.all():
        r_ids, r_at = np.unique(rows[~alone], return_inverse=True)
        c_ids, c_at = np.unique(cols[~alone], return_inverse=True)
        sub = np.zeros((len(r_ids), len(c_ids)))
        sub[r_at, c_at] = ious[~alone]
        r, c = linear_sum_assignment(-sub)
        tp += int((sub[r, c] >= t).sum())
    return tp


def match_counts(pred, truth, thresholds=THRESHOLDS, ious: np.ndarray | None = None) -> dict:
    """TP, FP, FN at each threshold with one-to-one matching (``ious``: a dense
    :func:`iou_matrix` already computed)."""
    if ious is None:
        rows, cols, values, n_true, n_pred = overlaps(pred, truth)
    else:
        rows, cols = np.nonzero(ious)
        values, (n_true, n_pred) = ious[rows, cols], ious.shape
    return _counts((rows, cols, values, n_true, n_pred), thresholds)


def _counts(overlap, thresholds) -> dict:
    rows, cols, values, n_true, n_pred = overlap
    out = {}
    for t in thresholds:
        tp = _true_positives(rows, cols, values, t) if len(values) else 0
        out[float(t)] = {"tp": tp, "fp": n_pred - tp, "fn": n_true - tp}
    return out


def _precision(counts: dict) -> dict:
    return {t: (1.0 if c["tp"] + c["fp"] + c["fn"] == 0 else c["tp"] / (c["tp"] + c["fp"] + c["fn"]))
            for t, c in counts.items()}


def average_precision(pred, truth, thresholds=THRESHOLDS) -> dict:
    """AP(t) for each threshold: {t: TP / (TP + FP + FN)} (1.0 when both are empty)."""
    return _precision(match_counts(pred, truth, thresholds))


def evaluate(pred, truth) -> dict:
    """Dice, IoU, AP50, AP75 and mAP(0.50:0.95) of one labelled image."""
    overlap = overlaps(pred, truth)
    ap = _precision(_counts(overlap, THRESHOLDS))
    n_true, n_pred = overlap[3:]
    return {"dice": dice(pred, truth), "iou": iou(pred, truth), "ap50": ap[0.5], "ap75": ap[0.75],
            "map": float(np.mean(list(ap.values()))), "n_true": n_true, "n_pred": n_pred}
