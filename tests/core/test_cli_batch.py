"""`napari-unet batch` in a real subprocess: failures, exit codes, resume, SIGKILL, lock."""
import csv
import json
import signal
import subprocess
import sys
import time

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

from unet_core.data.synthetic import synthetic_nuclei
from unet_core.files.safefiles import folder_lock
from unet_core.scaleout.batch import STATUS_NAME


def napari_unet(*args, **kw):
    return subprocess.run([sys.executable, "-m", "unet_core.commands.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture
def folder(tmp_path):
    """Good TIFFs, a PNG sharing a TIFF's stem, a truncated TIFF, a text file, and a
    zarr image segmented block by block."""
    src = tmp_path / "in"
    src.mkdir()
    for k in range(4):
        tifffile.imwrite(src / f"img{k}.tif", synthetic_nuclei((96, 96), seed=k)[0])
    iio.imwrite(src / "img0.png", (synthetic_nuclei((96, 96), seed=9)[0] // 256).astype(np.uint8))
    (src / "bad.tif").write_bytes((src / "img1.tif").read_bytes()[:300])
    (src / "notes.txt").write_text("not an image")
    zarr.create_array(str(src / "big.zarr"), data=synthetic_nuclei((192, 160), seed=5)[0],
                      chunks=(64, 64))
    return src


def check_outputs(out, stem, zarr_labels=False):
    if zarr_labels:
        labels = zarr.open_array(str(out / f"{stem}_labels.zarr"), mode="r")[:]
    else:
        labels = tifffile.imread(out / f"{stem}_labels.tif")
    with open(out / f"{stem}_objects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert labels.dtype == np.uint32
    assert sorted(int(r["label"]) for r in rows) == sorted(set(np.unique(labels)) - {0})


def test_batch_command_reports_failures_and_resumes(folder, tmp_path, saved_model):
    out = tmp_path / "out"
    run = napari_unet("batch", folder, "-o", out, "--model", saved_model, "--device", "cpu",
                      "--block", 64)
    assert run.returncode == 1, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("bad.tif: failed:"))
    assert "truncated or corrupt" in line
    assert "6 done, 0 skipped" in run.stdout and "1 failed" in run.stdout
    assert "bad.tif" in run.stderr.split("failed files:")[1]
    assert "Traceback" not in run.stderr
    for stem in ("img0_tif", "img0_png", "img1", "img2", "img3"):
        check_outputs(out, stem)
    check_outputs(out, "big")       # a small zarr image, block by block, TIFF out
    status = json.loads((out / STATUS_NAME).read_text())["files"]
    assert status["bad.tif"]["status"] == "failed" and status["img2.tif"]["status"] == "done"
    assert "notes.txt" not in status
    again = napari_unet("batch", folder, "-o", out, "--model", saved_model, "--device", "cpu",
                        "--block", 64)
    assert again.returncode == 1 and "0 done, 6 skipped" in again.stdout


def test_batch_killed_mid_run_then_rerun_is_complete(folder, tmp_path, saved_model):
    out = tmp_path / "out"
    for k in range(4, 10):
        tifffile.imwrite(folder / f"img{k}.tif", synthetic_nuclei((160, 160), seed=k)[0])
    args = [sys.executable, "-m", "unet_core.commands.cli", "batch", str(folder), "-o", str(out),
            "--model", str(saved_model), "--device", "cpu", "--block", 64]
    proc = subprocess.Popen(list(map(str, args)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        status = out / STATUS_NAME
        if status.exists() and len(json.loads(status.read_text())["files"]) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL       # killed mid-run, not finished
    # whatever the moment: every output present is complete, the status is valid JSON
    done_before = {k for k, v in json.loads((out / STATUS_NAME).read_text())["files"].items()
                   if v["status"] == "done"}
    assert done_before
    for p in out.glob("*_labels.tif"):
        tifffile.imread(p)
    rerun = napari_unet(*args[3:])
    assert rerun.returncode == 1, rerun.stderr
    files = json.loads((out / STATUS_NAME).read_text())["files"]
    assert {k for k, v in files.items() if v["status"] == "done"} == \
        set(files) - {"bad.tif"}
    for name in done_before:
        assert f"{name}: skipped" in rerun.stdout
    for k in range(10):
        check_outputs(out, "img0_tif" if k == 0 else f"img{k}")
    assert not [p for p in out.iterdir() if p.name.endswith(".part") or ".old" in p.name]


def test_second_batch_on_a_locked_folder_is_refused(folder, tmp_path, saved_model):
    out = tmp_path / "out"
    with folder_lock(out):
        run = napari_unet("batch", folder, "-o", out, "--model", saved_model)
    assert run.returncode == 2 and "Another batch is writing" in run.stderr
    assert "Traceback" not in run.stderr


def test_batch_help_names_the_cluster_options():
    run = napari_unet("batch", "--help")
    assert run.returncode == 0
    for option in ("--scheduler", "--workers", "--zarr", "--pattern", "--diameter", "--block"):
        assert option in run.stdout


def test_an_empty_zarr_folder_fails_alone(tmp_path, saved_model):
    """A folder holding an empty ``empty.zarr/`` next to a good image: the good one is
    segmented, the empty one is reported as failed with a message, no traceback."""
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "good.tif", synthetic_nuclei((96, 96), seed=1)[0])
    (src / "empty.zarr").mkdir()
    out = tmp_path / "out"
    run = napari_unet("batch", src, "-o", out, "--model", saved_model, "--device", "cpu")
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "1 done" in run.stdout and "1 failed" in run.stdout
    assert any(x.startswith("empty.zarr: failed:") for x in run.stdout.splitlines())
    check_outputs(out, "good")
