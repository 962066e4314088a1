"""The widgets start at the engine's defaults (one source: the config dataclasses)."""
import pytest

from unet_core.progress import Stage
from unet_core.training.config import FinetuneConfig

pytestmark = pytest.mark.gui


def test_finetune_widget_starts_at_the_engine_defaults(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Fine-tune")
    defaults = FinetuneConfig()
    assert widget.config() == defaults
    assert widget.steps_spin.value() == defaults.steps and widget.lr_combo.currentText() == "1e-4"
    assert widget.device_combo.currentText() == defaults.device
    assert widget.minutes_spin.text() == "none"          # no time budget


def test_every_stage_has_a_caption():
    from napari_unet._widgets._run_bar import STAGE_TEXT, stage_text

    assert set(STAGE_TEXT) == set(Stage)
    assert stage_text("train") == stage_text(Stage.TRAIN) == "Training"
