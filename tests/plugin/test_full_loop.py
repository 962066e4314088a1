"""The whole loop through the manifest's widgets: segment, correct, curate, fine-tune,
segment with the new model, batch a folder."""
import pytest
import tifffile
from napari.utils.notifications import NotificationSeverity

from unet_core import load_model
from unet_core.data.synthetic import synthetic_nuclei
from unet_core.training.dataset import TrainingSet

pytestmark = pytest.mark.gui


def _dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-nuclei-unet", name)[1]


def _run(qtbot, widget, button=None):
    (button or widget.run_bar.run_button).click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)


def test_segment_correct_curate_finetune_segment_batch(make_napari_viewer, qtbot, tiny_model,
                                                        training_dir, tmp_path, one_thread,
                                                        notifications):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-nuclei-unet", "nuclei")

    # 1. segment the 512 px sample with the tiny model
    segment = _dock(viewer, "Segment")
    segment.model_picker.set_model(tiny_model)
    segment.image_combo.setCurrentText("synthetic nuclei")
    _run(qtbot, segment)
    labels = viewer.layers["synthetic nuclei labels"]

    # 2. correct: paint a new nucleus
    new_id = int(labels.data.max()) + 1
    labels.data[200:220, 300:322] = new_id
    labels.refresh()

    # 3. curate the corrected labels into the (default) training set
    curate = _dock(viewer, "Curate")
    assert curate.folder_edit.path() == str(training_dir)
    assert curate.image_combo.currentText() == "synthetic nuclei"
    assert curate.labels_combo.currentText() == "synthetic nuclei labels"  # not the hidden truth
    curate.add_button.click()
    [example] = TrainingSet(training_dir).load()[0]
    assert new_id in example.labels and example.image.shape == (512, 512)
    assert curate.example_list.count() == 1

    # 4. fine-tune a few steps on it
    finetune = _dock(viewer, "Fine-tune")
    finetune.model_picker.set_model(tiny_model)
    assert finetune.folder_edit.path() == str(training_dir)
    assert finetune.set_label.text().startswith("1 example · ")
    finetune.steps_spin.setValue(3)
    finetune.crop_spin.setValue(64)
    finetune.batch_spin.setValue(2)
    _run(qtbot, finetune)
    new_model = finetune.new_model
    assert load_model(new_model).card["parent"] == "tiny"

    # 5. switch Segment to the new model and segment again
    finetune.use_button.click()
    assert segment.model_picker.model_path() == str(new_model)
    before = labels.data
    _run(qtbot, segment)
    assert viewer.layers["synthetic nuclei labels"] is labels and labels.data is not before
    assert "synthetic nuclei labels" in viewer.layers and new_model.name in segment.run_bar.status.text()

    # 6. batch a folder of three images, one corrupt, with the new model; then resume
    src, out = tmp_path / "plate", tmp_path / "results"
    src.mkdir()
    for k in range(3):
        tifffile.imwrite(src / f"well{k}.tif", synthetic_nuclei((64, 64), seed=k)[0])
    (src / "well1.tif").write_bytes((src / "well1.tif").read_bytes()[:200])
    batch = _dock(viewer, "Batch")
    batch.model_picker.set_model(new_model)
    batch.input_edit.set_path(src)
    batch.output_edit.set_path(out)
    _run(qtbot, batch)
    assert sorted(p.name for p in out.glob("*_labels.tif")) == ["well0_labels.tif", "well2_labels.tif"]
    assert batch.failed_list.count() == 1 and batch.failed_list.item(0).text().startswith("well1.tif")
    _run(qtbot, batch)
    assert batch.counts_label.text() == "done 0  ·  skipped 2  ·  failed 1"
    assert not [n for n in notifications if n.severity == NotificationSeverity.ERROR]
