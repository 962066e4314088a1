"""Batch runs a new user may set up: an output folder inside the input folder, inputs
edited in place, cluster options that cannot work."""
import os

import numpy as np
import pytest
import tifffile

from unet_core import Predictor, run_to_end
from unet_core.commands import cli
from unet_core.data.synthetic import synthetic_nuclei
from unet_core.scaleout.batch import batch_iter


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    (src / "day1").mkdir(parents=True)
    for k, name in enumerate(("a.tif", "day1/b.tif")):
        tifffile.imwrite(src / name, synthetic_nuclei((64, 64), seed=k)[0])
    return src


def test_an_output_folder_inside_the_input_is_not_an_input(folder, saved_model):
    pred = Predictor(saved_model, device="cpu")
    out = folder / "out"
    first = run_to_end(batch_iter(pred, folder, out, pattern="**/*.tif"))
    assert first.done == ["a.tif", "day1/b.tif"]
    again = run_to_end(batch_iter(pred, folder, out, pattern="**/*.tif", resume=False))
    assert again.done == ["a.tif", "day1/b.tif"] and not again.failed    # not out/*_labels.tif
    assert not list(out.rglob("*_labels_labels*"))


def test_an_edit_that_keeps_size_and_time_is_seen(folder, tmp_path, saved_model):
    """An in-place edit followed by ``touch -r`` (same size, same mtime): the content
    changed, so the file is segmented again."""
    pred = Predictor(saved_model, device="cpu")
    out = tmp_path / "out"
    run_to_end(batch_iter(pred, folder, out))
    src = folder / "a.tif"
    st = src.stat()
    image = tifffile.imread(src)
    tifffile.imwrite(src, np.ascontiguousarray(image[::-1]))            # same size, new content
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert src.stat().st_size == st.st_size and src.stat().st_mtime_ns == st.st_mtime_ns
    report = run_to_end(batch_iter(pred, folder, out))
    assert report.done == ["a.tif"]


def test_a_scheduler_that_never_answers_is_named_within_seconds(folder, tmp_path, saved_model):
    import socket
    import subprocess
    import sys
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)                      # connections are accepted by the kernel, never answered
    port = silent.getsockname()[1]
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "unet_core.commands.cli", "batch", str(folder), "-o",
                               str(tmp_path / "out"), "--model", str(saved_model), "--device", "cpu",
                               "--scheduler", f"tcp://127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=120)
    finally:
        silent.close()
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - start < 60
    assert "Traceback" not in proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr and "does not answer" in proc.stderr


def test_negative_workers_are_refused(folder, tmp_path, saved_model, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["batch", str(folder), "-o", str(tmp_path / "out"), "--model", str(saved_model),
                  "--scheduler", "local", "--workers", "-1"])
    assert stop.value.code == 2 and "--workers: must be >= 1" in capsys.readouterr().err
