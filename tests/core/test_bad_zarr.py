"""Damaged zarr stores, as a new user meets them: each bad input is named with what is
wrong, the other inputs are still segmented, and the run ends non-zero."""
import os

import numpy as np
import pytest
import zarr

from conftest import make_example
from unet_core.commands import cli
from unet_core.files.lazyio import open_image


def _zarr(path, image, chunks=(48, 48)):
    arr = zarr.create_array(str(path), shape=image.shape, dtype=image.dtype, chunks=chunks)
    arr[:] = image
    return path


def _garbage_chunk(tmp_path):
    bad = _zarr(tmp_path / "bad.zarr", make_example(1, 96)[0])
    (bad / "c" / "0" / "1").write_bytes(b"not a compressed chunk at all")
    return bad, "chunk of the zarr store is corrupt"


def _escaping_dataset(tmp_path):
    bad = tmp_path / "bad.zarr"
    group = zarr.open_group(str(bad), mode="w")
    group.create_array("0", data=make_example(1, 96)[0], chunks=(48, 48))
    group.attrs["ome"] = {"multiscales": [{"axes": [{"name": "y"}, {"name": "x"}],
                                           "datasets": [{"path": "../../../etc"}]}]}
    return bad, "dataset path '../../../etc'"


def _self_link(tmp_path):
    bad = tmp_path / "bad.zarr"
    os.symlink(bad.name, bad)
    return bad, "symbolic link that loops"


@pytest.mark.parametrize("make_bad", [_garbage_chunk, _escaping_dataset, _self_link])
def test_a_bad_zarr_fails_alone(make_bad, saved_model, tmp_path, capsys):
    bad, reason = make_bad(tmp_path)
    good = _zarr(tmp_path / "good.zarr", make_example(0, 96)[0])
    out = tmp_path / "out"
    rc = cli.main(["predict", str(bad), str(good), "-o", str(out), "--model", str(saved_model),
                   "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    assert "Traceback" not in captured.err
    line = next(s for s in captured.err.splitlines() if "bad.zarr: FAILED" in s)
    assert reason in line
    assert "good.zarr:" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["good_labels.tif"]


def test_a_missing_chunk_is_warned_about(saved_model, tmp_path, capsys):
    from unet_core.files.lazyio import MissingChunksWarning

    image = make_example(0, 96)[0]
    store = _zarr(tmp_path / "holes.zarr", image)
    for chunk in (store / "c" / "1").iterdir():       # a folder of chunks lost in a copy
        chunk.unlink()
    rc = cli.main(["predict", str(store), "-o", str(tmp_path / "out"), "--model", str(saved_model),
                   "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0 and "holes.zarr: 2 of its 4 chunks are missing; they read as 0" in err
    with pytest.warns(MissingChunksWarning, match=r"2 of its 4 chunks are missing"):
        open_image(store)


def test_a_5d_zarr_names_the_shapes_that_work(saved_model, tmp_path, capsys):
    store = _zarr(tmp_path / "five.zarr", np.ones((2, 2, 2, 40, 40), np.uint16), chunks=(1, 1, 1, 40, 40))
    rc = cli.main(["predict", str(store), "-o", str(tmp_path / "out"), "--model", str(saved_model),
                   "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "5-D" in err and "(H, W)" in err and "is a folder" not in err


def test_a_zarr_with_a_leading_axis_of_one_goes_block_by_block(tmp_path):
    """A (1, Y, X) store is the 2-D image it holds: large ones go block by block (read
    whole as a stack of one plane, 1e8 px ran out of memory after the network)."""
    from unet_core.scaleout.route import route

    store = _zarr(tmp_path / "one.zarr", make_example(0, 96)[0][None], chunks=(1, 48, 48))
    image = open_image(store)
    assert image.shape == (96, 96) and route(image).blocks
    np.testing.assert_array_equal(np.asarray(image.data[10:20, 30:40]), make_example(0, 96)[0][10:20, 30:40])
