"""Make the README screenshots of the Curate and Fine-tune widgets (and Fine-tune's
"no improvement" outcome).

Run under a display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots_training.py

Segments the sample with the bundled "nuclei" model (or a small demo U-Net, see
make_screenshots.py), corrects a nucleus, adds three examples to a temporary training
set (one with a reviewed rectangle), then fine-tunes for a short while.  Writes
``docs/images/curate.png`` and ``docs/images/finetune.png``.  Models and the training
set go to a temporary folder, never to the per-user ones.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from make_screenshots import OUT, _model, _wait

TMP = Path(tempfile.mkdtemp(prefix="napari-unet-shots-"))
os.environ["NAPARI_UNET_MODELS"] = str(TMP / "models")
os.environ["NAPARI_UNET_TRAINING_SET"] = str(TMP / "training-set")

import napari  # noqa: E402  (after the environment that points the plugin at TMP)
from qtpy.QtWidgets import QApplication  # noqa: E402

from unet_core.data.synthetic import synthetic_nuclei  # noqa: E402


def _settle(viewer, seconds: float = 1.0) -> None:
    """Close napari's notification toasts, then process Qt events for a while so that
    layers and docks repaint."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.instance().processEvents()
        time.sleep(0.02)


def _curate(viewer, model: str) -> None:
    """Segment the sample, fix one nucleus, add it (a rectangle) and two whole images."""
    _, seg = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    seg.model_picker.set_model(model)
    for k, name in enumerate(("well B02", "well B04")):
        image, truth = synthetic_nuclei((256, 256), seed=20 + k)
        viewer.add_image(image, name=name)
        viewer.add_labels(truth.astype(np.uint32), name=f"{name} labels")
    viewer.layers.move(0, len(viewer.layers))      # the sample image on top of the list
    seg.image_combo.setCurrentText("synthetic nuclei")
    seg.run_bar.run_button.click()
    _wait(seg)
    labels = viewer.layers["synthetic nuclei labels"]
    yy, xx = np.ogrid[:512, :512]                             # "a nucleus the model missed"
    labels.data[(yy - 160) ** 2 + ((xx - 132) / 1.2) ** 2 < 12 ** 2] = labels.data.max() + 1
    labels.refresh()
    viewer.window.remove_dock_widget("all")

    _, curate = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Curate")
    for name in ("well B02", "well B04"):
        curate.image_combo.setCurrentText(name)
        curate.labels_combo.setCurrentText(f"{name} labels")
        curate.add_button.click()
    for name in ("well B02", "well B04", "well B02 labels", "well B04 labels"):
        viewer.layers[name].visible = False
    curate.image_combo.setCurrentText("synthetic nuclei")
    curate.labels_combo.setCurrentText("synthetic nuclei labels")
    curate.new_region_button.click()
    shapes = viewer.layers["synthetic nuclei reviewed regions"]
    shapes.add_rectangles(np.array([[40, 60], [300, 330]], float))
    shapes.mode = "select"
    curate.add_button.click()
    viewer.reset_view()
    _settle(viewer)
    viewer.screenshot(path=str(OUT / "curate.png"), canvas_only=False)
    viewer.window.remove_dock_widget("all")


def _finetune(viewer, model: str) -> None:
    _, tune = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Fine-tune")
    tune.model_picker.set_model(model)
    tune.steps_spin.setValue(60)
    tune.crop_spin.setValue(128)
    tune.batch_spin.setValue(4)
    tune.lr_combo.setCurrentText("3e-4")
    tune.run_bar.run_button.click()
    _wait(tune)
    _settle(viewer)
    viewer.screenshot(path=str(OUT / "finetune.png"), canvas_only=False)
    # a run too short to change anything: the widget says there was no improvement
    tune.steps_spin.setValue(1)
    tune.lr_combo.setCurrentIndex(tune.lr_combo.count() - 1)
    tune.run_bar.run_button.click()
    _wait(tune)
    _settle(viewer)
    viewer.screenshot(path=str(OUT / "finetune_no_improvement.png"), canvas_only=False)


def main() -> None:
    import napari._qt.qt_main_window as qt_main_window

    parser = argparse.ArgumentParser(description="Screenshots of Curate and Fine-tune")
    parser.add_argument("--model", help="model folder to segment and fine-tune (default: the "
                        "bundled 'nuclei', else a demo U-Net fitted for a minute)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    model = args.model or _model(TMP)
    qt_main_window.SHOW_QT_WARNING = False    # keep napari's PyQt5 toast out of the pictures
    viewer = napari.Viewer()
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-nuclei-unet", "nuclei")
    _curate(viewer, model)
    _finetune(viewer, model)
    viewer.close()


if __name__ == "__main__":
    main()
