"""The torch instance step (run on a GPU) on CPU tensors: the CPU path's labels."""
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from skimage.morphology import local_maxima
from test_instances import _surfaces, _touching_probs

from unet_core.segmentation import instances as cpu
from unet_core.segmentation import instances_torch as gt
from unet_core.segmentation.metrics import evaluate


def test_distance_transform_is_scipys():
    rng = np.random.default_rng(0)
    for density in (0.02, 0.2, 0.6):
        core = ndi.binary_dilation(rng.random((97, 131)) < density * 0.1, iterations=4)
        expected = ndi.distance_transform_edt(core).astype(np.float32)
        assert np.array_equal(gt.distance_transform(torch.from_numpy(core)).numpy(), expected)
    assert gt.distance_transform(torch.ones((20, 20), dtype=torch.bool)) is None   # no edge
    wide = np.ones((10, 300), bool)
    wide[:, 0] = False
    assert gt.distance_transform(torch.from_numpy(wide)) is None   # beyond MAX_DISTANCE


def test_gaussian_is_scipys():
    x = np.random.default_rng(1).random((40, 57)).astype(np.float32) * 10
    for sigma in (1.0, 2.0):
        np.testing.assert_allclose(gt.gaussian(torch.from_numpy(x), sigma).numpy(),
                                   ndi.gaussian_filter(x, sigma), rtol=0, atol=2e-6)


def test_regional_maxima_are_skimages():
    for surface in _surfaces():
        expected = ndi.label(local_maxima(surface, connectivity=2, allow_borders=True) & (surface > 0),
                             structure=np.ones((3, 3)))[0]
        assert np.array_equal(gt.regional_maxima(torch.from_numpy(surface)).numpy(), expected)


@pytest.mark.parametrize("channels", [3, 2, 1])
def test_labels_are_the_cpu_paths(channels):
    for seed in range(2):
        prob = _touching_probs(seed=seed, size=144, n=20)[:channels]
        expected = cpu.probs_to_labels(prob)
        labels = gt.probs_to_labels(torch.from_numpy(prob))
        assert labels.dtype == np.uint32 and labels.max() == expected.max()
        assert evaluate(labels, expected)["ap50"] == 1.0
        assert np.mean(labels == expected) > 0.995
    assert gt.probs_to_labels(torch.zeros((3, 40, 40))).max() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_segment_on_a_gpu_makes_the_cpus_labels():
    from unet_core import Predictor
    from unet_core.data.synthetic import SAMPLE_PARAMS, synthetic_nuclei

    image = synthetic_nuclei((512, 512), seed=3, dtype="uint16", **SAMPLE_PARAMS)[0]
    pred = Predictor("nuclei", device="cuda", diameter="none")
    labels, prob = pred.segment(image, return_prob=True)
    expected = cpu.probs_to_labels(prob, **pred.instance_params)
    assert evaluate(labels, expected)["ap50"] >= 0.99
