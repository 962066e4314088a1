"""Exactness of the tiler: a stub network proves the stitching, a real U-Net the halo."""
import numpy as np
import pytest
import torch
from torch import nn

from conftest import lively_unet
from unet_core import Predictor, UNetConfig
from unet_core.inference.normalize import normalize
from unet_core.inference.tiling import TileGrid, plan_grid, reflect_index


def test_reflect_index_matches_numpy_pad():
    for n in (1, 2, 3, 7, 40):
        for pad in (0, 1, 5, 96, 300):
            ref = np.pad(np.arange(n), pad, mode="reflect") if n > 1 else np.zeros(n + 2 * pad, int)
            got = reflect_index(np.arange(-pad, n + pad), n)
            assert np.array_equal(got, ref), (n, pad)


@pytest.mark.parametrize("shape", [(1000, 1337), (37, 2000), (1, 1), (64, 64), (257, 31)])
@pytest.mark.parametrize("core", [16, 64, 512])
@pytest.mark.parametrize("border", ["reflect", "none"])
def test_grid_covers_image_once(shape, core, border):
    grid = plan_grid(shape, core, 96, 16, border)
    seen = np.zeros(shape, int)
    for o in grid.origins():
        dst, src = grid.core_slices(o)
        seen[dst] += 1
        assert src[0].stop - src[0].start == dst[0].stop - dst[0].start
    assert (seen == 1).all()
    assert all(c % 16 == 0 for c in grid.core) and grid.halo % 16 == 0
    assert all(t % 16 == 0 for t in grid.tile_shape)
    for o in grid.origins():
        wy, wx = grid.window(o)
        assert wy % 16 == 0 and wx % 16 == 0
        dst, src = grid.core_slices(o)
        if border == "none":  # windows stay inside the aligned image
            assert wy >= 0 and wy + grid.tile_shape[0] <= grid.padded[0]
        # every core pixel has its halo inside the window, or the image edge
        assert src[0].start >= grid.halo or wy <= 0
        assert src[1].start >= grid.halo or wx <= 0
    if border == "reflect":
        assert max(grid.core) <= max(core, 16)


def test_grid_balances_cores():
    g = plan_grid((1100, 2048), 1024, 96, 16)
    assert g.core == (560, 1024) and g.counts == (2, 2)


def test_read_is_window_of_globally_padded_image(rng):
    img = rng.random((50, 70, 2))
    grid = TileGrid((50, 70), (32, 32), 48)
    padded = np.pad(img, ((48, 48 + 14), (48, 48 + 26), (0, 0)), mode="reflect")
    for (y, x) in grid.origins():
        assert np.array_equal(grid.read(img, (y, x)), padded[y:y + 128, x:x + 128])


class PlusOne(nn.Module):
    """The MONAI-style stub: output = input + 1 (per output channel)."""

    config = UNetConfig(depth=4, out_channels=1)

    def forward(self, x):
        return x + 1


@pytest.mark.parametrize("tile", [16, 48, 256])
def test_stub_stitching_is_exact(tile, rng):
    img = rng.integers(0, 4000, (123, 301)).astype(np.uint16)
    # the tiler is under test, so the network runs in PyTorch f32 (exact on every CPU)
    # (uniform noise has no stain to guess: it is taken as it is)
    prob = Predictor(PlusOne(), device="cpu", tile=tile, backend="torch", precision="f32",
                     stain="fluorescence").predict(img)
    expect = torch.sigmoid(torch.from_numpy(normalize(img[..., None])[..., 0] + 1)).numpy()
    assert prob.shape == (1, 123, 301) and prob.dtype == np.float32
    np.testing.assert_allclose(prob[0], expect, atol=1e-6)


# exactness is the tiler's: PyTorch f32 on every CPU (the default backend may run bf16)
EXACT = {"backend": "torch", "precision": "f32"}


@pytest.fixture(scope="module")
def depth4():
    return lively_unet(depth=4, base_filters=8, seed=3)


def _windows(grid) -> set:
    """Distinct input windows of a grid (edge windows shifted inwards may coincide)."""
    return {grid.window(o) for o in grid.origins()}


# Every (shape, border, tile) below must tile into several distinct windows: otherwise
# "tiled" and "whole" are one computation and the comparison proves nothing.  With
# border "none" a side up to tile + 2 * 96 px is one window, hence the larger shapes.
@pytest.mark.parametrize("shape, border, tiles", [
    ((333, 517), "reflect", (32, 64, 112, 160)), ((150, 97), "reflect", (32, 64, 112)),
    ((333, 517), "none", (32, 64, 112, 160)), ((301, 250), "none", (32, 64, 96))])
def test_real_unet_tiled_equals_whole_image(depth4, shape, border, tiles):
    rng = np.random.default_rng(1)
    img = rng.gamma(2.0, 300.0, shape).astype(np.float32)
    whole = Predictor(depth4, device="cpu", tile=4096, border=border, **EXACT).predict(img)
    assert len(_windows(Predictor(depth4, device="cpu", tile=4096, border=border, **EXACT).grid(shape))) == 1
    if border == "none":  # the whole-image pass is the plain network on the image itself
        x = torch.from_numpy(normalize(img[..., None])[..., 0])
        aligned = [-(-s // 16) * 16 for s in shape]
        x = torch.nn.functional.pad(x[None, None], (0, aligned[1] - shape[1], 0, aligned[0] - shape[0]),
                                    mode="reflect")
        with torch.inference_mode():
            plain = torch.sigmoid(depth4(x))[0, :, :shape[0], :shape[1]].numpy()
        assert np.abs(plain - whole).max() <= 1e-4
    for tile in tiles:
        p = Predictor(depth4, device="cpu", tile=tile, border=border, **EXACT)
        assert len(_windows(p.grid(shape))) > 1, (tile, "one window: nothing is tested")
        diff = np.abs(p.predict(img) - whole).max()
        assert diff <= 1e-4, (tile, diff)


@pytest.mark.parametrize("border", ["reflect", "none"])
def test_tta_averages_mirrored_passes_and_stays_exact(depth4, border):
    rng = np.random.default_rng(4)
    img = rng.gamma(2.0, 300.0, (192, 320)).astype(np.float32)  # aligned: mirroring is exact
    plain = Predictor(depth4, device="cpu", tile=4096, border=border)
    tta = Predictor(depth4, device="cpu", tile=4096, border=border, tta=True)
    expect = np.mean([np.flip(plain.predict(np.flip(img, axes).copy()), [a + 1 for a in axes])
                      for axes in ((), (1,), (0,), (0, 1))], axis=0)
    got = tta.predict(img)
    np.testing.assert_allclose(got, expect, atol=1e-5)
    assert np.abs(got - plain.predict(img)).max() > 1e-3  # it does change the maps
    odd = rng.gamma(2.0, 300.0, (333, 517)).astype(np.float32)
    whole = tta.predict(odd)
    tiled = Predictor(depth4, device="cpu", tile=64, border=border, tta=True)
    assert len(tiled.grid(odd.shape)) > 1
    assert np.abs(tiled.predict(odd) - whole).max() <= 1e-4


def test_exactness_needs_the_halo(depth4):
    """The test above is sensitive: the classic 64 px halo (< 94 px reach) is not exact."""
    rng = np.random.default_rng(2)
    img = rng.gamma(2.0, 300.0, (256, 256)).astype(np.float32)
    whole = Predictor(depth4, device="cpu", tile=4096, halo=64, border="reflect").predict(img)
    classic = Predictor(depth4, device="cpu", preset="classic").predict(img)
    assert Predictor(depth4, device="cpu", preset="classic").border == "reflect"
    assert np.abs(classic - whole).max() > 1e-3


@pytest.mark.parametrize("border", ["reflect", "none"])
def test_batchnorm_unet_is_exact(border):
    net = lively_unet(depth=3, base_filters=4, batch_norm=True, seed=5)
    img = np.random.default_rng(5).random((300, 231)).astype(np.float32)
    whole = Predictor(net, device="cpu", tile=1024, border=border).predict(img)
    tiled = Predictor(net, device="cpu", tile=16, batch_size=3, border=border).predict(img)
    assert len(tiled_grid := Predictor(net, device="cpu", tile=16, border=border).grid(img.shape)) > 1
    assert tiled_grid.halo == 48
    assert np.abs(tiled - whole).max() <= 1e-4


def test_default_border_adds_no_pixels():
    """The default grid of an aligned image is the image itself: no padding cost."""
    p = Predictor(lively_unet(depth=4, base_filters=4), device="cpu")
    assert p.border == "none" and p.grid((1024, 1024)).overhead == 1.0
