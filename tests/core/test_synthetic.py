"""The synthetic nuclei generator: deterministic, well-formed labels, plausible images."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from unet_core.data.synthetic import DEFAULTS, synthetic_dataset, synthetic_nuclei


@pytest.fixture(scope="module")
def dataset():
    return synthetic_dataset(12, shape=(256, 256), seed=7)


def _touching_ids(labels):
    """Ids that share a 4-neighbour edge with another id (no background between)."""
    ids = set()
    for a, b in ((labels[:, 1:], labels[:, :-1]), (labels[1:], labels[:-1])):
        t = (a > 0) & (b > 0) & (a != b)
        ids |= set(a[t].tolist()) | set(b[t].tolist())
    return ids


def test_deterministic_for_a_seed():
    a = synthetic_nuclei((128, 160), seed=3)
    b = synthetic_nuclei((128, 160), seed=3)
    c = synthetic_nuclei((128, 160), seed=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    d1 = synthetic_dataset(3, shape=(64, 64), seed=1)
    d2 = synthetic_dataset(3, shape=(64, 64), seed=1)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(d1, d2))
    assert not np.array_equal(d1[0][0], d1[1][0])


@pytest.mark.parametrize("dtype", ["uint8", "uint16", np.uint16])
@pytest.mark.parametrize("shape", [(96, 200), (512, 512), (33, 47)])
def test_dtypes_and_shapes(dtype, shape):
    image, labels = synthetic_nuclei(shape, seed=11, dtype=dtype)
    assert image.shape == labels.shape == shape
    assert image.dtype == np.dtype(dtype)
    assert labels.dtype == np.uint32
    assert image.ndim == 2


def test_uint16_uses_varied_dynamic_range():
    maxima = [int(synthetic_nuclei((96, 96), seed=s)[0].max()) for s in range(12)]
    assert min(maxima) >= 300 and max(maxima) <= 65535
    assert max(maxima) / min(maxima) > 4


def test_bad_arguments():
    with pytest.raises(TypeError):
        synthetic_nuclei((64, 64), bogus=1)
    with pytest.raises(ValueError):
        synthetic_nuclei((64, 64), dtype="float32")


def test_labels_sequential_and_connected(dataset):
    for _, labels in dataset[:6]:
        ids = np.unique(labels)
        assert ids[0] == 0
        assert np.array_equal(ids[1:], np.arange(1, ids.size))
        sizes = np.bincount(labels.ravel())[1:]
        assert (sizes >= 10).all()
        for i in ids[1:][:: max(1, (ids.size - 1) // 25)]:
            _, k = ndi.label(labels == i)
            assert k == 1, f"id {i} has {k} parts"


def test_every_id_connected_in_a_crowded_image():
    _, labels = synthetic_nuclei((256, 256), seed=0, radius_range=(4, 9), density=0.5, clustering=0.9,
                                 spacing=0.75)
    assert labels.max() > 50
    for i, sl in enumerate(ndi.find_objects(labels), 1):
        assert sl is not None
        assert ndi.label(labels[sl] == i)[1] == 1


def test_touching_nuclei_occur_at_default_density(dataset):
    touching = [len(_touching_ids(labels)) for _, labels in dataset]
    assert sum(t > 0 for t in touching) >= 3, touching
    assert max(touching) >= 6, touching


def test_foreground_fraction_sane(dataset):
    fg = np.array([np.mean(labels > 0) for _, labels in dataset])
    assert (fg > 0.002).all() and (fg < 0.8).all(), fg
    assert 0.05 < fg.mean() < 0.5, fg
    assert fg.max() / fg.min() > 2     # sparse and crowded images both occur


def test_sizes_vary_between_and_within_images():
    medians, spreads = [], []
    for s in range(10):
        _, labels = synthetic_nuclei((256, 256), seed=s, n=40)
        areas = np.bincount(labels.ravel())[1:]
        medians.append(np.median(areas))
        spreads.append(np.percentile(areas, 90) / max(np.percentile(areas, 10), 1))
    assert max(medians) / min(medians) > 5, medians
    assert max(spreads) > 2, spreads


def test_image_correlates_with_labels(dataset):
    for image, labels in dataset:
        if labels.max() == 0:
            continue
        fg = labels > 0
        inside, outside = image[fg].astype(float).mean(), image[~fg].astype(float).mean()
        assert inside > outside, (inside, outside)
    # by a clear margin on average (dim nuclei, haze and bright backgrounds exist)
    ratios = [image[labels > 0].mean() / max(image[labels == 0].mean(), 1) for image, labels in dataset]
    assert np.median(ratios) > 2, ratios


def test_params_override():
    _, labels, info = synthetic_nuclei((256, 256), seed=2, radius_range=(6, 8), density=0.2, noise=0.05,
                                       mitotic=0.0, return_info=True)
    assert info["noise"] == 0.05 and info["density"] == 0.2 and 6 <= info["radius"] <= 8
    areas = np.bincount(labels.ravel())[1:]
    whole = areas[areas > 60]     # not cut by the border or by a neighbour
    assert whole.size and np.median(whole) < np.pi * 10 ** 2
    assert set(DEFAULTS) >= {"radius_range", "density", "noise"}


def test_n_controls_count():
    few = synthetic_nuclei((256, 256), seed=5, n=5, radius_range=(8, 10))[1].max()
    many = synthetic_nuclei((256, 256), seed=5, n=80, radius_range=(8, 10))[1].max()
    assert 1 <= few <= 5 and many > 40


def test_noise_free_image_is_clean():
    image, labels = synthetic_nuclei((128, 128), seed=1, noise=0.0, haze=0.0)
    assert image.max() > 0 and labels.max() > 0


def test_dataset_made_in_processes_equals_the_serial_one():
    from unet_core.data.synthetic import synthetic_dataset

    serial = synthetic_dataset(40, shape=(48, 48), seed=3)
    parallel = synthetic_dataset(40, shape=(48, 48), seed=3, workers=2)
    assert len(parallel) == 40
    for (a, la), (b, lb) in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
