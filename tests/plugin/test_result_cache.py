"""Lazy results in the user cache live as long as a layer shows them."""
import os
import subprocess
import sys
import time

import pytest

from napari_unet._widgets._result_cache import LOCK_NAME, RESULT_KEY, remove_leftovers, results_root
from unet_core.data.synthetic import synthetic_nuclei

pytestmark = pytest.mark.gui


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return results_root()


def _run(qtbot, widget):
    widget.run_bar.run_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)


def test_a_result_folder_goes_when_no_layer_shows_it(make_napari_viewer, qtbot, tmp_path,
                                                    cache_home, tiny_model):
    import dask.array as da

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    widget.model_picker.set_model(tiny_model)
    viewer.add_image(da.from_array(synthetic_nuclei((160, 160), seed=2)[0], chunks=64), name="lazy")
    _run(qtbot, widget)
    first = viewer.layers["lazy labels"].metadata[RESULT_KEY]
    assert os.path.isdir(first) and first.startswith(str(cache_home))
    _run(qtbot, widget)                    # the new result replaces the layer's data
    second = viewer.layers["lazy labels"].metadata[RESULT_KEY]
    assert second != first and os.path.isdir(second)
    assert not os.path.exists(first)
    viewer.layers.remove("lazy labels")
    assert not os.path.exists(second)
    assert os.listdir(cache_home) == []


def _old_folder(root, name, lock=True, age_s=3600):
    folder = root / name
    folder.mkdir(parents=True)
    if lock:
        (folder / LOCK_NAME).touch()
    (folder / "labels.zarr").mkdir()
    past = time.time() - age_s
    os.utime(folder, (past, past))
    return folder


def test_leftovers_of_ended_sessions_are_removed_and_others_kept(cache_home, make_napari_viewer):
    dead = _old_folder(cache_home, "crashed-1")          # its process has gone: lock free
    alive = _old_folder(cache_home, "other-window-1")    # another napari is showing it
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(alive / LOCK_NAME)!r}, os.O_RDWR)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        new = cache_home / "made-just-now-1"            # newer than this process: not touched
        new.mkdir()
        # without a lock (an older version, maybe still running): only when a week old
        unlocked = _old_folder(cache_home, "unlocked-1", lock=False)
        stale = _old_folder(cache_home, "unlocked-2", lock=False, age_s=8 * 24 * 3600)
        assert remove_leftovers() == [dead, stale]
        assert alive.is_dir() and new.is_dir() and unlocked.is_dir()
    finally:
        holder.kill()
        holder.wait()
    # once the other window has closed, its folder is a leftover too; opening Segment
    # removes leftovers (once per process, in the background)
    from napari_unet._widgets import _result_cache

    _result_cache._swept.clear()
    viewer = make_napari_viewer()
    viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    deadline = time.time() + 10
    while alive.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not alive.exists() and new.is_dir()
    assert not dead.exists()
