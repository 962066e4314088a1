"""The four docks together in a 1600 x 1000 window, with the sample image open.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot_docks.py

Writes ``docs/images/docks_together.png``: the window keeps the screen's height and each dock
scrolls inside itself.
"""
from __future__ import annotations

import time

import napari
from make_screenshots import OUT
from qtpy.QtWidgets import QApplication

DOCKS = ("Segment", "Curate", "Fine-tune", "Batch")


def main() -> None:
    import napari._qt.qt_main_window as qt_main_window

    qt_main_window.SHOW_QT_WARNING = False
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-nuclei-unet", "nuclei")
    for name in DOCKS:
        viewer.window.add_plugin_dock_widget("napari-nuclei-unet", name)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    OUT.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(OUT / "docks_together.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main()
