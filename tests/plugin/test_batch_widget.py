"""The Batch widget in a real viewer: outputs, a listed failure, resume."""
import pytest
import tifffile
from napari.utils.notifications import NotificationSeverity

from unet_core.data.synthetic import synthetic_nuclei

pytestmark = pytest.mark.gui


@pytest.fixture
def folder(tmp_path):
    """Three 64 px TIFFs; img1.tif is truncated (corrupt)."""
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        tifffile.imwrite(src / f"img{k}.tif", synthetic_nuclei((64, 64), seed=k)[0])
    (src / "img1.tif").write_bytes((src / "img1.tif").read_bytes()[:200])
    return src


@pytest.fixture
def batch(make_napari_viewer, tiny_model):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Batch")
    widget.model_picker.set_model(tiny_model)
    return widget


def _run(qtbot, widget):
    widget.run_bar.run_button.click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)


def test_batch_reports_failure_and_resumes(batch, folder, tmp_path, qtbot, notifications):
    out = tmp_path / "out"
    batch.input_edit.set_path(folder)
    batch.output_edit.set_path(out)
    batch.prob_check.setChecked(True)
    assert batch.outputs() == ("labels", "prob", "csv")
    _run(qtbot, batch)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "img0_labels.tif", "img0_objects.csv", "img0_prob.tif",
        "img2_labels.tif", "img2_objects.csv", "img2_prob.tif"]
    assert not list(out.glob("*.lock")) and not list(out.glob(".*.lock"))   # no lock left
    warnings = [n.message for n in notifications if n.severity == NotificationSeverity.WARNING]
    assert any("1 file failed" in m for m in warnings), warnings
    assert batch.counts_label.text() == "done 2  ·  skipped 0  ·  failed 1"
    assert batch.failed_list.count() == 1
    item = batch.failed_list.item(0).text()
    assert item.startswith("img1.tif: ") and "corrupt" in item
    assert "2 segmented, 0 skipped, 1 failed" in batch.run_bar.status.text()
    assert not [n for n in notifications if n.severity == NotificationSeverity.ERROR]

    _run(qtbot, batch)
    assert batch.counts_label.text() == "done 0  ·  skipped 2  ·  failed 1"
    assert batch.failed_list.count() == 1


def test_batch_bad_folder_is_reported(batch, tmp_path, qtbot, notifications):
    batch.input_edit.set_path(tmp_path / "missing")
    batch.output_edit.set_path(tmp_path / "out")
    _run(qtbot, batch)
    [error] = [n for n in notifications if n.severity == NotificationSeverity.ERROR]
    assert "Input folder not found" in error.message
    assert batch.run_bar.run_button.isEnabled()


def test_batch_needs_folders(batch, notifications):
    batch.run_bar.run_button.click()
    assert not batch.running
    assert [n.message for n in notifications] == ["Choose an input folder."]


def test_batch_uses_the_chosen_diameter_and_stain(batch, tmp_path, qtbot):
    """Nucleus size and stain reach every file; the status file records them."""
    import json

    from unet_core import load_model

    src = tmp_path / "bf"
    src.mkdir()
    image, _ = synthetic_nuclei((128, 128), seed=3, radius_range=(9.0, 11.0))
    tifffile.imwrite(src / "a.tif", image.max() - image)
    batch.model_picker.set_model(load_model("nuclei").path)
    assert not batch.scale.estimate_button.isVisibleTo(batch)   # no single image to estimate
    batch.input_edit.set_path(src)
    batch.output_edit.set_path(tmp_path / "out")
    batch.scale.diameter_spin.setValue(40.0)
    batch.scale.stain_combo.setCurrentText("brightfield")
    _run(qtbot, batch)
    status = json.loads((tmp_path / "out" / ".napari-unet-batch.json").read_text())
    settings = status["files"]["a.tif"]["settings"]
    assert settings["diameter"] == 40.0 and settings["stain"] == "brightfield"
    model_diameter = load_model("nuclei").card["diameter"]
    assert settings["scale"] == pytest.approx(model_diameter / 40.0, rel=1e-3)


def test_batch_on_a_local_dask_cluster(batch, folder, tmp_path, qtbot, notifications):
    """"Run on: local dask cluster" spreads the files over worker processes and gives
    the same files, labels and failure list as this machine."""
    import numpy as np

    batch.input_edit.set_path(folder)
    assert batch.scheduler() is None                  # default: this machine
    batch.output_edit.set_path(tmp_path / "here")
    _run(qtbot, batch)
    batch.scheduler_combo.setCurrentIndex(1)
    assert batch.scheduler() == "local"
    batch.output_edit.set_path(tmp_path / "cluster")
    _run(qtbot, batch)
    assert batch.counts_label.text() == "done 2  ·  skipped 0  ·  failed 1"
    assert batch.failed_list.item(0).text().startswith("img1.tif: ")
    for name in ("img0_labels.tif", "img2_labels.tif"):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "cluster" / name),
                                      tifffile.imread(tmp_path / "here" / name))
    assert not [n for n in notifications if n.severity == NotificationSeverity.ERROR]

    batch.scheduler_combo.setEditText("tcp://127.0.0.1:1")    # nobody listens there
    batch.output_edit.set_path(tmp_path / "nowhere")
    _run(qtbot, batch)
    assert "Cannot reach the dask scheduler" in batch.run_bar.status.text()


def test_batch_finds_every_input_the_command_line_finds(batch, tmp_path, qtbot):
    """By default the widget takes what ``napari-unet batch`` takes: TIFF, PNG and
    .zarr stores (one list of input suffixes), not only ``*.tif*``."""
    import imageio.v3 as iio
    import numpy as np
    import zarr

    src = tmp_path / "in"
    src.mkdir()
    images = [synthetic_nuclei((64, 64), seed=k)[0] for k in range(3)]
    tifffile.imwrite(src / "a.tif", images[0])
    iio.imwrite(src / "b.png", (images[1] // 256).astype(np.uint8))
    zarr.create_array(str(src / "c.zarr"), shape=(64, 64), dtype=images[2].dtype,
                      chunks=(32, 32))[...] = images[2]
    out = tmp_path / "out"
    batch.input_edit.set_path(src)
    batch.output_edit.set_path(out)
    _run(qtbot, batch)
    assert batch.counts_label.text() == "done 3  ·  skipped 0  ·  failed 0"
    assert {p.name for p in out.glob("*_labels.tif")} == {
        "a_labels.tif", "b_labels.tif", "c_labels.tif"}
