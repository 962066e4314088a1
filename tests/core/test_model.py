"""The network's reach, measured, must match what the tiler assumes."""
import pytest
import torch

from conftest import lively_unet
from unet_core import UNet, UNetConfig


def _reach(net, edge, n=256):
    """Rows past an aligned ``edge`` that change when everything above it changes."""
    torch.manual_seed(1)
    x = torch.rand(1, 1, n, n, dtype=torch.float64)
    with torch.no_grad():
        y0 = net(x)
        x2 = x.clone()
        x2[:, :, :edge] += 1.0
        rows = torch.nonzero((net(x2) - y0).abs().amax(dim=(0, 1, 3)) > 0).flatten()
        down = int(rows.max()) - edge + 1
        x3 = x.clone()
        x3[:, :, edge:] += 1.0
        rows = torch.nonzero((net(x3) - y0).abs().amax(dim=(0, 1, 3)) > 0).flatten()
        up = edge - int(rows.min())
    return max(down, up)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_receptive_radius_is_measured_reach_from_aligned_border(depth):
    cfg = UNetConfig(depth=depth, base_filters=2)
    net = lively_unet(depth=depth, base_filters=8).double()
    n = max(256, 2 * (cfg.receptive_radius + 2 ** depth) + 64)
    n = -(-n // cfg.alignment) * cfg.alignment
    edge = n // 2 // cfg.alignment * cfg.alignment
    assert _reach(net, edge, n) == cfg.receptive_radius
    assert cfg.halo >= cfg.receptive_radius and cfg.halo % cfg.alignment == 0


def test_depth4_numbers():
    cfg = UNetConfig(depth=4)
    assert (cfg.alignment, cfg.receptive_radius, cfg.halo) == (16, 94, 96)


def test_shapes_and_options():
    for bn, drop, cin in [(False, 0.0, 1), (True, 0.2, 3)]:
        net = UNet(UNetConfig(depth=3, base_filters=4, in_channels=cin, out_channels=3,
                              batch_norm=bn, dropout=drop)).eval()
        y = net(torch.zeros(2, cin, 64, 48))
        assert y.shape == (2, 3, 64, 48)
        assert not any(isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm))
                       for m in net.modules())


@pytest.mark.parametrize("bad", [{"depth": 0}, {"base_filters": 0}, {"dropout": 1.0}])
def test_bad_config(bad):
    with pytest.raises(ValueError):
        UNetConfig(**bad)
    with pytest.raises(ValueError):
        UNetConfig.from_dict({"depth": 2, "wibble": 1})
