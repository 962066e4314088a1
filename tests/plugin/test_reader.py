"""File > Open of large images through the plugin's reader: lazy multiscale layers."""
import numpy as np
import pytest
import tifffile
import zarr

from napari_unet._reader import LEVELS_KEY, SOURCE_KEY, get_reader
from unet_core.data.synthetic import synthetic_nuclei
from unet_core.files.pyramid import CoarseLevel, half

pytestmark = pytest.mark.gui
PLUGIN = "napari-nuclei-unet"


@pytest.fixture
def low_threshold(monkeypatch):
    """Images over 512 x 512 px count as large (the default is 4096 x 4096)."""
    monkeypatch.setenv("NAPARI_UNET_LAZY_PIXELS", str(512 * 512))


def _tiled(path, image, tile=256):
    tifffile.imwrite(path, image, tile=(tile, tile), compression="zlib")
    return path


def test_a_large_tiff_opens_as_a_multiscale_layer(make_napari_viewer, tmp_path, low_threshold):
    image = np.random.default_rng(0).integers(0, 4000, (1100, 900), dtype=np.uint16)
    path = _tiled(tmp_path / "big.tif", image)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin=PLUGIN)
    assert layer.multiscale and layer.name == "big"
    assert [level.shape for level in layer.data] == [(1100, 900), (550, 450)]
    assert isinstance(layer.data[0], zarr.Array)        # read by window, not whole
    assert isinstance(layer.data[1], CoarseLevel)       # built on demand
    assert np.array_equal(layer.data[0][100:200, 300:310], image[100:200, 300:310])
    assert np.array_equal(np.asarray(layer.data[1]), half(image, np.uint16))
    assert layer.metadata[SOURCE_KEY] == str(path) and layer.metadata[LEVELS_KEY] == "built"
    # a striped (not tiled) TIFF reads by window too
    tifffile.imwrite(tmp_path / "strips.tif", image, rowsperstrip=32)
    [striped] = viewer.open(tmp_path / "strips.tif", plugin=PLUGIN)
    assert striped.multiscale


def test_small_and_unwindowed_files_are_left_to_napari(tmp_path, low_threshold):
    small = np.zeros((512, 512), np.uint16)
    assert get_reader(str(_tiled(tmp_path / "small.tif", small))) is None
    big = np.zeros((1024, 1024), np.uint16)
    # one compressed strip: no window can be read without reading all of it
    tifffile.imwrite(tmp_path / "one_strip.tif", big, compression="zlib", rowsperstrip=1024)
    assert get_reader(str(tmp_path / "one_strip.tif")) is None
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 1024, 1024), np.uint16), tile=(256, 256))
    assert get_reader(str(tmp_path / "stack.tif")) is None
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    assert get_reader(str(tmp_path / "broken.tif")) is None
    assert get_reader(str(_tiled(tmp_path / "big.tif", big))) is not None


def _ome_zarr(path, levels, scale=0.5):
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    for k, data in enumerate(levels):
        group.create_array(str(k), data=data, chunks=(256, 256))
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}], "datasets": [
        {"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [scale * 2**k] * 2}]} for k in range(len(levels))]}]
    return path


def test_an_ome_zarr_pyramid_uses_its_own_levels(make_napari_viewer, tmp_path, low_threshold):
    level0 = np.full((1200, 1000), 100, np.uint16)
    level1 = np.full((600, 500), 7, np.uint16)      # not the means of level 0: the file's own
    path = _ome_zarr(tmp_path / "plate.ome.zarr", [level0, level1])
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin=PLUGIN)
    assert layer.multiscale and layer.name == "plate"
    assert layer.metadata[LEVELS_KEY] == "file"
    assert np.asarray(layer.data[1]).max() == 7
    assert tuple(layer.scale) == (0.5, 0.5)


def test_segment_on_the_readers_layer_equals_the_cli(make_napari_viewer, qtbot, tmp_path,
                                                    monkeypatch, tiny_model, notifications):
    """Segment on a layer opened by the reader runs block-wise on level 0 and gives the
    labels ``napari-unet predict`` writes for the same file."""
    from unet_core.commands.cli import main

    monkeypatch.setenv("NAPARI_UNET_LAZY_PIXELS", str(2048 * 2048))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    image = synthetic_nuclei((2600, 2600), seed=3, dtype="uint16")[0]
    path = _tiled(tmp_path / "mosaic.tif", image, tile=512)
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin=PLUGIN)
    assert layer.multiscale
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.model_picker.set_model(tiny_model)
    combo = widget.device_combo
    combo.setCurrentIndex(next(i for i in range(combo.count())
                               if tuple(combo.itemData(i)) == ("cpu", "torch", "f32")))
    widget.run_bar.run_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=300_000)
    assert not [n for n in notifications if n.severity == "error"]
    labels = viewer.layers["mosaic labels"]
    assert labels.multiscale                       # a lazy result: written block by block
    got = np.asarray(labels.data[0])
    assert main(["predict", str(path), "-o", str(tmp_path / "out"), "--model", str(tiny_model),
                 "--device", "cpu", "--backend", "torch", "--precision", "f32"]) == 0
    want = tifffile.imread(tmp_path / "out" / "mosaic_labels.tif")
    assert got.max() > 0
    assert np.array_equal(got, want)
