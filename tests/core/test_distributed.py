"""dask.distributed backend on a real LocalCluster (2 workers, 1 thread each)."""
import sys

import numpy as np
import pytest
import tifffile
import zarr

from unet_core import Predictor, run_to_end
from unet_core.data.synthetic import synthetic_nuclei
from unet_core.scaleout.batch import batch_iter
from unet_core.scaleout.large import segment_file_iter

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from unet_core.scaleout.distributed import close_client, make_client

    c = make_client("local", workers=2)
    yield c
    close_client(c)


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(4):
        tifffile.imwrite(src / f"img{k}.tif", synthetic_nuclei((96, 96), seed=k)[0])
    (src / "bad.tif").write_bytes(b"II*\x00 not really a tiff")
    zarr.create_array(str(src / "big.zarr"), data=synthetic_nuclei((192, 160), seed=5)[0],
                      chunks=(64, 64))
    return src


def _workers_state(client):
    def state():
        from unet_core.scaleout import distributed

        gui = [m for m in sys.modules if m.split(".")[0] in ("qtpy", "napari", "PyQt5", "PyQt6",
                                                              "magicgui", "superqt")]
        return len(distributed._PREDICTORS), gui

    return client.run(state)


def test_cluster_batch_equals_local_batch(client, folder, tmp_path, saved_model):
    pred = Predictor(saved_model, device="cpu")
    local = run_to_end(batch_iter(pred, folder, tmp_path / "local", block=64))
    remote = run_to_end(batch_iter(pred, folder, tmp_path / "remote", block=64, client=client))
    assert sorted(local.done) == sorted(remote.done) == \
        ["big.zarr", "img0.tif", "img1.tif", "img2.tif", "img3.tif"]
    assert [n for n, _ in remote.failed] == ["bad.tif"]
    assert "corrupt" in dict(remote.failed)["bad.tif"]
    for stem in ("img0", "img1", "img2", "img3", "big"):
        a = tifffile.imread(tmp_path / "local" / f"{stem}_labels.tif")
        b = tifffile.imread(tmp_path / "remote" / f"{stem}_labels.tif")
        np.testing.assert_array_equal(a, b)
        assert (tmp_path / "remote" / f"{stem}_objects.csv").read_text() == \
            (tmp_path / "local" / f"{stem}_objects.csv").read_text()
    # the model was loaded once per worker; no Qt or napari there
    for n_models, gui in _workers_state(client).values():
        assert n_models == 1 and gui == []


def test_one_image_split_over_workers_equals_local(client, tmp_path, saved_model):
    image = synthetic_nuclei((256, 224), seed=11)[0]
    src = tmp_path / "one.zarr"
    zarr.create_array(str(src), data=image, chunks=(64, 64))
    pred = Predictor(saved_model, device="cpu")
    from unet_core.scaleout.distributed import predictor_spec

    out_l = {"labels": tmp_path / "l_labels.zarr", "prob": tmp_path / "l_prob.zarr"}
    out_r = {"labels": tmp_path / "r_labels.zarr", "prob": tmp_path / "r_prob.zarr"}
    run_to_end(segment_file_iter(pred, src, out_l, block=64))
    res = run_to_end(segment_file_iter(pred, src, out_r, block=64, client=client,
                                       model_spec=predictor_spec(pred)))
    la = zarr.open_array(str(out_l["labels"]), mode="r")[:]
    lb = zarr.open_array(str(out_r["labels"]), mode="r")[:]
    np.testing.assert_array_equal(la, lb)
    assert res["objects"] == len(np.unique(lb)) - 1
    # equal up to float rounding (1 thread per worker, 2 here)
    np.testing.assert_allclose(zarr.open_array(str(out_l["prob"]))[:],
                               zarr.open_array(str(out_r["prob"]))[:], atol=1e-6)
