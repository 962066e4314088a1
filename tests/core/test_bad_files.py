"""Bad files and bad places, as a new user meets them: each gets a clear message, the
other inputs are still done, and nothing is lost or half-written."""
import os
import resource
import signal
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import make_example
from unet_core import ImageFileError, Predictor
from unet_core.commands import cli
from unet_core.files.fileio import read_image, write_tiff
from unet_core.files.inputs import ChannelOrderWarning
from unet_core.files.safefiles import atomic_write, sweep_parts
from unet_core.inference.normalize import NonFiniteWarning


def _declaring_tiff(path, width, height):
    """A 122-byte TIFF whose header declares ``width`` x ``height`` uint16 pixels."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 16), (259, 3, 1), (262, 3, 1),
               (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, (width * height * 2) & 0xFFFFFFFF)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", v, 0) if kind == 3 else struct.pack("<I", v))
        for tag, kind, v in entries) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd)
    return path


@pytest.fixture
def files(tmp_path):
    """good.tif, a truncated zlib TIFF (the project's own kind) and a 200000 px TIFF."""
    image, labels = make_example(0, 96)
    good = write_tiff(tmp_path / "good.tif", image)
    write_tiff(tmp_path / "labels.tif", labels)
    truncated = tmp_path / "bad.tif"
    truncated.write_bytes((tmp_path / "labels.tif").read_bytes()[:300])   # head -c
    return good, truncated, _declaring_tiff(tmp_path / "huge.tif", 200_000, 200_000)


def test_truncated_and_huge_tiffs_are_refused_with_a_reason(files):
    _, truncated, huge = files
    with pytest.raises(ImageFileError, match="truncated, corrupt"):
        read_image(truncated)
    assert huge.stat().st_size < 200
    with pytest.raises(ImageFileError, match=r"declares an image of shape \(200000, 200000\) \(74.5 GiB\)"):
        read_image(huge)       # refused from its header: nothing is allocated


def test_predict_goes_on_after_bad_files(files, saved_model, tmp_path, capsys):
    good, truncated, huge = files
    out = tmp_path / "out"
    rc = cli.main(["predict", str(truncated), str(huge), str(good), "-o", str(out),
                   "--model", str(saved_model), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "bad.tif: FAILED" in err and "huge.tif: FAILED" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["good_labels.tif"]   # the later input was done


def test_finetune_skips_a_truncated_training_image(files, saved_model, tmp_path, capsys):
    good, truncated, _ = files
    images, labels = tmp_path / "images", tmp_path / "labs"
    images.mkdir(), labels.mkdir()
    for k in range(3):
        image, lab = make_example(k, 64)
        write_tiff(images / f"s{k}.tif", image)
        write_tiff(labels / f"s{k}.tif", lab)
    (images / "s1.tif").write_bytes((images / "s1.tif").read_bytes()[:400])
    rc = cli.main(["finetune", "--images", str(images), "--labels", str(labels), "-o", str(tmp_path / "m"),
                   "--base", str(saved_model), "--steps", "1", "--crop", "64", "--batch-size", "1",
                   "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "s1: SKIPPED" in err and "truncated" in err
    assert (tmp_path / "m" / "model.json").exists()


def test_same_stems_do_not_overwrite_each_other(saved_model, tmp_path, capsys):
    (tmp_path / "day1").mkdir(), (tmp_path / "day2").mkdir()
    a, b = make_example(1, 64)[0], make_example(2, 64, n=6)[0]
    write_tiff(tmp_path / "day1" / "img.tif", a)
    write_tiff(tmp_path / "day2" / "img.tif", b)
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "day1" / "img.png", (a // 8).astype(np.uint8))
    inputs = [tmp_path / "day1" / "img.tif", tmp_path / "day2" / "img.tif", tmp_path / "day1" / "img.png"]
    out = tmp_path / "out"
    assert cli.main(["predict", *map(str, inputs), "-o", str(out), "--model", str(saved_model),
                     "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    written = sorted(p.name for p in out.iterdir())
    assert written == ["day1_img_tif_labels.tif", "day2_img_tif_labels.tif", "img_png_labels.tif"]
    assert captured.err.count("shares its name") == 3
    assert len({line.split("-> ")[1] for line in captured.out.splitlines()}) == 3


def test_output_that_is_a_file_is_exit_2_with_a_message(files, saved_model, tmp_path, capsys):
    good, _, _ = files
    target = tmp_path / "taken"
    target.write_text("not a folder")
    for args in (["predict", str(good), "-o", str(target), "--model", str(saved_model)],
                 ["sample", "-o", str(target)]):
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert "is a file, not a folder" in err and "Traceback" not in err
    assert target.read_text() == "not a folder"


def test_full_disk_is_reported_per_input_and_leaves_no_half_results(files, saved_model, tmp_path):
    """A file size limit (what a full disk looks like to the writer): labels fit, the
    probabilities do not; each input is reported, the later one is still tried."""
    good, _, _ = files
    second = write_tiff(tmp_path / "second.tif", make_example(3, 96)[0])
    out = tmp_path / "out"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run([sys.executable, "-m", "unet_core.commands.cli", "predict", str(good), str(second),
                           "-o", str(out), "--prob", "--model", str(saved_model), "--device", "cpu"],
                          capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "good.tif: FAILED: File too large" in proc.stderr and "second.tif: FAILED" in proc.stderr
    assert list(out.iterdir()) == []       # no labels without their probabilities, no .part


def test_temporary_files_of_killed_writers_are_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    with atomic_write(tmp_path / "a.tif") as tmp:
        host = tmp.name.split(".")[-4]
    left = tmp_path / f".b.tif.{host}.{dead}.x1y2z3.part"
    left.write_bytes(b"half")
    mine = tmp_path / f".c.tif.{host}.{os.getpid()}.q.part"      # a write in progress
    mine.write_bytes(b"busy")
    other_host = tmp_path / f".d.tif.elsewhere.{dead}.q.part"
    other_host.write_bytes(b"theirs")
    assert sweep_parts(tmp_path) == [left]
    assert mine.exists() and other_host.exists()


def test_written_files_get_the_usual_permissions(saved_model):
    modes = {p.name: p.stat().st_mode & 0o777 for p in saved_model.iterdir()}
    umask = os.umask(0)
    os.umask(umask)
    assert modes == {"model.json": 0o666 & ~umask, "model.safetensors": 0o666 & ~umask}


def test_infinite_pixels_warn_and_make_no_nucleus():
    """A block of +inf in the background of the sample image: a warning, and no nucleus
    there (a block of very bright pixels does make one: the test can tell)."""
    from scipy import ndimage as ndi

    from unet_core import load_model
    from unet_core.data.synthetic import SAMPLE_PARAMS, synthetic_nuclei

    image, truth = synthetic_nuclei((128, 128), seed=5, dtype="uint16", **SAMPLE_PARAMS)
    ys, xs = np.nonzero(ndi.binary_erosion(truth == 0, np.ones((25, 25))))
    block = np.s_[ys[len(ys) // 2] - 6:ys[len(ys) // 2] + 6, xs[len(xs) // 2] - 6:xs[len(xs) // 2] + 6]
    pred = Predictor(load_model("nuclei"), device="cpu")
    image = image.astype(np.float32)
    image[block] = 3.0 * image.max()
    assert pred.segment(image)[block].any()
    image[block] = np.inf
    with pytest.warns(NonFiniteWarning, match="not finite"):
        labels = pred.segment(image)
    assert not labels[block].any()


def test_channel_first_colour_is_named(saved_model):
    from unet_core import load_model

    pred = Predictor(load_model(saved_model), device="cpu")
    with pytest.warns(ChannelOrderWarning, match=r"moveaxis"):
        assert pred.predict(np.zeros((3, 64, 64), np.uint8)).shape[0] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChannelOrderWarning)
        pred.predict(np.zeros((5, 64, 64), np.uint8))         # a stack of 5: no question


def test_training_labels_with_huge_ids_train_without_renumbering_by_hand(saved_model, tmp_path):
    """Ids of 3e9 (and beyond uint32) are fine: targets are indexed by rank, and ids too
    large for uint32 are renumbered, never wrapped onto other objects."""
    from unet_core.segmentation.instances import labels_to_targets
    from unet_core.training import finetune
    from unet_core.training.dataset import uint32_ids

    image, labels = make_example(0, 64)
    huge = np.where(labels > 0, labels.astype(np.uint64) + 3_000_000_000, 0)
    np.testing.assert_array_equal(labels_to_targets(huge), labels_to_targets(labels))
    beyond = np.where(labels > 0, labels.astype(np.uint64) * 2**32, 0)
    assert len(np.unique(uint32_ids(beyond))) == len(np.unique(labels))
    result = finetune(str(saved_model), [(image, huge), (image, beyond)], tmp_path / "m", steps=1,
                      crop=64, batch_size=1, val_fraction=0.0, device="cpu")
    assert result.train.step == 1


def test_an_unreadable_file_is_named_by_its_format_not_its_content(tmp_path, capsys):
    """A text file (think of a link to a password file) named .tif: the message says it is
    not a TIFF image and never quotes the bytes it read."""
    from unet_core.commands import cli

    secret = tmp_path / "notes.tif"
    secret.write_text("root:secret-hash:19000:0:99999:7:::\n")
    out = tmp_path / "out"
    assert cli.main(["predict", str(secret), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not a valid TIFF image" in err and "root" not in err.replace(str(tmp_path), "")
