"""Block-wise segmentation: one id per nucleus across block borders and corners, lazy
inputs, streamed outputs, resume after a stop."""
import csv
import json

import numpy as np
import pytest
import tifffile
import zarr
from skimage.draw import disk

from unet_core import ImageFileError, Predictor, load_model, run_to_end
from unet_core.files.lazyio import LazyImage, open_image
from unet_core.progress import BlockCount
from unet_core.scaleout.blockplan import BlockPlan, make_plan
from unet_core.scaleout.large import segment_file_iter
from unet_core.segmentation.measure import measure_objects


def match_ious(a: np.ndarray, b: np.ndarray):
    """Best IoU of each object of ``a`` in ``b`` and of each object of ``b`` in ``a``."""
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    inter = np.bincount(a.astype(np.int64).ravel() * nb + b.ravel(), minlength=na * nb)
    inter = inter.reshape(na, nb).astype(np.float64)
    sa, sb = np.bincount(a.ravel(), minlength=na), np.bincount(b.ravel(), minlength=nb)
    iou = inter / (sa[:, None] + sb[None, :] - inter + 1e-9)
    iou[0, :] = iou[:, 0] = 0
    return iou.max(1)[1:][sa[1:] > 0], iou.max(0)[1:][sb[1:] > 0]


@pytest.fixture(scope="module")
def pred():
    return Predictor(load_model("nuclei"), device="cpu")


def corner_image(size=384, block=128, r=9, seed=0):
    """Nuclei centred on block corners, on block edges and inside blocks (uint16)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.uint32)
    centres = [(y, x) for y in range(block, size, block) for x in range(block, size, block)]
    centres += [(block, 40), (40, block), (block + 1, 200), (250, 2 * block - 1), (300, 330)]
    centres += [(block - r - 1, 5 * block // 2), (block + r, 5 * block // 2)]   # touching, across
    for k, (y, x) in enumerate(centres):
        rr, cc = disk((y, x), r, shape=labels.shape)
        labels[rr, cc] = k + 1
    image = (labels > 0) * 900.0 + rng.normal(120, 25, labels.shape)
    return image.clip(0, 65535).astype(np.uint16), labels


def test_plan_windows_sit_on_the_pooling_grid(pred):
    plan = make_plan((1000, 700), pred.model.config, block=250, overlap=30)
    assert plan.overlap % 16 == 0 and plan.block % 16 == 0 and plan.context >= 94
    for ij in plan.blocks():
        y0, _, x0, _ = plan.window(*ij)
        assert y0 % 16 == 0 and x0 % 16 == 0
    assert BlockPlan((10, 10), 4, 2, 2).counts == (3, 3)


def test_block_labels_equal_whole_image_labels_at_corners(pred, tmp_path):
    image, truth = corner_image()
    whole = pred.segment(image)
    out = {"labels": tmp_path / "img_labels.zarr", "csv": tmp_path / "img_objects.csv"}
    res = run_to_end(segment_file_iter(pred, LazyImage(image), out, block=128, overlap=32))
    labels = zarr.open_array(str(out["labels"]), mode="r")[:]
    assert labels.shape == image.shape and labels.dtype == np.uint32
    assert res["clipped"] == 0 and res["objects"] == len(np.unique(labels)) - 1
    a, b = match_ious(whole, labels)
    assert len(a) == len(b) >= int(truth.max()) - 1
    assert (a >= 0.95).all() and (b >= 0.95).all()
    # no true nucleus, on block corners or edges, is split between ids
    for k in range(1, int(truth.max()) + 1):
        ids, counts = np.unique(labels[truth == k], return_counts=True)
        assert ids[np.argmax(counts)] > 0 and counts.max() >= 0.9 * counts.sum()
    # measurements merged from the blocks equal those of the whole labels
    with open(out["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    ref = measure_objects(labels, image)
    assert [int(r["label"]) for r in rows] == ref["label"].tolist()
    for col in ("area", "centroid_y", "centroid_x", "bbox_max_x", "intensity_mean", "solidity"):
        np.testing.assert_allclose([float(r[col]) for r in rows], ref[col], rtol=1e-5)
    assert not list(tmp_path.glob(".*.part"))


def test_tiff_read_by_window_and_tiff_output(pred, tmp_path, monkeypatch):
    import unet_core.files.lazyio as lazyio

    image, _ = corner_image(size=320, block=160, seed=1)
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, image, tile=(64, 64))
    monkeypatch.setattr(lazyio, "SMALL_PIXELS", 100 * 100)   # "large" for this test
    opened = open_image(src)
    assert not isinstance(opened.data, np.ndarray) and opened.shape == image.shape
    out = {"labels": tmp_path / "big_labels.tif", "prob": tmp_path / "big_prob.tif"}
    run_to_end(segment_file_iter(pred, opened, out, block=160, overlap=32))
    labels = tifffile.imread(out["labels"])
    a, b = match_ious(pred.segment(image), labels)
    assert (a >= 0.95).all() and (b >= 0.95).all()
    prob = tifffile.imread(out["prob"])
    np.testing.assert_allclose(prob, pred.predict(image), atol=2e-4)


def test_stopped_run_leaves_no_output_and_resumes(pred, tmp_path):
    image, _ = corner_image(size=256, block=128, seed=2)
    out = {"labels": tmp_path / "x_labels.zarr"}
    gen = segment_file_iter(pred, LazyImage(image), out, block=128, overlap=32)
    for p in gen:
        if p.stage == "predict" and p.done == 2:
            break
    gen.close()
    assert p.info == BlockCount(4) and p.total == 4
    assert not out["labels"].exists()
    work = tmp_path / ".x_labels.zarr.blocks.part"
    done = sorted(q.name for q in (work / "done").iterdir())
    assert done == ["0_0.json", "0_1.json"]
    stamps = {q.name: q.stat().st_mtime_ns for q in (work / "done").iterdir()}
    gen = segment_file_iter(pred, LazyImage(image), out, block=128, overlap=32)
    for p in gen:
        if p.stage == "instances":
            break
    # the two finished blocks were reused, not redone; the other two are new
    after = {q.name: q.stat().st_mtime_ns for q in (work / "done").iterdir()}
    assert len(after) == 4 and all(after[k] == v for k, v in stamps.items())
    run_to_end(gen)
    labels = zarr.open_array(str(out["labels"]), mode="r")[:]
    a, b = match_ious(pred.segment(image), labels)
    assert (a >= 0.95).all() and (b >= 0.95).all()
    assert not work.exists()
    assert json.loads((tmp_path / "x_labels.zarr" / "zarr.json").read_text())["shape"] == [256, 256]


def test_ome_zarr_level0_and_scale(tmp_path):
    root = zarr.open_group(str(tmp_path / "img.zarr"), mode="w")
    root.create_array("0", data=np.arange(64 * 48, dtype=np.uint16).reshape(1, 64, 48))
    root.create_array("1", data=np.zeros((1, 32, 24), np.uint16))
    root.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
        {"name": "x", "type": "space"}], "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.5, 0.25]}]},
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1, 1.0, 0.5]}]}]}]
    img = open_image(tmp_path / "img.zarr")
    assert img.shape == (64, 48) and img.scale == (0.5, 0.25) and img.ome
    assert np.asarray(img.data[2:4, 0:2]).tolist() == [[96, 97], [144, 145]]


def test_images_that_cannot_fit_are_refused_before_reading(tmp_path):
    for comp in ("zlib", None):
        path = tmp_path / f"huge_{comp}.tif"
        tifffile.imwrite(path, np.zeros((16, 16), np.uint8), compression=comp)
        with tifffile.TiffFile(path, mode="r+") as tif:
            tags = tif.pages[0].tags
            for name in ("ImageWidth", "ImageLength", "RowsPerStrip"):
                tags[name].overwrite(200000)
        with pytest.raises(ImageFileError, match=r"declares (an image of shape \(200000, 200000\)|200000 x 200000 px)"):
            open_image(path)


def test_blocks_in_threads_equal_blocks_one_after_another(pred, tmp_path):
    """Blocks segmented in threads (sharing the network under one lock, their
    watersheds side by side, as on a GPU) give the same labels, probabilities and
    table as one block after another; cancelling mid-run leaves no output."""
    image, _ = corner_image(size=384, block=128, seed=3)
    outs = {}
    for threads in (1, 3):
        out = {"labels": tmp_path / f"t{threads}_labels.zarr", "prob": tmp_path / f"t{threads}_prob.zarr",
               "csv": tmp_path / f"t{threads}_objects.csv"}
        res = run_to_end(segment_file_iter(pred, LazyImage(image), out, block=128, overlap=32,
                                           threads=threads))
        outs[threads] = (res, zarr.open_array(str(out["labels"]), mode="r")[:],
                         zarr.open_array(str(out["prob"]), mode="r")[:], out["csv"].read_text())
    (r1, l1, p1, c1), (r3, l3, p3, c3) = outs[1], outs[3]
    assert r1["objects"] == r3["objects"] >= 9
    np.testing.assert_array_equal(l1, l3)
    np.testing.assert_array_equal(p1, p3)
    assert c1 == c3
    out = {"labels": tmp_path / "stop_labels.zarr"}
    gen = segment_file_iter(pred, LazyImage(image), out, block=128, overlap=32, threads=3)
    for p in gen:
        if p.stage == "predict" and p.done == 2:
            break
    gen.close()
    assert not out["labels"].exists()


def test_large_inputs_with_one_stem_in_two_folders_get_distinct_outputs(tmp_path, monkeypatch,
                                                                         capsys):
    """``predict a/img.tif b/img.tif`` on images that go block by block: two results, named
    like the small-image path names them (parent folders added), neither lost."""
    import unet_core.files.lazyio as lazyio
    from unet_core.commands import cli

    monkeypatch.setattr(lazyio, "SMALL_PIXELS", 100 * 100)   # "large" for this test
    images = [corner_image(size=256, block=128, seed=s)[0] for s in (3, 4)]
    for folder, image in zip("ab", images):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "img.tif", image, tile=(64, 64))
    out = tmp_path / "out"
    assert cli.main(["predict", str(tmp_path / "a" / "img.tif"), str(tmp_path / "b" / "img.tif"),
                     "-o", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a_img_tif_labels.tif", "b_img_tif_labels.tif"], written
    first, second = (tifffile.imread(out / name) for name in written)
    assert not np.array_equal(first, second) and first.max() > 0 and second.max() > 0


def test_blocks_of_a_replaced_input_are_not_reused(pred, tmp_path, monkeypatch):
    """A run stopped after its first block, the input file replaced by another image of
    the same shape, then run again: the result is the new image's, not a mix."""
    import unet_core.files.lazyio as lazyio

    monkeypatch.setattr(lazyio, "SMALL_PIXELS", 100 * 100)   # read by window, as large files are
    pred = pred.with_options(diameter=18.0)   # the same settings for both images
    src = tmp_path / "x.tif"
    first, _ = corner_image(size=256, block=128, seed=2)
    tifffile.imwrite(src, first, tile=(64, 64))
    out = {"labels": tmp_path / "x_labels.tif"}
    gen = segment_file_iter(pred, src, out, block=128, overlap=32)
    for p in gen:
        if p.stage == "predict" and p.done == 2:
            break
    gen.close()
    assert len(list((tmp_path / ".x_labels.tif.blocks.part" / "done").iterdir())) == 2
    second = np.ascontiguousarray(first[::-1, ::-1])           # same shape, other content
    tifffile.imwrite(src, second, tile=(64, 64))
    run_to_end(segment_file_iter(pred, src, out, block=128, overlap=32))
    clean = {"labels": tmp_path / "clean_labels.tif"}
    (tmp_path / "clean.tif").write_bytes(src.read_bytes())
    run_to_end(segment_file_iter(pred, tmp_path / "clean.tif", clean, block=128, overlap=32))
    assert np.array_equal(tifffile.imread(out["labels"]) > 0, tifffile.imread(clean["labels"]) > 0)
