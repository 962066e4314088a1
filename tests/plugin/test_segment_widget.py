"""The Segment widget in a real viewer: threaded run, re-run, cancel, errors."""
import dataclasses

import numpy as np
import pytest
from napari.layers import Image, Labels
from napari.utils.notifications import NotificationSeverity

from napari_unet._widgets._common import PredictorKey
from unet_core import PredictOptions, load_model
from unet_core.data.synthetic import synthetic_nuclei

pytestmark = pytest.mark.gui


@pytest.fixture
def segment(make_napari_viewer, tiny_model):
    """(viewer, SegmentWidget docked through the manifest, with the tiny model chosen)."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    widget.model_picker.set_model(tiny_model)
    return viewer, widget


def _run(qtbot, widget, timeout=60_000):
    assert widget.run_bar.run_button.isEnabled()
    widget.run_bar.run_button.click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def _errors(notifications):
    return [n for n in notifications if n.severity == NotificationSeverity.ERROR]


def test_image_picker_follows_layers(segment):
    viewer, widget = segment
    assert widget.image_combo.count() == 0
    assert not widget.run_bar.run_button.isEnabled()
    viewer.add_image(np.zeros((32, 32)), name="a")
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="not an image")
    viewer.add_image(np.zeros((32, 32)), name="b")
    assert [widget.image_combo.itemText(i) for i in range(widget.image_combo.count())] == ["a", "b"]
    widget.image_combo.setCurrentText("a")
    viewer.layers["b"].name = "c"
    assert widget.image_combo.currentText() == "a"
    assert widget.image_combo.findText("c") >= 0
    viewer.layers.remove("a")
    assert widget.image_combo.currentText() == "c"
    assert widget.run_bar.run_button.isEnabled()


def test_tiling_choices(segment):
    _, widget = segment
    combo = widget.tiling_combo
    assert [combo.itemText(i) for i in range(combo.count())] == \
        ["exact (default)", "classic 128 -> 256", "custom"]
    assert widget.predictor_key().preset == "exact"
    assert widget.custom_row.isHidden()
    combo.setCurrentIndex(combo.findData("custom"))
    assert not widget.custom_row.isHidden()
    widget.tile_spin.setValue(64)
    widget.halo_spin.setValue(8)
    key = widget.predictor_key()
    assert (key.preset, key.tile, key.halo, key.batch_size) == (None, 64, 8, None)


def test_custom_halo_defaults_to_the_models(segment, tiny_model):
    """The custom tiling reads the model's exact halo unless a halo is chosen; the
    widget's key holds every option of a Predictor, with the options' defaults."""
    _, widget = segment
    widget.tiling_combo.setCurrentIndex(widget.tiling_combo.findData("custom"))
    widget.tile_spin.setValue(64)
    key = widget.predictor_key()
    assert key.halo is None and widget.halo_spin.text() == "model's"
    pred = widget._cache.get(key)
    assert pred.halo == load_model(tiny_model).config.halo and pred.tile == 64
    names = {f.name for f in dataclasses.fields(PredictorKey)}
    assert names == {"model"} | set(PredictOptions.names()) - {"diameter", "stain"}
    assert PredictorKey("m").options() == PredictOptions()


def test_segment_adds_then_replaces_labels(segment, qtbot, notifications):
    viewer, widget = segment
    image, _ = synthetic_nuclei((128, 128), seed=1)
    viewer.add_image(image, name="nuclei", scale=(0.5, 0.25), translate=(10.0, -4.0))
    widget.prob_check.setChecked(True)
    _run(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == \
        ["nuclei", "nuclei labels", "nuclei probabilities"]
    labels = viewer.layers["nuclei labels"]
    assert isinstance(labels, Labels)
    assert labels.data.shape == (128, 128) and labels.data.dtype == np.uint32
    np.testing.assert_allclose(labels.scale, (0.5, 0.25))
    np.testing.assert_allclose(labels.translate, (10.0, -4.0))
    prob = viewer.layers["nuclei probabilities"]
    assert isinstance(prob, Image) and prob.data.shape == (128, 128)
    assert prob.data.dtype == np.float32 and 0 <= prob.data.min() <= prob.data.max() <= 1
    assert "object" in widget.run_bar.status.text()

    # re-run with other tiling: same layers, new data objects
    first = labels.data
    widget.tiling_combo.setCurrentIndex(widget.tiling_combo.findData("classic"))
    _run(qtbot, widget)
    assert len(viewer.layers) == 3
    assert viewer.layers["nuclei labels"] is labels and labels.data is not first
    assert labels.data.shape == (128, 128)
    assert not _errors(notifications)


def test_stack_and_rgb_layers(segment, qtbot, notifications):
    viewer, widget = segment
    stack = np.stack([synthetic_nuclei((64, 64), seed=k)[0] for k in range(2)])
    viewer.add_image(stack, name="stack")
    _run(qtbot, widget)
    labels = viewer.layers["stack labels"].data
    assert labels.shape == (2, 64, 64)
    per_plane = [len(np.unique(plane[plane > 0])) for plane in labels]
    assert f"(per plane: {per_plane[0]}, {per_plane[1]})" in widget.run_bar.status.text()
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    layer = viewer.add_image(rgb, name="rgb")
    assert layer.rgb
    widget.image_combo.setCurrentText("rgb")
    _run(qtbot, widget)
    assert viewer.layers["rgb labels"].data.shape == (64, 64)
    assert not _errors(notifications)


def test_cancel_adds_nothing(segment, qtbot):
    viewer, widget = segment
    viewer.add_image(synthetic_nuclei((512, 512), seed=1)[0], name="big")
    widget.tiling_combo.setCurrentIndex(widget.tiling_combo.findData("custom"))
    widget.tile_spin.setValue(16)
    widget.halo_spin.setValue(16)
    widget.batch_spin.setValue(1)      # 1024 forward passes: many yields

    def _on_progress(value):
        if value > 0 and widget.run_bar.cancel_button.isEnabled():
            widget.run_bar.cancel_button.click()

    widget.run_bar.bar.valueChanged.connect(_on_progress)
    _run(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert widget.run_bar.status.text() == "Cancelled"
    assert widget.run_bar.run_button.isEnabled() and not widget.run_bar.cancel_button.isEnabled()


def test_wrong_channel_count_is_reported(segment, qtbot, notifications):
    viewer, widget = segment
    viewer.add_image(np.zeros((64, 64, 2), np.float32), name="two channels", rgb=False)
    _run(qtbot, widget)
    [error] = _errors(notifications)
    assert "expects 1 channel(s) but the image has 2" in error.message
    assert type(error).__name__ == "Notification"     # a message, not a traceback
    assert [layer.name for layer in viewer.layers] == ["two channels"]
    assert widget.run_bar.status.text().startswith("Failed:")
    assert widget.run_bar.run_button.isEnabled()


def test_corrupt_model_is_reported(segment, qtbot, notifications, tiny_model, tmp_path):
    viewer, widget = segment
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_bytes((tiny_model / "model.json").read_bytes())
    (broken / "model.safetensors").write_bytes(b"garbage" * 10)
    widget.model_picker.set_model(broken)
    viewer.add_image(np.zeros((64, 64), np.uint16), name="img")
    _run(qtbot, widget)
    [error] = _errors(notifications)
    assert "not a complete safetensors file" in error.message and str(broken) in error.message
    assert len(viewer.layers) == 1
    # back to the good model: the widget works again
    widget.model_picker.set_model(tiny_model)
    _run(qtbot, widget)
    assert "img labels" in viewer.layers


def test_predictor_is_loaded_once_per_settings(tiny_model):
    from napari_unet._widgets._common import PredictorCache, PredictorKey

    cache = PredictorCache()
    exact = PredictorKey(str(tiny_model), "cpu", preset="exact")
    first = cache.get(exact)
    assert cache.get(PredictorKey(str(tiny_model), "cpu", preset="exact")) is first
    classic = cache.get(PredictorKey(str(tiny_model), "cpu", preset="classic"))
    assert classic is not first and classic.tile == 128 and classic.halo == 64


def test_tta_checkbox_reaches_the_predictor(segment, qtbot, notifications, tiny_model):
    from unet_core import Predictor

    viewer, widget = segment
    assert not widget.tta_check.isChecked() and not widget.predictor_key().tta
    image, _ = synthetic_nuclei((96, 96), seed=2)
    viewer.add_image(image, name="nuclei")
    widget.prob_check.setChecked(True)
    widget.tta_check.setChecked(True)
    assert widget.predictor_key().tta
    _run(qtbot, widget)
    expect = Predictor(tiny_model, device="cpu", tta=True).predict(image)[0]
    np.testing.assert_allclose(viewer.layers["nuclei probabilities"].data, expect, atol=1e-5)
    assert not _errors(notifications)


def test_estimate_fills_the_diameter_and_runs_use_it(segment, qtbot):
    """Estimate shows the image's nucleus size (which the user may change); a run says
    which diameter and stain it used."""
    from unet_core import load_model

    viewer, widget = segment
    widget.model_picker.set_model(load_model("nuclei").path)
    image, labels = synthetic_nuclei((256, 256), seed=4, radius_range=(13.0, 15.0), density=0.3,
                                     haze=0.0)
    viewer.add_image(image, name="big nuclei")
    assert widget.scale.diameter() == "auto" and widget.scale.stain() == "auto"
    widget.scale.estimate_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    true_d = np.median(2 * np.sqrt(np.bincount(labels.ravel())[1:] / np.pi))
    assert abs(widget.scale.diameter() / true_d - 1) < 0.2
    assert "estimated" in widget.run_bar.status.text()
    widget.scale.diameter_spin.setValue(40.0)      # the user overrides it
    _run(qtbot, widget)
    assert "nuclei 40.0 px, resampled x" in widget.run_bar.status.text()
    assert "stain fluorescence" in widget.run_bar.status.text()
    assert viewer.layers["big nuclei labels"].data.max() > 10


def test_dask_and_zarr_layers_are_read_lazily_and_shown_lazily(segment, qtbot, notifications,
                                                                tmp_path, monkeypatch,
                                                                tiny_model):
    import dask.array as da
    import zarr

    from unet_core import Predictor

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    viewer, widget = segment
    image = synthetic_nuclei((192, 160), seed=4)[0]
    store = zarr.create_array(str(tmp_path / "img.zarr"), data=image, chunks=(64, 64))
    viewer.add_image(da.from_zarr(store), name="lazy")
    widget.prob_check.setChecked(True)
    _run(qtbot, widget)
    assert not _errors(notifications)
    labels = viewer.layers["lazy labels"]
    assert isinstance(labels, Labels)
    level0 = labels.data        # one level at this size; a pyramid above 1024 px
    assert isinstance(level0, zarr.Array) and level0.shape == (192, 160)
    assert str(tmp_path / "cache") in str(level0.store)
    whole = Predictor(tiny_model, device="cpu").segment(image)
    got = np.asarray(level0[:])
    assert len(np.unique(got)) == len(np.unique(whole))
    assert ((got > 0) == (whole > 0)).all()
    prob = viewer.layers["lazy probabilities"]
    assert isinstance(prob.data, zarr.Array) and prob.data.shape == (192, 160)
    n = len(set(np.unique(got).tolist()) - {0})
    assert widget.run_bar.status.text().startswith(f"{n} object")
    # a second run replaces the lazy layer's data
    _run(qtbot, widget)
    assert [layer.name for layer in viewer.layers].count("lazy labels") == 1


def test_a_stain_guessed_on_weak_evidence_is_said(segment, qtbot, notifications):
    """An image with no clear background (noise: neither dark nor bright) is segmented with
    the stain auto chose, and the user is told which stain was assumed and where to set it."""
    viewer, widget = segment
    rng = np.random.default_rng(3)
    viewer.add_image(rng.integers(0, 4000, (96, 96)).astype(np.uint16), name="noise")
    _run(qtbot, widget)
    status = widget.run_bar.status.text()
    assert "Stain assumed to be" in status and "choose the stain by hand" in status
    warnings = [n for n in notifications if n.severity == NotificationSeverity.WARNING]
    assert any("Stain assumed" in n.message for n in warnings)
    assert not _errors(notifications)


def test_the_image_choice_follows_the_layer_opened_or_selected(segment):
    """A second image opened is the one segmented next, as is a layer selected in the
    layer list; the probability layer a run adds is never chosen by itself."""
    from napari_unet._widgets._controls import OUTPUT_KEY

    viewer, widget = segment
    viewer.add_image(np.zeros((32, 32)), name="first")
    assert widget.image_combo.currentText() == "first"
    viewer.add_image(np.ones((32, 32)), name="second")
    assert widget.image_combo.currentText() == "second"
    assert widget.image_layer().name == "second"
    viewer.layers.selection.active = viewer.layers["first"]
    assert widget.image_combo.currentText() == "first"
    viewer.add_image(np.zeros((32, 32)), name="first probabilities",
                     metadata={OUTPUT_KEY: "probabilities"})
    assert widget.image_combo.currentText() == "first"
    viewer.layers.selection.active = viewer.layers["first probabilities"]
    assert widget.image_combo.currentText() == "first"


def test_what_auto_resolved_to_is_shown_in_the_choices(segment, qtbot):
    """After a run with the defaults, the Stain and Nucleus size boxes say what "auto"
    chose ("auto: H&E", "auto: 14 px"); the status says how the image was resampled."""
    from unet_core import load_model
    from unet_core.data.synthetic import render_he

    viewer, widget = segment
    widget.model_picker.set_model(load_model("nuclei").path)
    image, labels = synthetic_nuclei((256, 256), seed=4, radius_range=(6.0, 8.0), density=0.3,
                                     haze=0.0)
    viewer.add_image(render_he(image, labels, seed=4), name="tissue", rgb=True)
    _run(qtbot, widget)
    assert widget.scale.stain() == "auto" and widget.scale.diameter() == "auto"
    assert widget.scale.stain_combo.currentText() == "auto: H&E"
    assert widget.scale.diameter_spin.specialValueText().startswith("auto: ")
    assert widget.scale.diameter_spin.text().endswith(" px")
    status = widget.run_bar.status.text()
    assert "(estimated)" in status and ("resampled x" in status or "image's scale" in status)


class _ReadRecorder:
    """A zarr array that notes how many pixels each read returns."""

    def __init__(self, arr):
        self.arr, self.reads = arr, []
        self.shape, self.dtype, self.ndim, self.chunks = arr.shape, arr.dtype, arr.ndim, arr.chunks

    def __getitem__(self, key):
        out = self.arr[key]
        self.reads.append(int(np.size(out)))
        return out

    def __array__(self, dtype=None, copy=None):      # np.asarray(layer.data): a whole read
        return np.asarray(self[...], dtype=dtype)


def test_a_lazy_stack_is_read_plane_by_plane_not_whole(tmp_path, tiny_model):
    """A zarr-backed stack (not block-wise: that is for 2D images) is segmented as the
    same stack in memory is, without ever reading the whole stack at once."""
    import zarr

    from napari_unet._widgets._common import PredictorCache, PredictorKey, segment_job
    from unet_core import Predictor, run_to_end

    stack = np.stack([synthetic_nuclei((96, 80), seed=s)[0] for s in (1, 2, 3)])
    lazy = _ReadRecorder(zarr.create_array(str(tmp_path / "stack.zarr"), data=stack,
                                           chunks=(1, 48, 40)))
    key = PredictorKey(str(tiny_model), "cpu")
    result = run_to_end(segment_job(PredictorCache(), key, lazy, diameter="none",
                                    stain="fluorescence"))
    expect = Predictor(tiny_model, device="cpu", diameter="none",
                       stain="fluorescence").segment(stack)
    np.testing.assert_array_equal(result.labels, expect)
    assert lazy.reads and max(lazy.reads) <= 96 * 80 < stack.size
