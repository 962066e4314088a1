"""The Device choice of Segment and Batch: what "auto" resolved to, each backend reaching the
Predictor, the compile time in the status line, and a fallback reaching the user."""
import sys

import numpy as np
import pytest
import tifffile
from napari.utils.notifications import NotificationSeverity

from unet_core import Predictor
from unet_core.data.synthetic import synthetic_nuclei
from unet_core.inference.backends import describe, resolve

pytestmark = pytest.mark.gui


def _texts(combo):
    return [combo.itemText(i) for i in range(combo.count())]


def _run(qtbot, widget, timeout=60_000):
    widget.run_bar.run_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def test_segment_device_choice_shows_auto_and_runs_the_chosen_backend(make_napari_viewer, qtbot,
                                                                      tiny_model, notifications):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    widget.model_picker.set_model(tiny_model)
    texts = _texts(widget.device_combo)
    assert texts[0] == f"auto: cpu, {describe(*resolve('auto', 'auto', 'cpu'))}"
    assert {"cpu, PyTorch f32", "cpu, ONNX Runtime f32", "cpu, OpenVINO f32"} <= set(texts)
    assert widget.predictor_key().backend == "auto"

    image, _ = synthetic_nuclei((96, 96), seed=4)
    viewer.add_image(image, name="nuclei")
    widget.prob_check.setChecked(True)
    widget.device_combo.setCurrentText("cpu, ONNX Runtime f32")
    key = widget.predictor_key()
    assert (key.device, key.backend, key.precision) == ("cpu", "onnxruntime", "f32")
    _run(qtbot, widget)
    status = widget.run_bar.status.text()
    assert "ONNX Runtime f32, compiled in" in status, status
    expect = Predictor(tiny_model, device="cpu", backend="torch").predict(image)[0]
    assert np.abs(viewer.layers["nuclei probabilities"].data - expect).max() <= 1e-4
    # the second run reuses the compiled network: no compile time
    _run(qtbot, widget)
    status = widget.run_bar.status.text()
    assert "ONNX Runtime f32" in status and "compiled" not in status, status
    assert not [n for n in notifications if n.severity >= NotificationSeverity.WARNING]


def test_batch_fallback_reaches_the_user_once(make_napari_viewer, qtbot, tiny_model, tmp_path,
                                             notifications, monkeypatch):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Batch")
    widget.model_picker.set_model(tiny_model)
    (tmp_path / "in").mkdir()
    for i in range(2):
        tifffile.imwrite(tmp_path / "in" / f"img{i}.tif", synthetic_nuclei((64, 64), seed=i)[0])
    widget.input_edit.set_path(tmp_path / "in")
    widget.output_edit.set_path(tmp_path / "out")
    widget.device_combo.setCurrentText("cpu, OpenVINO f32")
    assert widget.device_combo.currentData() == ("cpu", "openvino", "f32")
    # an install that is there (so offered) but whose import fails
    monkeypatch.setitem(sys.modules, "openvino", None)
    _run(qtbot, widget)
    assert sorted(p.name for p in (tmp_path / "out").glob("*_labels.tif")) == \
        ["img0_labels.tif", "img1_labels.tif"]
    warned = [n for n in notifications if n.severity == NotificationSeverity.WARNING]
    assert len(warned) == 1 and "OpenVINO backend could not be used" in warned[0].message
    assert widget._cache.get(widget._cache._stamp[0]).backend == "torch"
