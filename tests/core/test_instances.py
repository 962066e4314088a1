import numpy as np
from scipy import ndimage as ndi
from skimage.draw import disk
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from unet_core.segmentation.instances import centre_map, h_maxima_seeds, labels_to_targets, probs_to_labels
from unet_core.segmentation.metrics import evaluate


def _touching_disks():
    lab = np.zeros((120, 160), np.uint32)
    for i, (y, x, r) in enumerate([(40, 40, 18), (40, 74, 17), (90, 120, 15), (95, 30, 8)], 1):
        rr, cc = disk((y, x), r, shape=lab.shape)
        lab[rr, cc] = i
    return lab


def _touching_probs(seed: int, size: int, n: int) -> np.ndarray:
    """Probability-like maps (3, size, size) of ``n`` random, often touching disks:
    their targets, blurred, with noise."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.uint32)
    for i in range(1, n + 1):
        rr, cc = disk(tuple(rng.integers(10, size - 10, 2)), int(rng.integers(7, 14)), shape=lab.shape)
        lab[rr, cc] = i
    targets = labels_to_targets(lab)
    blurred = ndi.gaussian_filter(targets, (0, 1.0, 1.0))
    return np.clip(blurred + rng.normal(0, 0.05, blurred.shape), 0, 1).astype(np.float32)


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


# -- the h-maxima from the regional maxima's basins ----------------------------------------

def _surfaces():
    rng = np.random.default_rng(5)
    for sigma in (1.0, 2.5, 4.0):
        noise = ndi.gaussian_filter(rng.random((160, 190)).astype(np.float32), sigma)
        yield np.maximum(noise - noise.mean(), 0) * 40          # zeros between peaks
    steps = np.zeros((60, 60), np.float32)
    steps[10:20, 10:20], steps[30:50, 30:50], steps[12:14, 40:44] = 3.0, 5.0, 3.5  # plateaus
    yield steps
    terrace = np.zeros((60, 80), np.float32)
    terrace[5:55, 5:75] = 2.0                          # a flat that is no maximum ...
    terrace[25:30, 60:65], terrace[10:14, 10:14] = 4.0, 2.5   # ... around two peaks
    yield terrace
    yield np.zeros((30, 30), np.float32)


def test_h_maxima_seeds_are_skimages_h_maxima():
    for surface in _surfaces():
        for h in (0.5, 1.0, 2.0, 100.0):
            expected = ndi.label(h_maxima(surface, h) > 0, structure=np.ones((3, 3)))[0]
            assert np.array_equal(h_maxima_seeds(surface, h) > 0, expected > 0), (surface.shape, h)


def test_flooding_in_threads_gives_the_same_basins(monkeypatch):
    import unet_core.segmentation.basins as inst

    probs = _touching_probs(seed=3, size=256, n=40)
    surface = ndi.gaussian_filter(ndi.distance_transform_edt(probs[0] > 0.5).astype(np.float32), 1)
    markers = ndi.label(h_maxima(surface, 1.0) > 0)[0]
    flood = probs[0] > 0.5
    whole = watershed(-surface, markers, connectivity=2, mask=flood)
    monkeypatch.setattr(inst, "PARALLEL_PIXELS", 0)
    for workers in (2, 3):
        assert np.array_equal(inst._flood(surface, markers, flood, 2, workers), whole)


def _former_labels(prob, boundary_threshold=0.5):
    """The labels of the former way: a watershed seeded by skimage's h-maxima (a
    grey-level reconstruction), with seedless foreground and small objects as now."""
    from skimage.segmentation import relabel_sequential

    import unet_core.segmentation.instances as inst

    mask = prob[0] > 0.5
    core = mask & (prob[1] < boundary_threshold)
    surface = ndi.gaussian_filter(ndi.distance_transform_edt(core).astype(np.float32)
                                  * (0.5 + prob[2]), 1.0)
    seeds = ndi.label(h_maxima(surface, 1.0) > 0)[0]
    former = watershed(-surface, seeds, mask=mask)
    rest, n = ndi.label(mask & (former == 0))
    former = np.where(rest > 0, rest + former.max(), former) if n else former
    return relabel_sequential(inst._drop_small(former, 16))[0], seeds


def test_labels_agree_with_a_watershed_seeded_by_skimages_h_maxima(monkeypatch):
    """One object per h-maximum, holding it, over the same foreground as the former
    way's; only how a drained basin's pixels are shared out may differ."""
    import unet_core.segmentation.basins as basins

    for seed in range(3):
        prob = _touching_probs(seed=seed, size=256, n=40)
        former, seeds = _former_labels(prob)
        labels = probs_to_labels(prob)
        assert labels.max() == former.max()
        assert np.array_equal(labels > 0, former > 0)
        assert evaluate(labels, former)["ap50"] == 1.0
        assert np.mean(labels == former) > 0.995
        for box_id, box in enumerate(ndi.find_objects(seeds), 1):   # each seed in one object
            assert len(np.unique(labels[box][seeds[box] == box_id])) == 1
        with monkeypatch.context() as m:
            m.setattr(basins, "PARALLEL_PIXELS", 0)        # the banded, threaded steps
            m.setattr(basins, "BOXED_REGIONS", 0)          # the flooding of what is left, whole
            assert np.array_equal(probs_to_labels(prob, workers=2), labels)


def test_seed_surface_in_bands_is_the_whole_images(monkeypatch):
    import unet_core.segmentation.basins as basins
    import unet_core.segmentation.instances as inst

    prob = _touching_probs(seed=4, size=300, n=60)
    core = (prob[0] > 0.5) & (prob[1] < 0.5)
    whole = inst._seed_surface(core, prob[2], 1.0, workers=1)
    monkeypatch.setattr(basins, "PARALLEL_PIXELS", 0)
    for halo in (64, 12, 3):        # 3: bands see too little, so the whole image is used
        monkeypatch.setattr(inst, "BAND_HALO", halo)
        for workers in (2, 3):
            assert np.array_equal(inst._seed_surface(core, prob[2], 1.0, workers), whole)
    full = np.ones((300, 300), bool)
    full[0, 0] = False                  # one band holds no background at all
    monkeypatch.setattr(inst, "BAND_HALO", 12)
    assert np.array_equal(inst._seed_surface(full, None, 1.0, 2), inst._seed_surface(full, None, 1.0, 1))


def test_ascent_basins_touch_at_the_watersheds_passes():
    """Basins from steepest ascent give the same h-maxima as a watershed's basins,
    also where a flat that is no maximum must be flooded."""
    import unet_core.segmentation.basins as inst

    for surface in _surfaces():
        top = ndi.label(h_maxima(surface, 1e-6) > 0, structure=np.ones((3, 3)))[0]
        ws = watershed(-surface, top, connectivity=2, mask=surface > 0)
        asc = inst._ascent(surface, top, surface > 0, workers=1)
        assert ((asc > 0) == (surface > 0)).all()
        n = int(top.max())
        peaks = np.zeros(n + 1, np.float32)
        peaks[top[top > 0]] = surface[top > 0]
        for h in (0.5, 1.0, 2.0):
            by_ws = inst._dynamics(peaks, *inst._basin_passes(ws, surface, n), h)[0]
            by_ascent = inst._dynamics(peaks, *inst._basin_passes(asc, surface, n), h)[0]
            assert np.array_equal(by_ws, by_ascent), (surface.shape, h)
