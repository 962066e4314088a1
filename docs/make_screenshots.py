"""Make the README screenshots of the Segment and Batch widgets.

Run under a display (``xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py``).
Uses the bundled "nuclei" model when installed, otherwise a tiny random U-Net (whose
labels are then meaningless, but the widgets look the same).  Writes
``docs/images/segment.png``, ``docs/images/segment_diameter.png`` (large nuclei, the
estimated diameter filled in) and ``docs/images/batch.png``.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
import tifffile
import torch
from qtpy.QtWidgets import QApplication

from unet_core import UNet, UNetConfig, list_models, save_model
from unet_core.data.synthetic import synthetic_nuclei

OUT = Path(__file__).resolve().parent / "images"
log = logging.getLogger("make_screenshots")


def _wait(widget, timeout: float = 600.0) -> None:
    """Process Qt events until the widget's run is over."""
    app = QApplication.instance()
    end = time.monotonic() + timeout
    while widget.running and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(20):     # let the layers and the status line repaint
        app.processEvents()
        time.sleep(0.02)


def _model(tmp: Path) -> str:
    found = {m["name"]: str(m["path"]) for m in list_models()}
    if "nuclei" in found:
        return found["nuclei"]
    log.warning("no bundled 'nuclei' model: fitting a small demo U-Net for a minute")
    return str(save_model(_demo_net(), tmp / "demo", name="demo"))


def _demo_net(steps: int = 250) -> UNet:
    """A depth-3 U-Net fitted briefly to synthetic nuclei (foreground + boundary, BCE)."""
    from unet_core.inference.normalize import normalize
    from unet_core.segmentation.instances import labels_to_targets

    torch.manual_seed(0)
    net = UNet(UNetConfig(depth=3, base_filters=8))
    data = [synthetic_nuclei((128, 128), seed=k, radius_range=(5, 14)) for k in range(16)]
    x = torch.from_numpy(np.stack([normalize(im[..., None])[..., 0] for im, _ in data])[:, None])
    y = torch.from_numpy(np.stack([labels_to_targets(lab) for _, lab in data]))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(data), (4,))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    log.warning("demo U-Net: final loss %.3f", float(loss))
    return net.eval()


def _folder(tmp: Path) -> Path:
    """Four small images, one of them truncated, for the Batch screenshot."""
    src = tmp / "plate-03"
    src.mkdir()
    for k in range(4):
        tifffile.imwrite(src / f"well_B{k + 2:02d}.tif", synthetic_nuclei((256, 256), seed=k)[0])
    bad = src / "well_B03.tif"
    bad.write_bytes(bad.read_bytes()[:500])
    return src


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="napari-unet-shots-"))
    model = _model(tmp)
    # keep napari's PyQt5-deprecation toast (a notification, not a warning) out of the pictures
    import napari._qt.qt_main_window as qt_main_window

    qt_main_window.SHOW_QT_WARNING = False
    viewer = napari.Viewer()
    viewer.window.resize(1500, 900)
    viewer.open_sample("napari-nuclei-unet", "nuclei")

    _, seg = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    seg.model_picker.set_model(model)
    seg.image_combo.setCurrentText("synthetic nuclei")
    seg.run_bar.run_button.click()
    _wait(seg)
    viewer.screenshot(path=str(OUT / "segment.png"), canvas_only=False)

    # nuclei three times the size the model was trained at: Estimate finds their size,
    # and the run resamples the image to the model's size and back
    big, _ = synthetic_nuclei((768, 768), seed=31, radius_range=(26.0, 34.0), density=0.35,
                              haze=0.0)
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    viewer.add_image(big, name="large nuclei")
    seg.image_combo.setCurrentText("large nuclei")
    seg.scale.estimate_button.click()
    _wait(seg)
    seg.run_bar.run_button.click()
    _wait(seg)
    viewer.screenshot(path=str(OUT / "segment_diameter.png"), canvas_only=False)

    viewer.window.remove_dock_widget("all")
    _, batch = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Batch")
    batch.model_picker.set_model(model)
    batch.input_edit.set_path(_folder(tmp))
    batch.output_edit.set_path(tmp / "results")
    batch.run_bar.run_button.click()
    _wait(batch)
    viewer.screenshot(path=str(OUT / "batch.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main()
