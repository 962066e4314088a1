import numpy as np
import pytest
import torch
from skimage.draw import disk
from torch import nn

from unet_core import UNet, UNetConfig


def lively_unet(depth=4, base_filters=8, in_channels=1, out_channels=2, seed=0, batch_norm=False):
    """A random U-Net whose outputs vary strongly with the input (He init), so any
    stitching or border error shows in its probabilities."""
    torch.manual_seed(seed)
    net = UNet(UNetConfig(depth=depth, base_filters=base_filters, in_channels=in_channels,
                          out_channels=out_channels, batch_norm=batch_norm))
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.1)
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture
def small_net():
    return lively_unet(depth=2, base_filters=4)


@pytest.fixture
def saved_model(tmp_path):
    from unet_core import save_model

    return save_model(lively_unet(depth=2, base_filters=4), tmp_path / "tiny")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_example(seed: int, size: int = 64, n: int = 4):
    """A grey uint16 image of bright disks and its uint32 instance labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.uint32)
    for i in range(n):
        rr, cc = disk(tuple(rng.integers(8, size - 8, 2)), int(rng.integers(4, 7)), shape=labels.shape)
        labels[rr, cc] = i + 1
    image = ((labels > 0) * 1000 + rng.normal(100, 20, labels.shape)).clip(0).astype(np.uint16)
    return image, labels


@pytest.fixture(autouse=True, scope="session")
def backend_cache(tmp_path_factory):
    """Exported graphs of the fast backends go to a private folder ($NAPARI_UNET_CACHE),
    shared by the whole session (one export per network), never the user's cache."""
    patch = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("backend-cache")
    patch.setenv("NAPARI_UNET_CACHE", str(path))
    yield path
    patch.undo()
