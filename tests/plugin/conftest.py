"""Fixtures of the GUI tests: a tiny user model and a record of napari notifications."""
import pytest
import torch

from unet_core import UNet, UNetConfig, save_model


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    """A depth-2 U-Net saved as the only user model ($NAPARI_UNET_MODELS -> tmp)."""
    root = tmp_path / "models"
    torch.manual_seed(0)
    path = save_model(UNet(UNetConfig(depth=2, base_filters=4)).eval(), root / "tiny")
    monkeypatch.setenv("NAPARI_UNET_MODELS", str(root))
    return path


@pytest.fixture
def notifications():
    """Every notification napari dispatches during the test (its real route to the user)."""
    from napari.utils.notifications import notification_manager

    got = []
    notification_manager.notification_ready.connect(got.append)
    yield got
    notification_manager.notification_ready.disconnect(got.append)
