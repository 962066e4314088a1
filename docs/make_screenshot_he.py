"""The README's H&E screenshot: the Segment widget with its defaults on a tissue field.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot_he.py [IMAGE]

IMAGE defaults to a MoNuSeg 2018 H&E field of the shared real data
(``../shared/data/nuclei-real``, CC BY-NC-SA 4.0; Kumar et al., IEEE TMI 2017), which
is read there and never copied into the repository.  Writes ``docs/images/segment_he.png``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import napari
import tifffile
from make_screenshots import OUT, _wait

DEFAULT = (Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei-real"
           / "he_monuseg_breast_A7A13E_img.tif")


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    import napari._qt.qt_main_window as qt_main_window

    qt_main_window.SHOW_QT_WARNING = False
    viewer = napari.Viewer()
    viewer.window.resize(1500, 900)
    viewer.add_image(tifffile.imread(path), name="H&E breast tissue", rgb=True)
    _, seg = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Segment")
    seg.image_combo.setCurrentText("H&E breast tissue")
    seg.run_bar.run_button.click()
    _wait(seg)
    labels = viewer.layers["H&E breast tissue labels"]
    labels.contour = 2
    viewer.camera.zoom *= 1.0
    OUT.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(OUT / "segment_he.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main()
