import numpy as np
import pytest

from unet_core.segmentation.metrics import THRESHOLDS, average_precision, dice, evaluate, iou, iou_matrix


def _square(lab, i, y, x, s):
    lab[y:y + s, x:x + s] = i


def test_thresholds():
    assert THRESHOLDS[0] == 0.5 and THRESHOLDS[-1] == 0.95 and len(THRESHOLDS) == 10


def test_perfect_and_empty():
    lab = np.zeros((50, 50), np.uint32)
    _square(lab, 3, 5, 5, 10)
    _square(lab, 9, 30, 30, 8)
    r = evaluate(lab, lab)
    assert r["dice"] == r["iou"] == r["ap50"] == r["map"] == 1.0 and r["n_true"] == 2
    z = np.zeros_like(lab)
    assert evaluate(z, z)["ap50"] == 1.0 and dice(z, z) == 1.0
    assert evaluate(z, lab)["ap50"] == 0.0 and evaluate(lab, z)["ap50"] == 0.0


def test_ap_counts_by_hand():
    truth = np.zeros((100, 100), np.uint32)
    pred = np.zeros_like(truth)
    _square(truth, 1, 0, 0, 10)     # matched exactly
    _square(pred, 5, 0, 0, 10)
    _square(truth, 2, 20, 20, 10)   # pred shifted by 3 px: IoU = 70/130 = 0.538
    _square(pred, 6, 23, 20, 10)
    _square(truth, 3, 50, 50, 10)   # missed: FN
    _square(pred, 7, 80, 80, 5)     # spurious: FP
    ap = average_precision(pred, truth)
    assert ap[0.5] == pytest.approx(2 / (2 + 1 + 1))
    assert ap[0.55] == pytest.approx(1 / (1 + 2 + 2))
    m = iou_matrix(pred, truth)
    assert m.shape == (3, 3) and m[1, 1] == pytest.approx(70 / 130)


def test_one_to_one_matching():
    """A merged prediction covering two nuclei matches at most one of them."""
    truth = np.zeros((20, 40), np.uint32)
    truth[:, :20], truth[:, 20:] = 1, 2
    pred = np.ones_like(truth)          # IoU 0.5 with each of the two
    ap = average_precision(pred, truth)
    assert ap[0.5] == pytest.approx(1 / 2)   # 1 TP, 0 FP, 1 FN (not 2 TP)
    assert ap[0.55] == 0.0


def test_dice_iou():
    a = np.zeros((10, 10), int)
    b = np.zeros((10, 10), int)
    a[:, :5], b[:, 2:7] = 1, 4
    assert dice(a, b) == pytest.approx(2 * 30 / 100)
    assert iou(a, b) == pytest.approx(30 / 70)
