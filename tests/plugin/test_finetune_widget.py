"""The Fine-tune widget in a real viewer: train, compare, switch Segment, cancel, errors."""
import os
import signal
import sys
import time

import numpy as np
import pytest
from napari.utils.notifications import NotificationSeverity

from unet_core import load_model
from unet_core.data.synthetic import synthetic_nuclei
from unet_core.training.dataset import TrainingSet

pytestmark = pytest.mark.gui


@pytest.fixture
def tiny_set(tmp_path):
    """A training set of three 96 px synthetic examples (one is held back)."""
    ts = TrainingSet(tmp_path / "set")
    for k in range(3):
        image, labels = synthetic_nuclei((96, 96), n=8, seed=k, radius_range=(5, 10))
        ts.add(image, labels, source=f"img{k}")
    return ts.folder


@pytest.fixture
def finetune(make_napari_viewer, tiny_model, tiny_set, one_thread):
    """(viewer, FinetuneWidget docked through the manifest: tiny base model, tiny set, 3 steps
    of batch 2 with 64 px crops)."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Fine-tune")
    widget.model_picker.set_model(tiny_model)
    widget.folder_edit.set_path(tiny_set)
    widget.steps_spin.setValue(3)
    widget.crop_spin.setValue(64)
    widget.batch_spin.setValue(2)
    return viewer, widget


def _run(qtbot, widget, timeout=120_000):
    widget.run_bar.run_button.click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def _errors(notifications):
    return [n.message for n in notifications if n.severity == NotificationSeverity.ERROR]


def test_finetune_saves_compares_and_switches_segment(finetune, qtbot, tiny_model, notifications):
    viewer, widget = finetune
    _, segment = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    segment.model_picker.set_model(tiny_model)
    assert widget.set_label.text() == "3 examples · 24 objects"
    assert widget.config().steps == 3 and widget.config().crop == 64
    _run(qtbot, widget)
    assert not _errors(notifications)
    new = widget.new_model
    assert new is not None and new.parent == tiny_model.parent and new.name.startswith("tiny-ft-")
    model = load_model(new)
    assert model.card["parent"] == "tiny" and model.card["training"]["steps"] == 3
    assert not (new / "checkpoints").exists()
    assert widget.run_bar.status.text().startswith(f"Saved {new.name}: 3 steps")

    # the comparison: base and new scores on the one held-back example
    assert widget.compare_box.isVisibleTo(widget)
    cells = [[widget.table.item(r, c).text() for c in range(3)] for r in range(3)]
    assert all(cell != "–" for row in cells for cell in row[:2])
    before, after = model.card["metrics"]["before"], model.card["metrics"]["after"]
    assert cells[0][:2] == [f"{before['dice']:.3f}", f"{after['dice']:.3f}"]
    assert "1 held-back example" in widget.compare_note.text()
    # the plot got every step and validations (one per step here, plus the base at step 0)
    assert widget.plot._steps == [1, 2, 3] and [v[0] for v in widget.plot._val] == [0, 1, 2, 3]

    widget.use_button.click()
    assert segment.model_picker.model_path() == str(new)
    assert widget.model_picker.findData(str(new)) >= 0     # the new model is offered as a base


def test_a_fine_tune_that_did_not_improve_says_so(finetune, qtbot, notifications):
    """One step at the smallest learning rate changes nothing the scores can see: the
    status and a warning say plainly that the new model is no better, and why that may be."""
    _, widget = finetune
    widget.steps_spin.setValue(1)
    widget.lr_combo.setCurrentIndex(widget.lr_combo.count() - 1)
    _run(qtbot, widget)
    assert not _errors(notifications)
    status = widget.run_bar.status.text()
    assert "No improvement" in status and "few corrected examples" in status
    warnings = [n.message for n in notifications if n.severity == NotificationSeverity.WARNING]
    assert any("No improvement" in m for m in warnings)


def test_use_in_segment_opens_segment_when_closed(finetune, qtbot):
    viewer, widget = finetune
    _run(qtbot, widget)
    widget.use_button.click()
    from napari_unet._widgets.segment import SegmentWidget

    [segment] = [w for w in viewer.window.dock_widgets.values() if isinstance(w, SegmentWidget)]
    assert segment.model_picker.model_path() == str(widget.new_model)


def _stop_at_train_step(qtbot, widget, action, at_step=2):
    """Start a long run; call ``action()`` in the slot that receives train step ``at_step``.
    Returns the train steps the GUI received."""
    widget.steps_spin.setValue(100_000)
    seen = []

    def _on_yielded(p):
        if p is not None and p.stage == "train":
            seen.append(p.done)
            if p.done == at_step:
                action()

    widget.run_bar.run_button.click()
    # queued signals: every step yielded after this line reaches the slot
    widget.jobs.worker.yielded.connect(_on_yielded)
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    return seen


def _no_new_model(tiny_model):
    return [p.name for p in tiny_model.parent.iterdir() if not p.name.startswith(".")] == ["tiny"]


def _gone(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cancel_stops_the_child_and_saves_nothing(finetune, qtbot, tiny_model):
    viewer, widget = finetune
    clicked = []

    def cancel():
        clicked.append((time.monotonic(), widget.child.pid))
        widget.run_bar.cancel_button.click()

    seen = _stop_at_train_step(qtbot, widget, cancel)
    (t_click, pid), = clicked
    assert pid != os.getpid() and _gone(pid)           # trained in a child, which has ended
    assert time.monotonic() - t_click < 20 and max(seen) < 1000
    assert widget.run_bar.status.text() == "Cancelled: no model was saved."
    assert widget.new_model is None and not widget.compare_box.isVisibleTo(widget)
    assert _no_new_model(tiny_model)
    assert widget.run_bar.run_button.isEnabled()


def _tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_child_is_reported_napari_stays_up_and_a_new_run_works(
        finetune, qtbot, tiny_model, tiny_set, notifications):
    """SIGKILL of the training process mid-run: a notification says what happened, the base
    model and the training set are intact, nothing half-made is left, and training works again."""
    viewer, widget = finetune
    model_before, set_before = _tree(tiny_model), _tree(tiny_set)
    killed = []

    def kill():
        killed.append(widget.child.pid)
        os.kill(widget.child.pid, signal.SIGKILL)

    _stop_at_train_step(qtbot, widget, kill)
    [error] = _errors(notifications)
    assert "killed by SIGKILL" in error and "base model and the training set are unchanged" in error
    assert widget.run_bar.status.text().startswith("Failed:") and _gone(killed[0])
    assert _tree(tiny_model) == model_before and _tree(tiny_set) == set_before
    assert _no_new_model(tiny_model) and widget.new_model is None
    viewer.add_image(np.zeros((32, 32)))                 # napari is alive and working
    assert len(viewer.layers) == 1

    widget.steps_spin.setValue(3)
    _run(qtbot, widget)
    assert len(_errors(notifications)) == 1
    assert widget.new_model is not None and load_model(widget.new_model).card["training"]["steps"] == 3


def test_closing_the_dock_cancels_the_run(finetune, qtbot, tiny_model):
    viewer, widget = finetune
    pids = []

    def close():
        pids.append(widget.child.pid)
        viewer.window.remove_dock_widget(widget)

    _stop_at_train_step(qtbot, widget, close)
    assert widget.run_bar.status.text() == "Cancelled: no model was saved."
    assert _gone(pids[0]) and _no_new_model(tiny_model)


def test_empty_training_set_is_reported(finetune, tmp_path, notifications):
    viewer, widget = finetune
    widget.folder_edit.set_path(tmp_path / "nothing here")
    assert widget.set_label.text() == "0 examples · 0 objects"
    widget.run_bar.run_button.click()
    assert not widget.running
    [error] = _errors(notifications)
    assert "has no examples yet" in error and "Curate" in error


def test_engine_errors_are_reported(finetune, qtbot, tiny_model, tmp_path, notifications):
    viewer, widget = finetune
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_bytes((tiny_model / "model.json").read_bytes())
    (broken / "model.safetensors").write_bytes(b"garbage" * 10)
    widget.model_picker.set_model(broken)
    _run(qtbot, widget)
    [error] = _errors(notifications)
    assert "not a complete safetensors file" in error
    assert widget.run_bar.status.text().startswith("Failed:")
    assert not np.any([p.name.startswith("broken-ft") for p in tiny_model.parent.iterdir()])


def test_the_loss_axis_never_repeats_a_tick_label(qtbot):
    """Loss values close together (0.395-0.405) get as many decimals as their ticks need."""
    from napari_unet._widgets._plot import TrainingPlot

    plot = TrainingPlot()
    qtbot.addWidget(plot)
    for step, loss in enumerate(np.linspace(0.405, 0.395, 30), 1):
        plot.add_step(step, float(loss))
    plot.redraw()
    plot.canvas.draw()
    labels = [t.get_text() for t in plot._ax.get_yticklabels() if t.get_text()]
    assert len(labels) >= 3 and len(set(labels)) == len(labels), labels


def test_progress_label_says_what_the_percentage_counts(finetune, qtbot):
    """Steps set the bar unless the time limit runs out sooner; the label says which."""
    _, widget = finetune
    seen = []
    widget.run_bar.run_button.click()
    widget.jobs.worker.yielded.connect(
        lambda p: p is not None and p.stage == "train" and seen.append(widget.run_bar.bar.format()))
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert [f.split("·")[0].strip() for f in seen] == ["Step 1/3", "Step 2/3", "Step 3/3"]
    assert all(f.endswith("%p% of the steps") for f in seen)

    # 100000 steps in at most a minute: the time limit is what the bar measures
    widget.minutes_spin.setValue(1)
    formats = []

    def read_and_cancel():
        formats.append((widget.run_bar.bar.format(), widget.run_bar.bar.text()))
        widget.run_bar.cancel_button.click()

    _stop_at_train_step(qtbot, widget, read_and_cancel)
    [(fmt, text)] = formats
    assert fmt.startswith("Step 2/100000 · loss ") and fmt.endswith("%p% of the time limit")
    assert text.endswith("% of the time limit")


def test_train_progress_counts_the_time_limit_when_it_runs_out_first():
    from napari_unet._widgets._training import train_progress
    from unet_core import Progress
    from unet_core.progress import TrainStep
    from unet_core.training.config import FinetuneConfig

    config = FinetuneConfig(steps=100, max_seconds=10.0)
    p = Progress(1, 100, "train", TrainStep(1, 0.5, 1e-3))
    bar, text, of = train_progress(config, p, seconds=1.2)
    assert (bar.done, text, of) == (120, "Step 1/100 · loss 0.500", "the time limit")
    bar, _, of = train_progress(config, Progress(50, 100, "train", TrainStep(50, 0.5, 1e-3)), seconds=1.2)
    assert (bar.done, of) == (500, "the steps")


def test_export_button_writes_a_bioimageio_package(finetune, qtbot, tmp_path, monkeypatch,
                                                   notifications):
    pytest.importorskip("bioimageio.core")
    from bioimageio.spec import load_description
    from qtpy.QtWidgets import QFileDialog

    viewer, widget = finetune
    _run(qtbot, widget)
    assert widget.export_button.isVisibleTo(widget)
    out = tmp_path / "shared" / "fine-tuned"          # the .zip is added
    out.parent.mkdir()
    # the file dialog is the system's; the path typed into it is what comes back
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    widget.export_button.click()
    assert widget.export_jobs.running and not widget.run_bar.run_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.export_jobs.running, timeout=180_000)
    assert not _errors(notifications)
    status = widget.run_bar.status.text()
    assert status.startswith("Exported fine-tuned.zip") and "bioimageio.core test: passed" in status
    zip_path = out.with_suffix(".zip")
    assert load_description(zip_path).validation_summary.status == "valid-format"
    assert [p.name for p in out.parent.iterdir()] == ["fine-tuned.zip"]
    assert widget.run_bar.run_button.isEnabled()


def test_export_without_the_extra_names_the_pip_command(finetune, qtbot, monkeypatch, notifications):
    viewer, widget = finetune
    _run(qtbot, widget)
    # bioimageio.core not importable in this process (as where the extra is not installed)
    monkeypatch.setitem(sys.modules, "bioimageio.core", None)
    widget.export_button.click()
    assert not widget.export_jobs.running
    [error] = _errors(notifications)
    assert 'pip install "napari-nuclei-unet[bioimageio]"' in error
