"""The Fine-tune widget while it trains (the progress label says what its percentage
counts) and while it exports the new model for bioimage.io.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot_export.py

Fine-tunes the bundled "nuclei" model for a few steps on three synthetic examples in a
temporary training set, then exports it with "Export for bioimage.io..." into a temporary
folder (needs ``pip install "napari-nuclei-unet[bioimageio]"``).  Writes
``docs/images/finetune_progress.png`` and ``docs/images/finetune_export.png``.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

TMP = Path(tempfile.mkdtemp(prefix="napari-unet-shots-"))
os.environ["NAPARI_UNET_MODELS"] = str(TMP / "models")

import napari  # noqa: E402  (after the environment that points the plugin at TMP)
from make_screenshots import OUT  # noqa: E402
from make_screenshots_training import _settle  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from unet_core.data.synthetic import synthetic_nuclei  # noqa: E402
from unet_core.training.dataset import TrainingSet  # noqa: E402


def _until(condition, timeout: float = 900.0) -> None:
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        QApplication.instance().processEvents()
        time.sleep(0.02)


def main() -> None:
    import napari._qt.qt_main_window as qt_main_window

    ts = TrainingSet(TMP / "training-set")
    for k in range(3):
        image, labels = synthetic_nuclei((192, 192), seed=40 + k, radius_range=(9, 13))
        ts.add(image, labels, source=f"well B0{k + 2}")
    qt_main_window.SHOW_QT_WARNING = False    # keep napari's PyQt5 toast out of the pictures
    viewer = napari.Viewer()
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-nuclei-unet", "nuclei")
    _, tune = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Fine-tune")
    tune.model_picker.set_model("nuclei")
    tune.folder_edit.set_path(ts.folder)
    tune.steps_spin.setValue(12)
    tune.crop_spin.setValue(128)
    tune.batch_spin.setValue(2)
    tune.run_bar.run_button.click()
    _until(lambda: tune.plot._steps and tune.plot._steps[-1] >= 5)
    _settle(viewer, 0.3)
    viewer.screenshot(path=str(OUT / "finetune_progress.png"), canvas_only=False)
    _until(lambda: not tune.running)
    tune.export_button.export(path=str(TMP / f"{tune.new_model.name}.zip"))
    _until(lambda: tune.run_bar.bar.value() >= 600 or not tune.export_jobs.running)
    _settle(viewer, 0.5)
    viewer.screenshot(path=str(OUT / "finetune_export.png"), canvas_only=False)
    _until(lambda: not tune.export_jobs.running)
    print(tune.run_bar.status.text())
    viewer.close()


if __name__ == "__main__":
    main()
