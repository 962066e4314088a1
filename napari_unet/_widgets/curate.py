"""The Curate dock widget: store corrected labels of a reviewed region in a training set."""
from __future__ import annotations

from pathlib import Path

from napari.layers import Image, Labels, Shapes
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QComboBox, QPushButton, QVBoxLayout, QWidget

from unet_core import InputError, UNetError
from unet_core.training.dataset import TrainingSet
from unet_core.training.identity import opened_identity, source_name

from ._controls import (
    chosen_layer,
    combo_box,
    fill_layer_combo,
    follow_selection,
    make_form,
    scroll_body,
    status_label,
    training_set_edit,
    watch_layers,
)
from ._examples import ExampleList
from ._regions import EXAMPLE_KEY, reviewed_example
from ._training import add_example, review_layer

#: Region choices: (label, key).
REGIONS = (("whole image", "whole"), ("rectangles of a Shapes layer", "shapes"))


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
        self.image_combo = combo_box("The image that was segmented")
        self.labels_combo = combo_box("The corrected instance labels of that image")
        self.folder_edit = training_set_edit()
        self.region_combo = combo_box("Which pixels you reviewed: only these teach the model",
                                      REGIONS)
        self.shapes_combo = combo_box("Shapes layer whose rectangles (or polygons) mark the "
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
        self.status = status_label()
        self.examples = ExampleList()
        self.summary_label, self.example_list = self.examples.summary_label, self.examples.list
        self.open_button, self.remove_button = self.examples.open_button, self.examples.remove_button

        layout = scroll_body(self)
        layout.addLayout(make_form(
            ("Image", self.image_combo), ("Labels", self.labels_combo),
            ("Region", self.region_combo), ("", self.shapes_row),
            ("Training set", self.folder_edit), ("", self.summary_label)))
        layout.addWidget(self.add_button)
        layout.addWidget(self.status)
        layout.addWidget(self.examples, 1)

        self.image_combo.currentTextChanged.connect(self._on_image_changed)
        self.region_combo.currentIndexChanged.connect(self._on_region_changed)
        self.new_region_button.clicked.connect(self._on_new_region_layer)
        self.add_button.clicked.connect(self._on_add)
        self.open_button.clicked.connect(self._on_open)
        self.remove_button.clicked.connect(self._on_remove)
        self.folder_edit.line.textChanged.connect(self._on_folder_changed)
        watch_layers(self.viewer, self._on_layers_changed)
        follow_selection(self.viewer, self.image_combo, Image)
        follow_selection(self.viewer, self.labels_combo, Labels)
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
        return chosen_layer(combo, self.viewer, kind)

    def region_mode(self) -> str:
        """"whole" or "shapes"."""
        return self.region_combo.currentData()

    def selected_id(self) -> str | None:
        """Id of the example chosen in the list, or None."""
        return self.examples.selected_id()

    def _collect(self):
        """(image plane, labels plane, mask, source, region) of the current choice.

        Raises InputError with a message for the user when something is missing.
        """
        shapes = self._layer(self.shapes_combo, Shapes) if self.region_mode() == "shapes" else False
        return reviewed_example(self.viewer, self._layer(self.image_combo, Image),
                                self._layer(self.labels_combo, Labels), shapes)

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
        shapes = review_layer(self.viewer, image)
        self.region_combo.setCurrentIndex(self.region_combo.findData("shapes"))
        self.shapes_combo.setCurrentText(shapes.name)
        self.viewer.layers.selection.active = shapes
        shapes.mode = "add_rectangle"
        self.status.setText(f"Draw rectangles on '{shapes.name}' around the regions you corrected.")

    def _on_add(self) -> None:
        try:
            ex_id, message = add_example(self.training_set(), *self._collect())
        except UNetError as err:
            self._fail(str(err))
            return
        except OSError as err:
            self._fail(f"Could not write the training set: {err}")
            return
        self.status.setText(message)
        show_info(message)
        self.refresh(select=ex_id)

    def _fail(self, message: str) -> None:
        self.status.setText(message)
        show_error(message)

    def _on_folder_changed(self, text=None) -> None:
        self.refresh()

    def _on_open(self) -> None:
        ex_id = self.selected_id()
        if ex_id is None:
            return
        try:
            ex = self.training_set().load_example(ex_id)
        except UNetError as err:
            self._fail(str(err))
            return
        name = source_name(ex.record)
        image = self.viewer.add_image(ex.image, name=f"{name} (training)",
                                      metadata={EXAMPLE_KEY: opened_identity(ex.record)})
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
        self.status.setText(f"Removed {self.examples.selected_text()}.")
        self.refresh()

    def refresh(self, select: str | None = None) -> None:
        """Re-read the training set folder into the summary line and the list."""
        self.examples.show_set(self.training_set, select)
