"""Fixtures of the GUI tests: a tiny user model, a private training set folder and a record
of napari notifications."""
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


@pytest.fixture(autouse=True)
def training_dir(tmp_path, monkeypatch):
    """The default training set of the widgets ($NAPARI_UNET_TRAINING_SET -> tmp), so no
    test reads or writes the real per-user one."""
    path = tmp_path / "training-set"
    monkeypatch.setenv("NAPARI_UNET_TRAINING_SET", str(path))
    return path


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """The per-user cache ($XDG_CACHE_HOME -> tmp): lazy results of Segment go there, and
    no test reads or removes the real one's."""
    path = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    return path


@pytest.fixture
def one_thread():
    """Tests that train share two cores with other work: keep torch to one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def notifications():
    """Every notification napari dispatches during the test (its real route to the user)."""
    from napari.utils.notifications import notification_manager

    got = []
    notification_manager.notification_ready.connect(got.append)
    yield got
    notification_manager.notification_ready.disconnect(got.append)
