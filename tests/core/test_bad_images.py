"""Images whose layout or values a new user does not think about: channels in the
last axis, planar RGB TIFFs, thin strips, extreme floats."""
import warnings

import numpy as np
import tifffile

from conftest import make_example
from unet_core.commands import cli
from unet_core.files.fileio import read_image
from unet_core.files.inputs import ChannelOrderWarning, arrange_planes


def test_five_channels_last_are_one_image_not_256_planes(saved_model, tmp_path, capsys):
    image = np.stack([make_example(k, 128)[0] for k in range(5)], axis=-1)      # (128, 128, 5)
    tifffile.imwrite(tmp_path / "five.tif", image)
    assert read_image(tmp_path / "five.tif").shape == (128, 128, 5)
    planes, stack = arrange_planes(image)
    assert planes.shape == (1, 128, 128, 5) and not stack
    rc = cli.main(["predict", str(tmp_path / "five.tif"), "-o", str(tmp_path / "out"),
                   "--model", str(saved_model), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "five.tif: FAILED" in err and "the image has 5" in err


def test_a_planar_rgb_tiff_is_one_colour_image(saved_model, tmp_path, capsys):
    grey = make_example(0, 96)[0]
    rgb = np.stack([grey, grey, grey]).astype(np.uint16)                      # (3, H, W)
    tifffile.imwrite(tmp_path / "planar.tif", rgb, photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "grey.tif", grey)
    assert read_image(tmp_path / "planar.tif").shape == (96, 96, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ChannelOrderWarning)
        rc = cli.main(["predict", str(tmp_path / "planar.tif"), str(tmp_path / "grey.tif"),
                       "-o", str(tmp_path / "out"), "--model", str(saved_model), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    labels = tifffile.imread(tmp_path / "out" / "planar_labels.tif")
    assert labels.shape == (96, 96)
    np.testing.assert_array_equal(labels, tifffile.imread(tmp_path / "out" / "grey_labels.tif"))


def test_a_one_pixel_line_is_refused_and_the_rest_done(saved_model, tmp_path, capsys):
    tifffile.imwrite(tmp_path / "line.tif", np.random.default_rng(0).integers(0, 1000, (1, 100_000),
                                                                              dtype=np.uint16))
    tifffile.imwrite(tmp_path / "good.tif", make_example(0, 64)[0])
    rc = cli.main(["predict", str(tmp_path / "line.tif"), str(tmp_path / "good.tif"),
                   "-o", str(tmp_path / "out"), "--model", str(saved_model), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "line.tif: FAILED: The image is 1 x 100000 px" in err
    assert "at least 16 px" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_labels.tif"]


def test_floats_near_the_largest_double_are_segmented_as_their_scaled_self(saved_model):
    from unet_core import Predictor

    image = make_example(0, 96)[0].astype(np.float64)
    pred = Predictor(saved_model, device="cpu", diameter=None, stain="fluorescence")
    expected = pred.segment(image)
    assert expected.max() > 0
    huge = pred.segment(image * 1e296)                # ~1e300: beyond float32, a fine float64
    np.testing.assert_array_equal(huge, expected)
