"""The npe2 manifest: valid, every python_name importable, widgets and menus contributed."""
import importlib
from pathlib import Path

import npe2
import pytest

import napari_unet
from unet_core import load_model

MANIFEST = Path(napari_unet.__file__).parent / "napari.yaml"


def _manifest():
    return npe2.PluginManifest.from_file(MANIFEST)


def test_manifest_is_valid_and_installed():
    m = _manifest()
    assert m.name == "napari-nuclei-unet"
    pm = npe2.PluginManager.instance()
    pm.discover(include_npe1=False)
    installed = pm.get_manifest("napari-nuclei-unet")   # found through the napari.manifest entry point
    assert {c.id for c in installed.contributions.commands} == {c.id for c in m.contributions.commands}


def test_every_python_name_imports():
    for command in _manifest().contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.python_name


def test_contributions():
    c = _manifest().contributions
    assert {w.display_name: w.command for w in c.widgets} == {
        "Segment": "napari-nuclei-unet.segment_widget", "Curate": "napari-nuclei-unet.curate_widget",
        "Fine-tune": "napari-nuclei-unet.finetune_widget", "Batch": "napari-nuclei-unet.batch_widget"}
    assert [m.command for m in c.menus["napari/layers/segment"]] == ["napari-nuclei-unet.segment_widget"]
    assert [s.key for s in c.sample_data] == ["nuclei"]


@pytest.mark.gui
@pytest.mark.parametrize("name, cls", [("Segment", "SegmentWidget"), ("Batch", "BatchWidget"),
                                       ("Fine-tune", "FinetuneWidget")])
def test_widgets_load_through_the_manifest(make_napari_viewer, tiny_model, name, cls):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", name)
    assert type(widget).__name__ == cls
    picker = widget.model_picker
    offered = [picker.itemData(i) for i in range(picker.count())]
    assert str(tiny_model) in offered  # the user's models are offered
    # the bundled model comes first and is the default
    assert picker.model_path() == str(load_model("nuclei").path)


@pytest.mark.gui
def test_curate_loads_through_the_manifest(make_napari_viewer, training_dir):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Curate")
    assert type(widget).__name__ == "CurateWidget"
    assert widget.folder_edit.path() == str(training_dir)


@pytest.mark.gui
def test_sample_data_and_layers_menu(make_napari_viewer):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    viewer.open_sample("napari-nuclei-unet", "nuclei")
    assert [layer.name for layer in viewer.layers] == ["synthetic nuclei", "synthetic nuclei (truth)"]
    items = get_app_model().menus.get_menu("napari/layers/segment")
    ids = [i.command.id for i in items if hasattr(i, "command")]
    assert "napari-nuclei-unet.segment_widget" in ids   # Layers > Segment > Segment (napari-unet)
