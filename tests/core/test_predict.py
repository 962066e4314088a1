"""Predictor on every kind of input: shapes, dtypes, stacks and bad input."""
import numpy as np
import pytest

from conftest import lively_unet
from unet_core import InputError, Predictor, UNetError
from unet_core.progress import PlaneTiles, PredictStart


@pytest.fixture(scope="module")
def pred():
    return Predictor(lively_unet(depth=2, base_filters=4), device="cpu", tile=64)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64, bool])
def test_dtypes(pred, dtype):
    img = (np.random.default_rng(0).random((70, 90)) * 200).astype(dtype)
    prob = pred.predict(img)
    assert prob.shape == (2, 70, 90) and prob.dtype == np.float32
    assert np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()
    labels = pred.segment(img)
    assert labels.shape == (70, 90) and labels.dtype == np.uint32


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (37, 2000), (100, 133)])
def test_odd_sizes(pred, shape):
    img = np.random.default_rng(0).random(shape)
    assert pred.predict(img).shape == (2,) + shape


def test_rgb_and_rgba_meet_a_grey_model(pred):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    grey = rgb.astype(np.float32).mean(-1)
    np.testing.assert_allclose(pred.predict(rgb), pred.predict(grey), atol=1e-6)
    rgba = np.concatenate([rgb, np.full((40, 50, 1), 255, np.uint8)], -1)
    np.testing.assert_allclose(pred.predict(rgba), pred.predict(grey), atol=1e-6)


def test_rgb_model():
    p = Predictor(lively_unet(depth=2, base_filters=4, in_channels=3), device="cpu")
    assert p.predict(np.zeros((30, 30, 3), np.uint8)).shape == (2, 30, 30)
    assert p.predict(np.ones((30, 30), np.uint8)).shape == (2, 30, 30)


def test_stacks_plane_by_plane(pred):
    rng = np.random.default_rng(0)
    stack = rng.random((3, 48, 64)).astype(np.float32)
    prob = pred.predict(stack)
    assert prob.shape == (3, 2, 48, 64)
    np.testing.assert_allclose(prob[1], pred.predict(stack[1]), atol=1e-6)
    assert pred.predict(rng.random((2, 48, 64, 3))).shape == (2, 2, 48, 64)
    labels = pred.segment(stack)
    assert labels.shape == (3, 48, 64)


def test_constant_nan_inf(pred):
    mirrored = Predictor(pred.model, device="cpu", tile=64, border="reflect")
    for img in (np.zeros((40, 40)), np.full((40, 40), 7.0), np.full((40, 40), np.nan)):
        assert np.isfinite(pred.predict(img)).all()
        assert pred.segment(img).dtype == np.uint32
        # with mirrored borders a featureless image gives a featureless answer: only
        # the period of the transposed convolutions (the alignment) remains
        prob = mirrored.predict(img)
        a = pred.model.config.alignment
        np.testing.assert_allclose(prob[:, a:], prob[:, :-a], atol=1e-6)
        np.testing.assert_allclose(prob[:, :, a:], prob[:, :, :-a], atol=1e-6)
    img = np.random.default_rng(0).random((40, 40))
    img[3, 3], img[5, 5], img[7, 7] = np.nan, np.inf, -np.inf
    prob = pred.predict(img)
    assert np.isfinite(prob).all()


@pytest.mark.parametrize("img, words", [
    (np.zeros((0, 10)), "empty"),
    (np.zeros((10, 0, 3)), "empty"),
    (np.zeros((2, 2, 2, 8, 8)), "5-D"),
    (np.zeros((8, 8), complex), "numbers"),
    (np.array([["a", "b"], ["c", "d"]]), "numbers"),
    (np.zeros((20, 20, 2)), "channel"),
    (None, "No image"),
])
def test_bad_input_is_a_clear_error(pred, img, words):
    with pytest.raises(InputError, match=words) as info:
        pred.predict(img)
    assert isinstance(info.value, UNetError) and len(str(info.value)) > 30


def test_wrong_channels_for_rgb_model():
    p = Predictor(lively_unet(depth=2, base_filters=4, in_channels=3), device="cpu")
    with pytest.raises(InputError, match="expects 3 channel"):
        p.predict(np.zeros((20, 20, 2)))


def test_bad_arguments(small_net):
    with pytest.raises(InputError, match="device"):
        Predictor(small_net, device="tpu")
    with pytest.raises(InputError, match="preset"):
        Predictor(small_net, preset="fancy")
    with pytest.raises(InputError, match="tile"):
        Predictor(small_net, tile=0)


def test_generator_progress_and_cancel(small_net):
    p = Predictor(small_net, device="cpu", tile=32, batch_size=1)
    img = np.random.default_rng(0).random((100, 100))
    gen = p.predict_iter(img)
    first = next(gen)
    while first.stage == "compile":   # a fast backend's one-off export and compile
        first = next(gen)
    assert first.stage == "estimate"  # stain, normalization and nucleus size come first
    steps = []
    while len(steps) < 3:
        step = next(gen)
        if step.stage == "predict":
            steps.append(step)
    assert steps[0].done == 0 and steps[-1].done == 2 and steps[0].total == len(p.grid(img.shape))
    # the payloads: the settings first, then the plane and its tile count per batch
    assert isinstance(steps[0].info, PredictStart) and steps[0].info.settings["stain"]
    assert steps[1].info == PlaneTiles(0, len(p.grid(img.shape)))
    gen.close()  # cancelling is just stopping; nothing else runs
    with pytest.raises(StopIteration):
        next(gen)


def test_out_argument_streams_into_given_array(pred):
    img = np.random.default_rng(0).random((50, 60))
    out = np.zeros((2, 50, 60), np.float32)
    res = pred.predict(img, out=out)
    assert res is out and out.any()
    with pytest.raises(InputError, match="out has shape"):
        pred.predict(img, out=np.zeros((1, 50, 60), np.float32))


def test_default_tiling_is_exact_and_sized(small_net):
    p = Predictor(small_net, device="cpu")
    assert p.halo == small_net.config.halo == 24
    assert p.tile >= 512 and p.tile % small_net.config.alignment == 0


def test_lazy_dask_input_equals_numpy(pred):
    da = pytest.importorskip("dask.array")
    img = np.random.default_rng(0).random((150, 170)).astype(np.float32)
    lazy = da.from_array(img, chunks=(64, 64))
    np.testing.assert_array_equal(pred.predict(lazy), pred.predict(img))


def test_prefetched_keeps_order_runs_ahead_and_stops_when_closed():
    import threading
    import time

    from unet_core.progress import prefetched

    seen, main = [], threading.get_ident()

    def work(k):
        seen.append((k, threading.get_ident() != main))
        time.sleep(0.01)
        return k * k

    gen = prefetched(work, range(6))
    assert [next(gen) for _ in range(2)] == [(0, 0), (1, 1)]
    time.sleep(0.05)
    assert [k for k, _ in seen] == [0, 1, 2]      # the next one is read ahead, no further
    assert all(other for _, other in seen)        # in a background thread
    gen.close()
    time.sleep(0.05)
    assert len(seen) == 3                          # nothing started after closing
    assert list(prefetched(work, [7])) == [(7, 49)]

    def bad(k):
        raise ValueError(k)

    with pytest.raises(ValueError):
        list(prefetched(bad, range(3)))
