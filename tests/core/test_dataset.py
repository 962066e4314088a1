"""The training set on disk: atomic add / replace / remove, and broken examples reported."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from conftest import make_example
from unet_core.errors import InputError, UNetError
from unet_core.training import dataset as ds
from unet_core.training.dataset import TrainingSet, example_id, examples_from_folders


def files_of(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_add_list_load_roundtrip(tmp_path):
    ts = TrainingSet(tmp_path / "set")
    assert len(ts) == 0 and ts.load() == ([], [])
    img, lab = make_example(0)
    mask = np.zeros(lab.shape, bool)
    mask[:, :40] = True
    a = ts.add(img, lab, region_mask=mask, source="/data/cells.tif", region=(slice(0, 64), slice(0, 64)))
    b = ts.add(*make_example(1), source="/data/cells.tif", region=(0, 64, 64, 128))
    assert a != b and a.startswith("cells-") and len(ts) == 2 and a in ts
    records = {r["id"]: r for r in ts.list()}
    assert records[a]["region"] == [[0, 64], [0, 64]]
    assert records[a]["source"] == "/data/cells.tif" and records[a]["date"]
    assert records[a]["n_objects"] == len(np.unique(lab[mask])) - (lab[mask] == 0).any()
    assert ts.n_objects == sum(r["n_objects"] for r in records.values())
    examples, problems = ts.load()
    assert problems == [] and [e.id for e in examples] == sorted([a, b])
    ex = next(e for e in examples if e.id == a)
    assert ex.image.dtype == np.uint16 and np.array_equal(ex.image, img)
    assert ex.labels.dtype == np.uint32 and np.array_equal(ex.labels, lab)
    assert ex.mask.dtype == bool and np.array_equal(ex.mask, mask)
    # no temporary files are left behind
    assert not [f for f in files_of(ts.folder) if f.split("/")[-1].startswith(".")]


def test_same_source_and_region_replaces(tmp_path):
    ts = TrainingSet(tmp_path)
    img, lab = make_example(0)
    first = ts.add(img, lab, source="a.tif", region=[0, 0, 64, 64])
    lab2 = lab.copy()
    lab2[lab2 == 1] = 0
    second = ts.add(img, lab2, source="a.tif", region=[0, 0, 64, 64])
    assert first == second and len(ts) == 1
    (ex,), _ = ts.load()
    assert np.array_equal(ex.labels, lab2)
    # the old revision's files are gone: one image, labels, mask and record
    assert len(files_of(ts.folder / first)) == 4
    assert example_id("a.tif", [0, 0, 64, 64]) == first
    # without a source the id follows the image content
    assert ts.add(img, lab) == ts.add(img, lab2) != ts.add(make_example(5)[0], lab)


def test_interrupted_replace_keeps_previous_example(tmp_path, monkeypatch):
    ts = TrainingSet(tmp_path)
    img, lab = make_example(0)
    ex_id = ts.add(img, lab, source="a.tif", region=1)
    calls = []

    def failing_write(path, data, **kw):
        calls.append(path)
        if len(calls) == 2:  # die while writing the new labels
            raise OSError("disk full")
        return tifffile.imwrite(path, data)

    monkeypatch.setattr(ds, "write_tiff", failing_write)
    with pytest.raises(OSError):
        ts.add(img, np.zeros_like(lab), source="a.tif", region=1)
    monkeypatch.undo()
    (ex,), problems = ts.load()
    assert problems == [] and ex.id == ex_id and np.array_equal(ex.labels, lab)
    # an add that never wrote its record is not an example
    (ts.folder / "half").mkdir()
    tifffile.imwrite(ts.folder / "half" / "image-x.tif", img)
    assert len(ts) == 1 and len(ts.load()[0]) == 1
    # the next successful add cleans up the stray files of the failed one
    assert len(files_of(ts.folder / ex_id)) == 5  # old revision + the new, orphaned image
    ts.add(img, lab, source="a.tif", region=1)
    assert len(files_of(ts.folder / ex_id)) == 4


def test_remove(tmp_path):
    ts = TrainingSet(tmp_path)
    a = ts.add(*make_example(0), source="a.tif")
    b = ts.add(*make_example(1), source="b.tif")
    ts.remove(a)
    assert ts.ids() == [b] and not (tmp_path / a).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(InputError, match="no example"):
        ts.remove(a)


def test_broken_examples_are_reported_and_the_rest_used(tmp_path):
    ts = TrainingSet(tmp_path)
    ids = [ts.add(*make_example(i), source=f"img{i}.tif") for i in range(5)]
    rec = lambda i: json.loads((tmp_path / ids[i] / "example.json").read_text())  # noqa: E731
    # 0: corrupt image bytes
    (tmp_path / ids[0] / rec(0)["files"]["image"]).write_bytes(b"II*\x00garbage" * 10)
    # 1: labels of the wrong shape
    tifffile.imwrite(tmp_path / ids[1] / rec(1)["files"]["labels"], np.zeros((10, 12), np.uint32))
    # 2: a missing file
    (tmp_path / ids[2] / rec(2)["files"]["mask"]).unlink()
    # 3: a damaged record
    (tmp_path / ids[3] / "example.json").write_text("{not json")
    examples, problems = ts.load()
    assert [e.id for e in examples] == [ids[4]]
    msgs = dict(problems)
    assert set(msgs) == set(ids[:4])
    assert "corrupt" in msgs[ids[0]]
    assert "shape" in msgs[ids[1]] and "(10, 12)" in msgs[ids[1]]
    assert "not found" in msgs[ids[2]]
    assert "unreadable" in msgs[ids[3]]
    with pytest.raises(UNetError):
        ts.load(on_error="raise")


def test_bad_input_is_refused(tmp_path):
    ts = TrainingSet(tmp_path)
    img, lab = make_example(0)
    with pytest.raises(InputError, match="shape"):
        ts.add(img, lab[:32])
    with pytest.raises(InputError, match="integers"):
        ts.add(img, lab.astype(np.float32))
    with pytest.raises(InputError, match="empty"):
        ts.add(img, lab, region_mask=np.zeros(lab.shape, bool))
    with pytest.raises(InputError, match="stack|plane"):
        ts.add(np.zeros((5, 64, 64), np.uint16), lab)
    assert len(ts) == 0


def test_examples_from_folders(tmp_path):
    images, labels, regions = (tmp_path / d for d in ("images", "labels", "regions"))
    for d in (images, labels, regions):
        d.mkdir()
    for i in range(3):
        img, lab = make_example(i)
        tifffile.imwrite(images / f"s{i}.tif", img)
        tifffile.imwrite(labels / f"s{i}_labels.tif", lab)
    mask = np.zeros((64, 64), np.uint8)
    mask[:32] = 1
    tifffile.imwrite(regions / "s0.tif", mask)
    tifffile.imwrite(images / "nolabels.tif", make_example(9)[0])
    (images / "s2.tif").write_bytes(b"not a tiff at all")
    tifffile.imwrite(labels / "orphan_labels.tif", make_example(9)[1])
    examples, problems = examples_from_folders(images, labels, regions)
    assert [e.id for e in examples] == ["s0", "s1"]
    assert examples[0].mask.sum() == 32 * 64 and examples[1].mask.all()
    assert examples[0].labels.dtype == np.uint32
    assert {name for name, _ in problems} == {"nolabels", "s2", "orphan"}
