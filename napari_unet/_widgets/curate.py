"""The Curate dock widget: store corrected labels of a reviewed region in a training set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.layers import Image, Labels, Shapes
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from unet_core import InputError, UNetError
from unet_core.training.dataset import TrainingSet, example_id

from ._common import is_lazy, layer_pixels
from ._controls import FolderEdit, fill_layer_combo
from ._training import (
    current_plane,
    default_training_dir,
    example_text,
    plane_content_key,
    rectangles_mask,
    shapes_box,
)

#: Region choices: (label, key).
REGIONS = (("whole image", "whole"), ("rectangles of a Shapes layer", "shapes"))
#: Layer metadata key that ties a layer opened from the training set to its example.
EXAMPLE_KEY = "napari_unet_example"


def _plane_of(data, plane: tuple[int, ...]):
    """The (H, W[, C]) plane ``plane`` of layer data, not read yet (``data[()]`` would
    read a whole zarr array)."""
    return data[plane] if plane else data


class CurateWidget(QWidget):
    """Add corrected labels of the reviewed region of an image to a training set.

    Each "Add to training set" writes the image plane on screen (Y, X) or (Y, X, C),
    the labels (uint32 instance ids) and the reviewed-region mask (the whole plane or
    the rectangles of a Shapes layer) at once, atomically, through
    :class:`unet_core.training.dataset.TrainingSet`.  One example per image plane:
    adding the same plane again replaces it.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are offered and where opened examples go.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image that was segmented")
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("The corrected instance labels of that image")
        self.folder_edit = FolderEdit("Choose the training set folder", button_text="Browse...")
        self.folder_edit.set_path(default_training_dir())
        self.region_combo = QComboBox()
        for text, key in REGIONS:
            self.region_combo.addItem(text, key)
        self.region_combo.setToolTip("Which pixels you reviewed: only these teach the model")
        self.shapes_combo = QComboBox()
        self.shapes_combo.setToolTip("Shapes layer whose rectangles (or polygons) mark the "
                                     "reviewed region")
        self.new_region_button = QPushButton("Add review-region layer")
        self.new_region_button.setToolTip('Add a Shapes layer "<image> reviewed regions" and '
                                          "start drawing rectangles on it")
        self.shapes_row = QWidget()
        row = QVBoxLayout(self.shapes_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.shapes_combo)
        row.addWidget(self.new_region_button)
        self.add_button = QPushButton("Add to training set")
        self.add_button.setToolTip("Store the image plane, its labels and the reviewed region "
                                   "now (the same plane again replaces it)")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.summary_label = QLabel()
        self.example_list = QListWidget()
        self.example_list.setToolTip("Examples in the training set")
        self.example_list.setMinimumHeight(80)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Add the chosen example's image and labels as layers")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Delete the chosen example from the training set")
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.remove_button)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Image", self.image_combo)
        form.addRow("Labels", self.labels_combo)
        form.addRow("Region", self.region_combo)
        form.addRow("", self.shapes_row)
        form.addRow("Training set", self.folder_edit)
        form.addRow("", self.summary_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.add_button)
        layout.addWidget(self.status)
        layout.addWidget(self.example_list, 1)
        layout.addLayout(buttons)

        self.image_combo.currentTextChanged.connect(self._on_image_changed)
        self.region_combo.currentIndexChanged.connect(self._on_region_changed)
        self.new_region_button.clicked.connect(self._on_new_region_layer)
        self.add_button.clicked.connect(self._on_add)
        self.open_button.clicked.connect(self._on_open)
        self.remove_button.clicked.connect(self._on_remove)
        self.folder_edit.line.textChanged.connect(self._on_folder_changed)
        self.example_list.currentRowChanged.connect(self._on_selection_changed)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self._on_layers_changed)
        self._on_layers_changed()
        self._on_region_changed()
        self._on_folder_changed()

    # -- state ---------------------------------------------------------------------
    def training_set(self) -> TrainingSet:
        """The training set of the chosen folder (raises InputError without one)."""
        path = self.folder_edit.path()
        if not path:
            raise InputError("Choose a training set folder first.")
        return TrainingSet(Path(path).expanduser())

    def _layer(self, combo: QComboBox, kind):
        name = combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        return layer if isinstance(layer, kind) else None

    def region_mode(self) -> str:
        """"whole" or "shapes"."""
        return self.region_combo.currentData()

    def selected_id(self) -> str | None:
        """Id of the example chosen in the list, or None."""
        item = self.example_list.currentItem()
        return item.data(Qt.UserRole) if item is not None else None

    def _collect(self):
        """(image plane, labels plane, mask, source, region) of the current choice.

        Raises InputError with a message for the user when something is missing.
        """
        image, labels = self._layer(self.image_combo, Image), self._layer(self.labels_combo, Labels)
        if image is None or labels is None:
            raise InputError("Choose an image and its corrected Labels layer first.")
        if image.ndim > 2 and self.viewer.dims.ndisplay == 3:
            raise InputError("Switch to the 2D view: a stack is added one plane at a time.")
        point = self.viewer.dims.point
        plane = current_plane(image, point)
        img = _plane_of(layer_pixels(image), plane)           # lazy layers stay lazy here
        if labels.ndim == 2:
            lab = _plane_of(layer_pixels(labels), ())
        elif labels.ndim == image.ndim:
            lab = _plane_of(layer_pixels(labels), current_plane(labels, point))
        else:
            raise InputError(f"'{labels.name}' is {labels.ndim}D but '{image.name}' is "
                             f"{image.ndim}D; choose the labels of this image.")
        if tuple(lab.shape) != tuple(img.shape[:2]):
            raise InputError(f"The labels '{labels.name}' {tuple(lab.shape)} do not match the "
                             f"image '{image.name}' {tuple(img.shape[:2])}; choose the labels "
                             "of this image.")
        huge = is_lazy(img) or is_lazy(lab)
        mask, box = None, None
        if self.region_mode() == "shapes":
            shapes = self._layer(self.shapes_combo, Shapes)
            if shapes is None:
                raise InputError("Choose the Shapes layer of the reviewed region, or press "
                                 "'Add review-region layer' and draw rectangles on it.")
            if huge:     # read and keep only the reviewed part (and some context)
                box = shapes_box(shapes, image, plane, tuple(lab.shape))
                if box is not None:
                    (y0, x0, y1, x1), offset = box, box[:2]
                    img, lab = img[y0:y1, x0:x1], lab[y0:y1, x0:x1]
            img, lab = np.asarray(img), np.asarray(lab)
            mask = rectangles_mask(shapes, image, plane, lab.shape, offset if box else (0, 0))
            if not mask.any():
                raise InputError(f"No reviewed region: draw rectangles on '{shapes.name}' "
                                 "around what you corrected.")
        elif huge:
            raise InputError(f"'{image.name}' is too large to add whole: press 'Add "
                             "review-region layer' and draw rectangles around what you "
                             "corrected; only those parts are read and added.")
        img, lab = np.asarray(img), np.asarray(lab)
        if not lab.any():
            raise InputError(f"'{labels.name}' has no objects here: segment and correct the "
                             "image first.")
        tied = image.metadata.get(EXAMPLE_KEY)
        if tied:       # an example opened from the set: adding it again replaces it
            return img, lab, mask, tied["source"], tied["region"]
        path = getattr(image.source, "path", None)
        region = {"plane": list(plane)} if plane else {}
        if box is not None:
            region["box"] = list(box)
        if not path:   # layers of the same name may hold different images
            region["content"] = plane_content_key(img)
        return img, lab, mask, str(path or image.name), region or None

    # -- slots ---------------------------------------------------------------------
    def _on_layers_changed(self, event=None) -> None:
        fill_layer_combo(self.image_combo, self.viewer, Image)
        image = self.image_combo.currentText()
        fill_layer_combo(self.labels_combo, self.viewer, Labels, f"{image} labels")
        fill_layer_combo(self.shapes_combo, self.viewer, Shapes, f"{image} reviewed regions")
        self.add_button.setEnabled(self.image_combo.count() > 0 and self.labels_combo.count() > 0)

    def _on_image_changed(self, name: str) -> None:
        for combo, suffix in ((self.labels_combo, "labels"), (self.shapes_combo, "reviewed regions")):
            if combo.findText(f"{name} {suffix}") >= 0:
                combo.setCurrentText(f"{name} {suffix}")

    def _on_region_changed(self, index=None) -> None:
        self.shapes_row.setVisible(self.region_mode() == "shapes")

    def _on_new_region_layer(self) -> None:
        image = self._layer(self.image_combo, Image)
        if image is None:
            show_error("Open an image and choose it under 'Image' first.")
            return
        name = f"{image.name} reviewed regions"
        if name in self.viewer.layers:
            shapes = self.viewer.layers[name]
        else:
            shapes = self.viewer.add_shapes(name=name, ndim=image.ndim, scale=image.scale,
                                            translate=image.translate, edge_color="yellow",
                                            face_color="transparent", edge_width=2)
        self.region_combo.setCurrentIndex(self.region_combo.findData("shapes"))
        self.shapes_combo.setCurrentText(shapes.name)
        self.viewer.layers.selection.active = shapes
        shapes.mode = "add_rectangle"
        self.status.setText(f"Draw rectangles on '{name}' around the regions you corrected.")

    def _on_add(self) -> None:
        try:
            image, labels, mask, source, region = self._collect()
            ts = self.training_set()
            replaced = example_id(source, region, image) in ts
            ex_id = ts.add(image, labels, region_mask=mask, source=source, region=region)
        except UNetError as err:
            self._fail(str(err))
            return
        except OSError as err:
            self._fail(f"Could not write the training set: {err}")
            return
        record = next((r for r in ts.list() if r["id"] == ex_id), {})
        n = record.get("n_objects", 0)
        verb = "Replaced" if replaced else "Added"
        message = f"{verb} {Path(source).name}: {n} object{'s' if n != 1 else ''} in the training set."
        self.status.setText(message)
        show_info(message)
        self.refresh(select=ex_id)

    def _fail(self, message: str) -> None:
        self.status.setText(message)
        show_error(message)

    def _on_folder_changed(self, text=None) -> None:
        self.refresh()

    def _on_selection_changed(self, row=None) -> None:
        chosen = self.selected_id() is not None
        self.open_button.setEnabled(chosen)
        self.remove_button.setEnabled(chosen)

    def _on_open(self) -> None:
        ex_id = self.selected_id()
        if ex_id is None:
            return
        try:
            ex = self.training_set().load_example(ex_id)
        except UNetError as err:
            self._fail(str(err))
            return
        name = Path(str(ex.record.get("source") or ex_id)).name
        tie = {EXAMPLE_KEY: {"source": ex.record.get("source"), "region": ex.record.get("region")}}
        image = self.viewer.add_image(ex.image, name=f"{name} (training)", metadata=tie)
        self.viewer.add_labels(ex.labels, name=f"{image.name} labels")
        self.image_combo.setCurrentText(image.name)

    def _on_remove(self) -> None:
        ex_id = self.selected_id()
        if ex_id is None:
            return
        try:
            self.training_set().remove(ex_id)
        except UNetError as err:
            self._fail(str(err))
            return
        self.status.setText(f"Removed {self.example_list.currentItem().text().split(' · ')[0]}.")
        self.refresh()

    def refresh(self, select: str | None = None) -> None:
        """Re-read the training set folder into the summary line and the list."""
        self.example_list.clear()
        try:
            records = self.training_set().list()
        except UNetError as err:
            self.summary_label.setText(str(err))
            records = []
        else:
            n, m = len(records), sum(r.get("n_objects", 0) for r in records)
            self.summary_label.setText(f"{n} example{'s' if n != 1 else ''} · "
                                       f"{m} object{'s' if m != 1 else ''}")
        for record in records:
            item = QListWidgetItem(example_text(record))
            item.setData(Qt.UserRole, record["id"])
            item.setToolTip(f"{record.get('source')}\n{record.get('reviewed_pixels', '?')} "
                            f"reviewed pixels\nid {record['id']}")
            self.example_list.addItem(item)
            if record["id"] == select:
                self.example_list.setCurrentItem(item)
        self._on_selection_changed()
