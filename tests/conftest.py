import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.draw import disk
from torch import nn

from unet_core import UNet, UNetConfig, make_card, save_model


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


# -- tiny training (tests/core/test_training.py, test_finetune.py) -------------------------

TINY = UNetConfig(depth=2, base_filters=8)
FAST = {"crop": 64, "batch_size": 2, "lr": 1e-2}


@pytest.fixture
def one_torch_thread():
    """Torch on one thread (restored afterwards): two OpenMP threads spin-waiting on a busy
    core make each tiny training step ~100x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return UNet(TINY)


def tree_hash(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def base_model(tmp_path):
    folder = tmp_path / "base"
    save_model(tiny_net(1), folder, make_card(TINY, "tiny-base", description="test base"))
    return folder


def steps_of(gen, stop_after=None):
    """Drive a training generator; return (train Progress list, result or None if stopped)."""
    seen = []
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return seen, stop.value
        if p.stage == "train":
            seen.append(p)
            if stop_after is not None and p.done >= stop_after:
                gen.close()
                return seen, None
