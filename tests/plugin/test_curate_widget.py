"""The Curate widget in a real viewer: add, replace, remove, reviewed regions, stacks, errors."""
import numpy as np
import pytest
from napari.layers import Shapes
from napari.utils.notifications import NotificationSeverity

from unet_core.data.synthetic import synthetic_nuclei
from unet_core.training.dataset import TrainingSet

pytestmark = pytest.mark.gui


@pytest.fixture
def curate(make_napari_viewer, tmp_path):
    """(viewer with a 96 px image and its labels, CurateWidget docked through the manifest,
    training set folder)."""
    viewer = make_napari_viewer()
    image, labels = synthetic_nuclei((96, 96), n=8, seed=3, radius_range=(5, 10))
    viewer.add_image(image, name="img")
    viewer.add_labels(labels.astype(np.uint32), name="img labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Curate")
    folder = tmp_path / "set"
    widget.folder_edit.set_path(folder)
    return viewer, widget, folder


def _severity(notifications, severity):
    return [n.message for n in notifications if n.severity == severity]


def test_add_replace_remove(curate, notifications):
    viewer, widget, folder = curate
    assert (widget.image_combo.currentText(), widget.labels_combo.currentText()) == \
        ("img", "img labels")
    assert widget.summary_label.text() == "0 examples · 0 objects"
    widget.add_button.click()
    ts = TrainingSet(folder)
    [record] = ts.list()
    n = int(len(np.unique(viewer.layers["img labels"].data))) - 1
    assert record["n_objects"] == n and record["source"] == "img"
    files = sorted(p.name.split("-")[0] for p in (folder / record["id"]).iterdir())
    assert files == ["example.json", "image", "labels", "mask"]
    assert widget.summary_label.text() == f"1 example · {n} objects"
    assert widget.example_list.count() == 1 and widget.selected_id() == record["id"]
    assert _severity(notifications, NotificationSeverity.INFO)[-1].startswith("Added img: ")

    # a new nucleus painted into the labels, added again: the same example, replaced
    layer = viewer.layers["img labels"]
    layer.data[2:8, 2:8] = layer.data.max() + 1
    layer.refresh()
    widget.add_button.click()
    assert len(ts) == 1 and ts.list()[0]["n_objects"] == n + 1
    assert widget.status.text().startswith("Replaced img: ")
    assert widget.example_list.count() == 1
    ex = ts.load_example(record["id"])
    np.testing.assert_array_equal(ex.labels, layer.data)
    assert ex.mask.all()

    widget.example_list.setCurrentRow(0)
    widget.remove_button.click()
    assert len(ts) == 0 and widget.example_list.count() == 0
    assert not list(folder.iterdir())
    assert not widget.remove_button.isEnabled()
    assert not _severity(notifications, NotificationSeverity.ERROR)


def test_region_from_shapes_restricts_the_mask(curate, notifications):
    viewer, widget, folder = curate
    widget.region_combo.setCurrentIndex(widget.region_combo.findData("whole"))
    widget.new_region_button.click()
    shapes = viewer.layers["img reviewed regions"]
    assert isinstance(shapes, Shapes) and shapes.mode == "add_rectangle"
    assert widget.region_mode() == "shapes" and widget.shapes_combo.currentText() == shapes.name
    assert not widget.shapes_row.isHidden()

    widget.add_button.click()        # no rectangle yet
    assert "No reviewed region" in _severity(notifications, NotificationSeverity.ERROR)[-1]
    assert len(TrainingSet(folder)) == 0

    shapes.add_rectangles(np.array([[10, 20], [40, 60]], float))
    shapes.add_ellipses(np.array([[80, 80], [10, 10]], float))   # centre, radii
    shapes.add_paths(np.array([[0, 0], [95, 95]], float))    # encloses nothing: ignored
    widget.add_button.click()
    [ex] = TrainingSet(folder).load()[0]
    expected = np.zeros((96, 96), bool)
    expected[10:41, 20:61] = True
    assert ex.mask[:60].sum() == expected.sum() and ex.mask[10:41, 20:61].all()
    assert ex.mask[70:91, 70:91].any() and not ex.mask[70:91, 70:91].all()
    assert not ex.mask[:, :15].any()
    assert ex.record["reviewed_pixels"] == int(ex.mask.sum())


def test_stack_adds_the_current_plane(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    pairs = [synthetic_nuclei((64, 64), seed=k) for k in range(3)]
    viewer.add_image(np.stack([p[0] for p in pairs]), name="stack")
    viewer.add_labels(np.stack([p[1] for p in pairs]).astype(np.uint32), name="stack labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Curate")
    widget.folder_edit.set_path(tmp_path / "set")
    viewer.dims.set_current_step(0, 2)
    widget.add_button.click()
    viewer.dims.set_current_step(0, 1)
    widget.add_button.click()
    examples = {tuple(e.record["region"]["plane"]): e for e in TrainingSet(tmp_path / "set").load()[0]}
    assert sorted(examples) == [(1,), (2,)]
    np.testing.assert_array_equal(examples[(2,)].image, pairs[2][0])
    np.testing.assert_array_equal(examples[(1,)].labels, pairs[1][1])
    assert widget.example_list.count() == 2
    assert "[plane 1]" in widget.example_list.currentItem().text()


def test_errors_are_notified_and_nothing_is_written(curate, notifications):
    viewer, widget, folder = curate
    viewer.add_labels(np.zeros((96, 96), np.uint32), name="empty")
    widget.labels_combo.setCurrentText("empty")
    widget.add_button.click()
    viewer.add_labels(np.ones((50, 96), np.uint32), name="wrong size")
    widget.labels_combo.setCurrentText("wrong size")
    widget.add_button.click()
    errors = _severity(notifications, NotificationSeverity.ERROR)
    assert len(errors) == 2
    assert "'empty' has no objects" in errors[0]
    assert "(50, 96) do not match the image 'img' (96, 96)" in errors[1]
    assert widget.status.text() == errors[1]
    assert not folder.exists()


def test_open_an_example_and_add_it_again(curate):
    viewer, widget, folder = curate
    widget.add_button.click()
    widget.open_button.click()
    assert "img (training)" in viewer.layers and "img (training) labels" in viewer.layers
    assert widget.image_combo.currentText() == "img (training)"
    assert widget.labels_combo.currentText() == "img (training) labels"
    widget.add_button.click()              # the opened example, corrected again: replaced
    assert len(TrainingSet(folder)) == 1
    assert widget.status.text().startswith("Replaced img")


def test_region_of_a_huge_lazy_image_reads_that_region_only(make_napari_viewer, tmp_path,
                                                             notifications):
    """A zarr-backed image (as Segment shows large results): only the reviewed box (and
    64 px of context) is read and added; adding it whole is refused with advice."""
    import zarr

    big = zarr.create_array(str(tmp_path / "big.zarr"), shape=(6000, 5000), dtype=np.uint16,
                            chunks=(1000, 1000), fill_value=0)
    labels = zarr.create_array(str(tmp_path / "big_labels.zarr"), shape=(6000, 5000),
                               dtype=np.uint32, chunks=(1000, 1000), fill_value=0)
    image, lab = synthetic_nuclei((256, 256), seed=5)
    big[3000:3256, 1000:1256] = (image * 1000).astype(np.uint16)
    labels[3000:3256, 1000:1256] = lab
    reads = []

    class Counting:                     # counts the pixels read from the image
        def __init__(self, arr):
            self.arr, self.shape, self.dtype, self.ndim = arr, arr.shape, arr.dtype, arr.ndim

        def __getitem__(self, key):
            out = self.arr[key]
            reads.append(np.size(out))
            return out

        def __array__(self, dtype=None, copy=None):
            raise AssertionError("the whole image was read")

    viewer = make_napari_viewer()
    viewer.add_image(Counting(big), name="big", multiscale=False,
                     contrast_limits=(0, 1000))
    viewer.add_labels(labels, name="big labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Curate")
    widget.folder_edit.set_path(tmp_path / "set")
    reads.clear()
    widget.add_button.click()                      # whole image: refused
    assert "too large to add whole" in _severity(notifications, NotificationSeverity.ERROR)[-1]

    widget.new_region_button.click()
    reads.clear()
    widget.add_button.click()                      # no region drawn yet: nothing is read
    assert "No reviewed region" in _severity(notifications, NotificationSeverity.ERROR)[-1]
    assert reads == []
    viewer.layers["big reviewed regions"].add_rectangles(
        np.array([[3050, 1050], [3150, 1200]], float))
    reads.clear()
    widget.add_button.click()
    [ex] = TrainingSet(tmp_path / "set").load()[0]
    assert ex.image.shape == (229, 279)              # 101 x 151 reviewed + 64 px around
    assert sum(reads) == 229 * 279                   # and nothing else was read
    assert ex.record["region"]["box"] == [2986, 986, 3215, 1265]
    np.testing.assert_array_equal(ex.labels, labels[2986:3215, 986:1265])
    assert ex.mask[64:165, 64:215].all() and ex.mask.sum() == 101 * 151

    # one rectangle around most of the image: refused before anything is read
    viewer.layers["big reviewed regions"].add_rectangles(np.array([[0, 0], [5000, 4000]], float))
    reads.clear()
    widget.add_button.click()
    assert "too large to add at once" in _severity(notifications, NotificationSeverity.ERROR)[-1]
    assert reads == []


def test_a_small_zarr_backed_plane_is_added_whole(make_napari_viewer, tmp_path, notifications):
    """Lazy but small (a zarr opened in napari): the whole plane is read and added."""
    import zarr

    image, lab = synthetic_nuclei((200, 160), seed=4)
    arrays = {}
    for name, data in (("small", image), ("small labels", lab.astype(np.uint32))):
        arrays[name] = zarr.create_array(str(tmp_path / f"{name}.zarr"), shape=data.shape,
                                         dtype=data.dtype, chunks=(64, 64))
        arrays[name][...] = data
    viewer = make_napari_viewer()
    viewer.add_image(arrays["small"], name="small")
    viewer.add_labels(arrays["small labels"], name="small labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-nuclei-unet", "Curate")
    widget.folder_edit.set_path(tmp_path / "set")
    widget.add_button.click()
    assert not _severity(notifications, NotificationSeverity.ERROR)
    [ex] = TrainingSet(tmp_path / "set").load()[0]
    np.testing.assert_array_equal(ex.image, image)
    np.testing.assert_array_equal(ex.labels, lab)
