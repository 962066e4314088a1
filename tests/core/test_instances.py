import numpy as np
from skimage.draw import disk

from unet_core.instances import labels_to_targets, probs_to_labels
from unet_core.metrics import evaluate


def _touching_disks():
    lab = np.zeros((120, 160), np.uint32)
    for i, (y, x, r) in enumerate([(40, 40, 18), (40, 74, 17), (90, 120, 15), (95, 30, 8)], 1):
        rr, cc = disk((y, x), r, shape=lab.shape)
        lab[rr, cc] = i
    return lab


def test_round_trip_splits_touching_nuclei():
    truth = _touching_disks()
    targets = labels_to_targets(truth)
    assert targets.shape == (2, 120, 160) and targets.dtype == np.float32
    assert (targets[1] <= targets[0]).all()
    # the band between the two touching disks is boundary
    assert targets[1][40, 57] == 1
    labels = probs_to_labels(targets)
    r = evaluate(labels, truth)
    assert labels.dtype == np.uint32 and r["n_pred"] == 4 and r["ap50"] == 1.0 and r["dice"] > 0.97


def test_empty_and_small_objects_dropped():
    assert probs_to_labels(np.zeros((2, 30, 30), np.float32)).max() == 0
    prob = np.zeros((2, 30, 30), np.float32)
    prob[0, 5:7, 5:7] = 1
    assert probs_to_labels(prob).max() == 0
    prob[0, 10:25, 10:25] = 1
    assert probs_to_labels(prob).max() == 1


def test_single_channel_probabilities():
    prob = np.zeros((1, 30, 30), np.float32)
    prob[0, 5:15, 5:15] = 0.9
    assert probs_to_labels(prob).max() == 1
