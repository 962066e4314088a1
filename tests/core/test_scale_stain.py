"""Nucleus size, stain and constant bands: resampling by window, exactness at any
diameter, the automatic estimate, stain conversion and detection."""
import dataclasses

import numpy as np
import pytest

from conftest import lively_unet
from unet_core import InputError, Model, Predictor, load_model
from unet_core.data.synthetic import render_he, synthetic_nuclei
from unet_core.inference.content import content_box
from unet_core.inference.resample import Resampled, nearest_labels, resample, resampled_shape
from unet_core.inference.stain import convert, detect_stain
from unet_core.segmentation.instances import labels_to_grid
from unet_core.segmentation.metrics import evaluate


@pytest.mark.parametrize("scale", [0.37, 0.5, 1.6, 2.0])
def test_windows_of_a_resampled_image_equal_the_whole(scale, rng):
    img = rng.random((90, 70, 1)).astype(np.float32)
    shape = resampled_shape(img.shape, scale)
    whole = resample(img, shape)
    view = Resampled(img, shape)
    for ys, xs in [(slice(0, 7), slice(3, 30)), (slice(5, shape[0]), slice(0, shape[1])),
                   (slice(shape[0] - 3, shape[0]), slice(shape[1] - 9, shape[1]))]:
        np.testing.assert_array_equal(view[ys, xs], whole[ys, xs])
    np.testing.assert_allclose(whole.mean(), img.mean(), atol=0.02)


def test_any_diameter_equals_segmenting_the_resampled_image_whole(rng):
    """Tiled at the model's scale == the whole resampled image through the network."""
    img = (rng.random((150, 130)) * 1000).astype(np.uint16)
    model = Model(lively_unet(depth=2, base_filters=4, out_channels=3), card={"diameter": 12.0})
    for diameter in (7.0, 20.0):
        tiled = Predictor(model, device="cpu", tile=32, diameter=diameter)
        labels, prob = tiled.segment(img, return_prob=True)
        s = tiled.last_settings
        assert s.scale == pytest.approx(12.0 / diameter)
        shape_s = resampled_shape(img.shape, s.scale)
        assert len(tiled.grid(shape_s)) > 1           # really tiled
        whole = Predictor(model, device="cpu", tile=4096, diameter=None)
        at_scale = dataclasses.replace(s, scale=1.0, diameter=None)
        lab_s, prob_s = whole.segment(resample(img, shape_s), return_prob=True, settings=at_scale)
        np.testing.assert_allclose(prob, np.moveaxis(resample(np.moveaxis(prob_s, 0, -1),
                                                             img.shape), -1, 0), atol=1e-5)
        np.testing.assert_array_equal(labels, labels_to_grid(lab_s, prob_s, img.shape))


def test_labels_come_back_one_id_per_nucleus(rng):
    """Up and down: every id survives as one object, ids unchanged, outlines follow."""
    image, truth = synthetic_nuclei((128, 128), seed=3, radius_range=(3.0, 6.0), density=0.3)
    truth = truth.astype(np.uint32)
    for shape in [(64, 64), (300, 300)]:
        prob = np.stack([(truth > 0).astype(np.float32)] * 3)
        back = labels_to_grid(nearest_labels(truth, shape), resample(
            np.moveaxis(prob, 0, -1), shape).transpose(2, 0, 1), truth.shape)
        assert set(np.unique(back)) == set(np.unique(truth))
        assert evaluate(back, truth)["ap50"] > 0.9


def test_constant_bands_are_left_out(small_net, rng):
    img = (rng.random((100, 120)) * 500 + 50).astype(np.uint16)
    pred = Predictor(small_net, device="cpu", diameter=None)
    plain = pred.predict(img)
    for value in (0, 300):
        banded = np.pad(img, ((20, 8), (0, 30)), constant_values=value)
        assert content_box(banded) == (slice(20, 120), slice(0, 120))
        prob = pred.predict(banded)
        np.testing.assert_allclose(prob[:, 20:120, :120], plain, atol=1e-6)
        assert not prob[:, :20].any() and not prob[:, :, 120:].any()
    # a flat first row is not a band (fewer than 4 rows)
    img[0] = 7
    assert content_box(img) == (slice(0, 100), slice(0, 120))


def test_stain_detection_and_conversion():
    fl, labels = synthetic_nuclei((256, 256), seed=5, radius_range=(8.0, 12.0))
    assert detect_stain(fl) == "fluorescence"
    assert detect_stain(fl.max() - fl) == "brightfield"
    he = render_he(fl, labels)
    assert detect_stain(he) == "he"
    grey_bf = np.dstack([fl.max() - fl] * 3)
    assert detect_stain(grey_bf) == "brightfield"
    h = convert(he, "he", white=245.0)[..., 0]
    assert h[labels > 0].mean() > 3 * h[labels == 0].mean()
    with pytest.raises(InputError, match="colour"):
        convert(fl, "he")
    with pytest.raises(InputError, match="stain"):
        Predictor(lively_unet(depth=2, base_filters=4), stain="dab")


@pytest.fixture(scope="module")
def bundled():
    return Predictor(load_model("nuclei"), device="cpu")


@pytest.mark.parametrize("radius", [6.0, 24.0])
def test_auto_diameter_finds_the_nucleus_size(bundled, radius):
    image, labels = synthetic_nuclei((384, 384), seed=11, radius_range=(radius * 0.9, radius * 1.1),
                                     density=0.3, haze=0.0, pressed=0.0)
    true_d = np.median(2 * np.sqrt(np.bincount(labels.ravel())[1:] / np.pi))
    s = bundled.settings_for(image)
    assert s.estimated and s.stain == "fluorescence"
    assert abs(s.diameter / true_d - 1) < 0.2, (s.diameter, true_d)


def test_a_size_estimate_whose_looks_disagree_says_so(bundled):
    """Looks at different scales that contradict each other (here uniform noise: no
    nuclei at any scale) leave a note naming Nucleus size; agreeing looks leave none."""
    from unet_core.inference.sizing import SizeEstimate, _trusted

    looks = [(0.1, 1.0, 20.0, None), (0.3, 0.5, 40.0, None), (0.9, 0.25, 90.0, None)]
    assert _trusted(looks) == (looks, False)
    assert _trusted(looks[:1] + [(0.1, 0.5, 22.0, None)])[1]
    note = SizeEstimate(20.0, (20.0, 40.0, 90.0), agreed=False).note()
    assert "uncertain" in note and "Nucleus size" in note
    image, _ = synthetic_nuclei((384, 384), seed=11, radius_range=(9, 11), density=0.3,
                                haze=0.0, pressed=0.0)
    good = bundled.settings_for(image)
    assert good.size_note is None and good.notes == [] and "uncertain" not in good.describe()
    uncertain = dataclasses.replace(good, size_note=note)
    assert uncertain.notes == [note] and "(estimated, uncertain)" in uncertain.describe()
    assert uncertain.as_record()["diameter_uncertain"]


def test_estimate_skips_the_full_scale_look_only_where_it_cannot_win(bundled, monkeypatch):
    """Large nuclei: the looks shrunk 2x and 4x agree and rule out the costly look at the
    image's own scale, which is then not taken; the estimate is the same as with it."""
    import unet_core.inference.sizing as sizing

    scales = []
    probe = sizing._probe
    monkeypatch.setattr(sizing, "_probe", lambda p, b, lo, hi, s, side: scales.append(s)
                        or probe(p, b, lo, hi, s, side))
    for radius, skipped in ((7.0, False), (26.0, True)):
        image, _ = synthetic_nuclei((640, 640), seed=12, radius_range=(radius * 0.9, radius * 1.1),
                                    density=0.3, haze=0.0, pressed=0.0)
        scales.clear()
        fast = bundled.settings_for(image).diameter
        assert (1.0 not in scales) == skipped, scales
        with monkeypatch.context() as m:
            m.setattr(sizing, "_full_look_can_win", lambda looks, d: True)
            scales.clear()
            assert bundled.settings_for(image).diameter == fast
            assert 1.0 in scales


def test_brightfield_and_he_segment_like_fluorescence(bundled):
    fl, labels = synthetic_nuclei((256, 256), seed=7, radius_range=(8.0, 11.0), density=0.25,
                                  haze=0.0)
    base = bundled.segment(fl)
    for image, stain in ((fl.max() - fl, "brightfield"), (render_he(fl, labels), "he")):
        out = bundled.segment(image)
        assert bundled.last_settings.stain == stain
        assert evaluate(out, labels)["ap50"] > evaluate(base, labels)["ap50"] - 0.1


def test_training_examples_come_to_the_model_size_and_stain(rng):
    """Fine-tuning sees examples as the Predictor shows them: outside the model's size
    range they are resampled to its diameter (measured on their own labels)."""
    from unet_core.training.dataset import Example
    from unet_core.training.scaling import to_model_scale, training_diameter

    model = Model(lively_unet(depth=2, base_filters=4, out_channels=3), card={"diameter": 12.0})
    pred = Predictor(model, device="cpu")
    for radius, resized in ((20.0, True), (6.0, False)):
        image, labels = synthetic_nuclei((200, 200), seed=2, radius_range=(radius, radius * 1.05),
                                         density=0.3)
        ex = Example("e", image.max() - image, labels, np.ones(labels.shape, bool))
        out = to_model_scale(ex, pred)
        assert out.record["stain"] == "brightfield"
        assert out.image.dtype == np.float32 and out.image.shape == out.labels.shape
        assert (out.image.shape != labels.shape) == resized
        assert set(np.unique(out.labels)) <= set(np.unique(labels))
        assert abs(training_diameter([out]) / (12.0 if resized else 2 * radius) - 1) < 0.25


def test_scale_augmentation_resamples_crops(rng):
    from unet_core.training.augment import AugmentConfig, reviewed_points, scaled_crop

    image, labels = synthetic_nuclei((256, 256), seed=3, radius_range=(8.0, 9.0))
    img = image[..., None].astype(np.float32)
    mask = np.ones(labels.shape, bool)
    cfg = AugmentConfig(scale_p=1.0, scale_range=(0.5, 0.5))
    out_img, out_lab, out_msk = scaled_crop(img, labels, mask, 64, rng, reviewed_points(mask), 0.9, cfg)
    assert out_img.shape == (64, 64, 1) and out_lab.shape == out_msk.shape == (64, 64)
    ids, areas = np.unique(out_lab[out_lab > 0], return_counts=True)
    assert np.median(areas) < 0.5 * np.pi * 8.5 ** 2     # nuclei shrunk to half their width
