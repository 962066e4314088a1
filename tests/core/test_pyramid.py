"""Pyramids of large images: levels built per tile on demand, or the file's own."""
import numpy as np
import pytest
import tifffile

from unet_core.files.pyramid import CoarseLevel, TileCache, built_levels, half, open_pyramid


def test_built_levels_are_two_by_two_means_read_by_any_window(rng):
    image = rng.integers(0, 60000, (301, 250), dtype=np.uint16)    # odd sides
    levels = built_levels(image, top_side=64, cache=TileCache())
    assert [lv.shape for lv in levels] == [(301, 250), (151, 125), (76, 63), (38, 32)]
    want1 = half(image, np.uint16)
    # the odd last row is repeated: its means are over two pixels of it
    assert want1[-1, 0] == np.rint(image[300, 0:2].astype(float).mean())
    level1 = levels[1]
    level1.tile = 32                             # windows cross many tiles
    assert np.array_equal(np.asarray(level1), want1)
    assert np.array_equal(level1[5:100:3, -40:], want1[5:100:3, -40:])
    assert np.array_equal(level1[7], want1[7]) and level1[-1, 3] == want1[-1, 3]
    assert np.array_equal(level1[..., 10], want1[:, 10])
    assert np.array_equal(np.asarray(levels[3]), half(half(want1, np.uint16), np.uint16))
    with pytest.raises(IndexError):
        level1[151]


def test_rgb_levels_keep_their_colours(rng):
    image = rng.integers(0, 255, (100, 80, 3), dtype=np.uint8)
    level = CoarseLevel(image, TileCache(), tile=16)
    assert level.shape == (50, 40, 3) and level.dtype == np.uint8
    assert np.array_equal(level[:, :, 1], half(image, np.uint8)[:, :, 1])


def test_the_tile_cache_stays_within_its_bytes(rng):
    cache = TileCache(max_bytes=3 * 16 * 16 * 2)
    level = CoarseLevel(rng.integers(0, 9, (256, 256), dtype=np.uint16), cache, tile=16)
    np.asarray(level)
    assert cache.nbytes <= cache.max_bytes


def test_open_pyramid_reads_a_pyramidal_tiff_s_own_levels(tmp_path, rng):
    image = rng.integers(0, 4000, (1024, 768), dtype=np.uint16)
    with tifffile.TiffWriter(tmp_path / "pyr.tif") as tw:
        tw.write(image, tile=(256, 256), subifds=1)
        tw.write(np.full((512, 384), 9, np.uint16), tile=(256, 256), subfiletype=1)
    assert open_pyramid(tmp_path / "pyr.tif") is None          # small: read whole elsewhere
    pyr = open_pyramid(tmp_path / "pyr.tif", force=True)
    assert pyr.own_levels and [lv.shape for lv in pyr.levels] == [(1024, 768), (512, 384)]
    assert np.asarray(pyr.levels[1][:]).max() == 9
    assert np.array_equal(pyr.levels[0][10:20, 700:768], image[10:20, 700:768])
