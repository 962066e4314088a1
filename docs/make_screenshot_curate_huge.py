"""Screenshot: Curate on a huge zarr layer with an empty review-region layer, or with
one rectangle around most of the image (``--too-large``): refused before anything is read.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot_curate_huge.py \
        docs/images/curate_huge_no_region.png [--too-large]
"""
import sys
import tempfile
from pathlib import Path

import napari
import numpy as np
import zarr
from qtpy.QtWidgets import QApplication

from unet_core.data.synthetic import synthetic_nuclei


def main(out: str, too_large: bool = False) -> None:
    tmp = Path(tempfile.mkdtemp())
    big = zarr.create_array(str(tmp / "big.zarr"), shape=(6000, 5000), dtype=np.uint16,
                            chunks=(1000, 1000), fill_value=0)
    lab = zarr.create_array(str(tmp / "lab.zarr"), shape=(6000, 5000), dtype=np.uint32,
                            chunks=(1000, 1000), fill_value=0)
    image, labels = synthetic_nuclei((1024, 1024), seed=5)
    big[2000:3024, 1000:2024], lab[2000:3024, 1000:2024] = image, labels
    viewer = napari.Viewer()
    viewer.window.resize(1400, 900)
    viewer.add_image(big, name="big", contrast_limits=(0, 4000))
    viewer.add_labels(lab, name="big labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Curate")
    widget.folder_edit.set_path(tmp / "set")
    widget.new_region_button.click()
    if too_large:
        viewer.layers["big reviewed regions"].add_rectangles(
            np.array([[100, 100], [5900, 4900]], float))
    widget.add_button.click()
    for _ in range(30):
        QApplication.processEvents()
    viewer.screenshot(path=out, canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1], "--too-large" in sys.argv[2:])
