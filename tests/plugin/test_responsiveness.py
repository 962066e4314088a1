"""The GUI keeps answering while the Fine-tune widget trains (a light version of
benchmarks/bench_responsiveness.py, with a generous bound for shared CI machines)."""
import time

import numpy as np
import pytest
from qtpy.QtCore import Qt, QTimer

from unet_core.data.synthetic import synthetic_nuclei
from unet_core.training.dataset import TrainingSet

pytestmark = pytest.mark.gui


def test_event_loop_keeps_running_during_finetune(make_napari_viewer, qtbot, tiny_model,
                                                  tmp_path, one_thread):
    ts = TrainingSet(tmp_path / "set")
    for k in range(3):
        ts.add(*synthetic_nuclei((128, 128), n=10, seed=k, radius_range=(5, 10)), source=f"i{k}")
    viewer = make_napari_viewer()
    viewer.add_image(synthetic_nuclei((256, 256), seed=9)[0])
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Fine-tune")
    widget.model_picker.set_model(tiny_model)
    widget.folder_edit.set_path(ts.folder)
    widget.steps_spin.setValue(20)
    widget.crop_spin.setValue(64)
    widget.batch_spin.setValue(2)

    ticks = []
    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    widget.run_bar.run_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    timer.stop()
    assert widget.new_model is not None
    gaps_ms = 1000 * np.diff(ticks)
    assert len(gaps_ms) > 10
    assert gaps_ms.max() < 1000, f"the GUI froze for {gaps_ms.max():.0f} ms"
    assert widget.plot.redraws >= 1


def test_opening_segment_pays_the_first_labels_layer_costs(make_napari_viewer):
    """vispy builds its dash-pattern atlas (~0.2 s of Python) for the first line visual of
    the process: every Labels layer has one (the polygon tool).  The Segment dock builds it
    when it opens, so the first result's layer costs no more than later ones."""
    dash_atlas = pytest.importorskip("vispy.visuals.line.dash_atlas")
    dash_atlas._make_pattern.cache_clear()
    viewer = make_napari_viewer()
    viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    built = dash_atlas._make_pattern.cache_info().misses
    assert built > 0
    viewer.add_labels(np.zeros((64, 64), np.uint32))
    assert dash_atlas._make_pattern.cache_info().misses == built
