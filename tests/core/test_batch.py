"""Folder processing: outputs, measurements, corrupt files, resume."""
import csv
import os

import numpy as np
import pytest
import tifffile

from unet_core import Predictor, run_to_end
from unet_core.data.synthetic import synthetic_nuclei
from unet_core.errors import InputError
from unet_core.scaleout.batch import STATUS_NAME, batch_iter
from unet_core.segmentation.measure import measure_objects


@pytest.fixture
def folder(tmp_path):
    """Three 64 px images, one of them a truncated (corrupt) TIFF."""
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        image, _ = synthetic_nuclei((64, 64), seed=k)
        tifffile.imwrite(src / f"img{k}.tif", image)
    data = (src / "img1.tif").read_bytes()
    (src / "img1.tif").write_bytes(data[:200])
    (src / "notes.txt").write_text("not an image")
    return src


def _run(gen):
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return items, stop.value


def test_batch_writes_outputs_and_reports_corrupt_file(folder, tmp_path, saved_model):
    out = tmp_path / "out"
    items, report = _run(batch_iter(saved_model, folder, out, outputs=("labels", "prob", "csv"),
                                    device="cpu"))
    assert report.done == ["img0.tif", "img2.tif"]
    assert report.skipped == []
    [(name, msg)] = report.failed
    assert name == "img1.tif" and "corrupt" in msg and "img1.tif" in msg
    per_file = [p for p in items if p.stage == "batch"]
    assert [(p.done, p.total, p.info.status) for p in per_file] == \
        [(1, 3, "done"), (2, 3, "failed"), (3, 3, "done")]
    assert per_file[1].info.error == msg
    assert any(p.stage == "file" for p in items)
    for stem in ("img0", "img2"):
        labels = tifffile.imread(out / f"{stem}_labels.tif")
        assert labels.shape == (64, 64) and labels.dtype == np.uint32
        prob = tifffile.imread(out / f"{stem}_prob.tif")
        assert prob.shape == (2, 64, 64) and prob.dtype == np.float32
        with open(out / f"{stem}_objects.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == labels.max()
        if rows:
            assert {"label", "area", "centroid_y", "centroid_x", "bbox_max_x", "intensity_mean",
                    "eccentricity", "equivalent_diameter_area"} <= set(rows[0])
    assert not (out / "img1_labels.tif").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    assert (out / STATUS_NAME).is_file()


def test_batch_resume_skips_finished_files(folder, tmp_path, saved_model):
    out = tmp_path / "out"
    pred = Predictor(saved_model, device="cpu")
    run_to_end(batch_iter(pred, folder, out))
    before = (out / "img0_labels.tif").stat().st_mtime_ns
    report = run_to_end(batch_iter(pred, folder, out))
    assert report.skipped == ["img0.tif", "img2.tif"]
    assert report.done == [] and [n for n, _ in report.failed] == ["img1.tif"]
    assert (out / "img0_labels.tif").stat().st_mtime_ns == before
    # a touched input with the same content is still skipped (resume is keyed on content)
    later = before + 10 ** 9
    os.utime(folder / "img2.tif", ns=(later, later))
    report = run_to_end(batch_iter(pred, folder, out))
    assert report.skipped == ["img0.tif", "img2.tif"]
    # a changed input is segmented again; so is everything without resume
    tifffile.imwrite(folder / "img2.tif", synthetic_nuclei((64, 64), seed=7)[0])
    report = run_to_end(batch_iter(pred, folder, out))
    assert report.done == ["img2.tif"] and report.skipped == ["img0.tif"]
    # another tiling (another result) is not the same job either
    report = run_to_end(batch_iter(Predictor(saved_model, device="cpu", tile=32), folder, out))
    assert report.done == ["img0.tif", "img2.tif"]
    report = run_to_end(batch_iter(pred, folder, out, resume=False))
    assert report.done == ["img0.tif", "img2.tif"]


def test_batch_missing_output_is_redone(folder, tmp_path, saved_model):
    out = tmp_path / "out"
    run_to_end(batch_iter(saved_model, folder, out, device="cpu"))
    (out / "img0_objects.csv").unlink()
    report = run_to_end(batch_iter(saved_model, folder, out, device="cpu"))
    assert report.done == ["img0.tif"] and report.skipped == ["img2.tif"]


def test_batch_cancel_leaves_no_partial_files(folder, tmp_path, saved_model):
    out = tmp_path / "out"
    gen = batch_iter(saved_model, folder, out, device="cpu")
    for p in gen:
        if p.stage == "batch":
            break
    gen.close()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["img0_labels.tif", "img0_objects.csv"]


def test_batch_bad_arguments(tmp_path, saved_model):
    with pytest.raises(InputError, match="not found"):
        run_to_end(batch_iter(saved_model, tmp_path / "nope", tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="No files match"):
        run_to_end(batch_iter(saved_model, tmp_path / "empty", tmp_path / "out"))
    with pytest.raises(InputError, match="outputs"):
        run_to_end(batch_iter(saved_model, tmp_path, tmp_path / "out", outputs=("mesh",)))


def test_measure_objects_rgb_and_stack():
    labels = np.zeros((32, 32), np.uint32)
    labels[4:10, 4:12] = 1
    labels[20:30, 15:20] = 2
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype(np.uint8)
    table = measure_objects(labels, rgb)
    assert list(table["label"]) == [1, 2] and list(table["area"]) == [48, 50]
    assert {"intensity_mean_ch0", "intensity_mean_ch2", "bbox_min_y", "bbox_max_x"} <= set(table)
    assert table["bbox_max_x"][0] == 12
    stack = np.stack([labels, np.where(labels > 0, labels + 2, 0)])
    table = measure_objects(stack, stack.astype(np.float32))
    assert len(table["label"]) == 4 and "centroid_z" in table and "eccentricity" not in table
