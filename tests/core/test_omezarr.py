"""Labels of OME-Zarr inputs go into the image's own labels/ group (OME-NGFF)."""
import json

import numpy as np
import pytest
import tifffile
import zarr

from unet_core import Predictor, run_to_end
from unet_core.data.synthetic import synthetic_nuclei
from unet_core.files.lazyio import open_image
from unet_core.scaleout.batch import batch_iter


def ome_image(path, image, fmt: int, scale=(0.5, 0.25)):
    """A (1, Y, X) OME-Zarr image of NGFF 0.4 (zarr v2) or 0.5 (zarr v3)."""
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    root.create_array("0", data=image[None])
    ms = [{"axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
                    {"name": "x", "type": "space"}],
           "datasets": [{"path": "0", "coordinateTransformations": [
               {"type": "scale", "scale": [1.0, *scale]}]}]}]
    if fmt == 2:
        ms[0]["version"] = "0.4"
        root.attrs["multiscales"] = ms
    else:
        root.attrs["ome"] = {"version": "0.5", "multiscales": ms}
    return path


@pytest.mark.parametrize("fmt", [2, 3])
def test_batch_writes_ngff_labels_into_an_ome_zarr_input(tmp_path, saved_model, fmt):
    image, _ = synthetic_nuclei((300, 300), seed=4)
    src = tmp_path / "in"
    src.mkdir()
    ome_image(src / "plate.zarr", (image * 1000).astype(np.uint16), fmt)
    tifffile.imwrite(src / "plain.tif", (image * 1000).astype(np.uint16))
    pred = Predictor(saved_model, device="cpu", diameter=None)
    report = run_to_end(batch_iter(pred, src, tmp_path / "out"))
    assert sorted(report.done) == ["plain.tif", "plate.zarr"]

    where = src / "plate.zarr" / "labels" / "nuclei"
    labels = open_image(where)                        # read back as an OME-Zarr image
    assert labels.ome and labels.scale == (0.5, 0.25)
    np.testing.assert_array_equal(np.asarray(labels.data),
                                  tifffile.imread(tmp_path / "out" / "plate_labels.tif"))
    group = zarr.open_group(str(where), mode="r")
    meta = dict(group.attrs) if fmt == 2 else group.attrs["ome"]
    assert meta["image-label"]["source"]["image"] == "../../"
    scales = [d["coordinateTransformations"][0]["scale"] for d in meta["multiscales"][0]["datasets"]]
    assert scales[:2] == [[0.5, 0.25], [1.0, 0.5]]           # a pyramid, in the image's units
    root = zarr.open_group(str(src / "plate.zarr" / "labels"), mode="r")
    assert (root.attrs["labels"] if fmt == 2 else root.attrs["ome"]["labels"]) == ["nuclei"]
    assert not list((src / "plate.zarr" / "labels").glob(".*part"))
    assert not (src / "labels").exists()                          # only OME-Zarr inputs
    status = json.loads((tmp_path / "out" / ".napari-unet-batch.json").read_text())
    assert status["files"]["plate.zarr"]["ome_labels"] == str(where)

    # the labels written into the input do not make the input look changed
    again = run_to_end(batch_iter(pred, src, tmp_path / "out"))
    assert sorted(again.skipped) == ["plain.tif", "plate.zarr"]


def test_ome_labels_can_be_left_out(tmp_path, saved_model):
    image, _ = synthetic_nuclei((128, 128), seed=5)
    src = tmp_path / "in"
    src.mkdir()
    ome_image(src / "a.zarr", (image * 1000).astype(np.uint16), 2)
    pred = Predictor(saved_model, device="cpu", diameter=None)
    run_to_end(batch_iter(pred, src, tmp_path / "out", ome_labels=False))
    assert (tmp_path / "out" / "a_labels.tif").exists()
    assert not (src / "a.zarr" / "labels").exists()
