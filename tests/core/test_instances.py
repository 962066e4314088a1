import numpy as np
from skimage.draw import disk

from unet_core.instances import centre_map, labels_to_targets, probs_to_labels
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
    assert targets.shape == (3, 120, 160) and targets.dtype == np.float32
    assert (targets[1] <= targets[0]).all() and (targets[2] <= targets[0]).all()
    # the band between the two touching disks is boundary
    assert targets[1][40, 57] == 1
    for channels in (3, 2):  # centre-map seeds, and distance-transform seeds without one
        labels = probs_to_labels(targets[:channels])
        r = evaluate(labels, truth)
        assert labels.dtype == np.uint32 and r["n_pred"] == 4 and r["ap50"] == 1.0 and r["dice"] > 0.97


def test_centre_map_peaks_once_per_object():
    truth = _touching_disks()
    c = centre_map(truth)
    assert c.max() == 1.0 and (c[truth == 0] == 0).all()
    for i in range(1, 5):
        assert c[truth == i].max() == 1.0 and c[truth == i].min() > 0
    y, x = np.unravel_index(np.argmax(np.where(truth == 1, c, 0)), c.shape)
    assert abs(y - 40) <= 1 and abs(x - 40) <= 1


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


def test_foreground_without_seed_is_kept():
    prob = np.zeros((3, 40, 40), np.float32)
    prob[0, 5:25, 5:25] = 0.9
    prob[1, 5:25, 5:25] = 0.9  # all boundary: no core, no seed
    assert probs_to_labels(prob).max() == 1
