"""The napari-unet command on real files."""
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from skimage.draw import disk

from unet_core.commands.cli import main


def _nuclei(seed, shape=(96, 128)):
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint32)
    for i in range(1, 6):
        rr, cc = disk((rng.integers(15, shape[0] - 15), rng.integers(15, shape[1] - 15)), 9, shape=shape)
        lab[rr, cc] = i
    img = (lab > 0) * 1000 + rng.poisson(100, shape)
    return img.astype(np.uint16), lab


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(2):
        tifffile.imwrite(d / f"img{i}.tif", _nuclei(i)[0])
    (d / "broken.tif").write_bytes(b"II*\x00garbage" * 10)
    return d


def test_help_everywhere():
    for args in ([], ["predict"], ["evaluate"], ["models"], ["sample"], ["train"], ["finetune"]):
        out = subprocess.run([sys.executable, "-m", "unet_core.commands.cli", *args, "--help"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "usage: napari-unet" in out.stdout


def test_predict_writes_outputs_and_reports_failures(images, saved_model, tmp_path, capsys):
    out = tmp_path / "out"
    good = [str(images / "img0.tif"), str(images / "img1.tif")]
    assert main(["predict", *good, "-o", str(out), "--model", str(saved_model), "--prob",
                 "--device", "cpu", "--tile", "32"]) == 0
    lab = tifffile.imread(out / "img0_labels.tif")
    prob = tifffile.imread(out / "img0_prob.tif")
    assert lab.shape == (96, 128) and lab.dtype == np.uint32 and prob.shape == (2, 96, 128)
    rc = main(["predict", *good, str(images / "broken.tif"), str(images / "missing.tif"), "-o", str(out),
               "--model", str(saved_model), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.tif: FAILED" in err and "corrupt" in err and "not found" in err
    assert not (out / "broken_labels.tif").exists() and not list(out.glob("*.part"))


def test_predict_bad_model_exit_2(images, tmp_path, capsys):
    assert main(["predict", str(images / "img0.tif"), "-o", str(tmp_path), "--model", "nope"]) == 2
    assert "No model named 'nope'" in capsys.readouterr().err


def test_evaluate(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    for i in range(2):
        lab = _nuclei(i)[1]
        tifffile.imwrite(truth / f"img{i}.tif", lab)
        tifffile.imwrite(pred / f"img{i}_labels.tif", lab if i == 0 else np.zeros_like(lab))
    assert main(["evaluate", "--labels", str(pred), "--truth", str(truth)]) == 0
    out = capsys.readouterr().out
    assert "img0" in out and "1.000" in out and "overall" in out and "0.500" in out
    assert main(["evaluate", "--labels", str(tmp_path / "x"), "--truth", str(truth)]) == 2


def test_models_lists(capsys):
    assert main(["models"]) == 0
    assert "user models go in" in capsys.readouterr().out


def test_sample_then_predict_then_evaluate(tmp_path, saved_model, capsys):
    assert main(["sample", "-o", str(tmp_path / "s"), "--size", "96", "--count", "2"]) == 0
    imgs = sorted((tmp_path / "s").glob("*.tif"))
    assert [p.name for p in imgs] == ["nuclei_01.tif", "nuclei_02.tif"]
    assert tifffile.imread(imgs[0]).dtype == np.uint16
    assert main(["predict", *map(str, imgs), "-o", str(tmp_path / "o"), "--model", str(saved_model),
                 "--device", "cpu"]) == 0
    assert main(["evaluate", "--labels", str(tmp_path / "o"), "--truth", str(tmp_path / "s" / "truth")]) == 0
    assert "nuclei_02" in capsys.readouterr().out


def test_settings_that_mean_nothing_are_refused_with_a_reason(images, tmp_path, capsys,
                                                               saved_model):
    """--batch-size 0 or -1, --diameter 0 (not a size; 'none' says image scale) and a batch
    output that is a file: exit 2, a line saying what was wrong, nothing written."""
    src = images / "img0.tif"
    out = tmp_path / "out"
    for bad in (["--batch-size", "0"], ["--batch-size", "-1"]):
        with pytest.raises(SystemExit) as stop:
            main(["predict", str(src), "-o", str(out), *bad])
        assert stop.value.code == 2 and "must be >= 1" in capsys.readouterr().err
    assert main(["predict", str(src), "-o", str(out), "--model", str(saved_model),
                 "--diameter", "0"]) == 2
    err = capsys.readouterr().err
    assert "diameter 0 px is outside" in err and "'none'" in err
    assert not out.exists() or not any(out.iterdir())
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep me")
    assert main(["batch", str(src.parent), "-o", str(a_file), "--model", str(saved_model)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
