"""The Segment dock widget: an image layer and a model in, an instance Labels layer out."""
from __future__ import annotations

from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from unet_core.scale import ImageSettings

from ._common import (
    TILINGS,
    PredictorCache,
    PredictorKey,
    describe_error,
    estimate_job,
    layer_pixels,
    segment_job,
)
from ._controls import ModelPicker, RunBar, ScaleControls, inference_combo, start_job, tta_check


def _spin(low: int, high: int, value: int, step: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def _warm_up_labels() -> None:
    """Create (and drop) a 1 px Labels layer.

    napari's first Labels layer of a session costs ~0.6 s of lazy imports and colour
    maps on the GUI thread.  Paying it when the dock opens keeps the first result from
    freezing the viewer (see benchmarks/bench_responsiveness.py).
    """
    import numpy as np

    Labels(np.zeros((1, 1), np.uint8))


class SegmentWidget(QWidget):
    """Segment the chosen image layer with a U-Net, in a background thread.

    Adds (or updates) a Labels layer "<image> labels" of uint32 instance ids with the
    image's scale and translate, and optionally an image layer "<image> probabilities"
    of the foreground probability (float32, 0..1).  Stacks (Z, H, W) go plane by
    plane; RGB layers are read as (H, W, 3).

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose image layers are offered and where results go.
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._cache = PredictorCache()
        self._worker = None
        self._source = None        # the image layer of the running job
        self._want = (True, False)  # (labels, probabilities) of the running job
        self._ending = ("Done", "Done")   # (bar, status line) once the running job ends
        _warm_up_labels()

        self.image_combo = QComboBox()
        self.image_combo.setToolTip("Image layer to segment")
        self.model_picker = ModelPicker()
        self.device_combo = inference_combo()
        self.tiling_combo = QComboBox()
        for text, key in TILINGS:
            self.tiling_combo.addItem(text, key)
        self.tiling_combo.setToolTip(
            "exact: large tiles with a halo that makes tiled output equal to a whole-image "
            "pass\nclassic: 128 px cores in 256 px tiles\ncustom: choose tile and halo")
        self.tile_spin = _spin(16, 8192, 512, 16, "Largest tile core in px (rounded to the model's "
                               "alignment)")
        self.halo_spin = _spin(0, 512, 96, 8, "Border read around each tile, px")
        self.batch_spin = _spin(0, 64, 0, 1, "Tiles per forward pass (auto: as memory allows)")
        self.batch_spin.setSpecialValueText("auto")
        self.custom_row = QWidget()
        row = QHBoxLayout(self.custom_row)
        row.setContentsMargins(0, 0, 0, 0)
        for text, box in (("tile", self.tile_spin), ("halo", self.halo_spin),
                          ("batch", self.batch_spin)):
            row.addWidget(QLabel(text))
            row.addWidget(box, 1)
        self.labels_check = QCheckBox("instances")
        self.labels_check.setChecked(True)
        self.labels_check.setToolTip('Add / update the Labels layer "<image> labels"')
        self.prob_check = QCheckBox("probabilities")
        self.prob_check.setToolTip('Add / update the image layer "<image> probabilities"')
        outputs = QHBoxLayout()
        outputs.addWidget(self.labels_check)
        outputs.addWidget(self.prob_check)
        outputs.addStretch(1)
        self.tta_check = tta_check()
        self.scale = ScaleControls(self)
        self.run_bar = RunBar()

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Image", self.image_combo)
        form.addRow("Model", self.model_picker)
        form.addRow("Nucleus size", self.scale.size_row)
        form.addRow("Stain", self.scale.stain_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Tiling", self.tiling_combo)
        form.addRow("", self.custom_row)
        form.addRow("", self.tta_check)
        form.addRow("Outputs", outputs)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_bar)
        layout.addStretch(1)

        self.tiling_combo.currentIndexChanged.connect(self._on_tiling_changed)
        self.labels_check.toggled.connect(self._on_outputs_changed)
        self.prob_check.toggled.connect(self._on_outputs_changed)
        self.run_bar.run.connect(self._on_run)
        self.scale.estimate.connect(self._on_estimate)
        self.run_bar.cancel.connect(self._on_cancel)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self._on_layers_changed)
        self._on_tiling_changed()
        self._on_layers_changed()

    # -- state ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a segmentation is in progress."""
        return self._worker is not None

    def image_layer(self) -> Image | None:
        """The chosen image layer, or None."""
        name = self.image_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        return layer if isinstance(layer, Image) else None

    def predictor_key(self) -> PredictorKey:
        """Model, device and tiling as chosen in the widget."""
        preset = self.tiling_combo.currentData()
        device, backend, precision = self.device_combo.currentData()
        common = {"model": self.model_picker.model_path(), "device": device, "backend": backend,
                  "precision": precision, "tta": self.tta_check.isChecked()}
        if preset != "custom":
            return PredictorKey(preset=preset, **common)
        return PredictorKey(tile=self.tile_spin.value(), halo=self.halo_spin.value(),
                            batch_size=self.batch_spin.value() or None, **common)

    # -- slots ---------------------------------------------------------------------
    def _on_layers_changed(self, event=None) -> None:
        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        active = self.viewer.layers.selection.active
        if current in names:
            self.image_combo.setCurrentText(current)
        elif isinstance(active, Image):
            self.image_combo.setCurrentText(active.name)
        elif names:
            self.image_combo.setCurrentIndex(len(names) - 1)
        self.image_combo.blockSignals(False)
        self._on_outputs_changed()

    def _on_tiling_changed(self, index=None) -> None:
        self.custom_row.setVisible(self.tiling_combo.currentData() == "custom")

    def _on_outputs_changed(self, checked=None) -> None:
        ready = self.image_combo.count() > 0 and (self.labels_check.isChecked()
                                                  or self.prob_check.isChecked())
        self.run_bar.run_button.setEnabled(ready and not self.running)

    def _ready(self):
        """(image layer, predictor key) when a job can start, else None (with a message)."""
        layer = self.image_layer()
        if self.running:
            return None
        if layer is None:
            show_error("Open an image and choose it under 'Image' first.")
            return None
        key = self.predictor_key()
        if key.model is None:
            show_error("No model is installed: choose a model folder with Model > Browse...")
            return None
        self._source, self._ending = layer, ("Done", "Done")
        return layer, key

    def _on_run(self) -> None:
        ready = self._ready()
        if ready:
            layer, key = ready
            self._want = (self.labels_check.isChecked(), self.prob_check.isChecked())
            start_job(self, f"Segmenting {layer.name}", segment_job, self._cache, key,
                      layer_pixels(layer), self.scale.diameter(), self.scale.stain(),
                      self._want[1], layer.name)

    def _on_estimate(self) -> None:
        ready = self._ready()
        if ready:
            layer, key = ready
            start_job(self, f"Estimating the nuclei of {layer.name}", estimate_job, self._cache,
                      key, layer_pixels(layer), self.scale.stain())

    def _on_cancel(self) -> None:
        if self._worker is not None:
            self._worker.quit()

    def _on_yielded(self, p) -> None:
        self.run_bar.report(p)

    def _on_returned(self, result) -> None:
        if isinstance(result, ImageSettings):
            self.scale.show_estimate(result)
            self._ending = ("Done", f"Estimate: {result.describe()}")
            return
        src = self._source
        place = {"scale": src.scale, "translate": src.translate}
        want_labels, want_prob = self._want
        if want_labels:
            self._put_layer(Labels, f"{src.name} labels", result.labels, place)
        if want_prob and result.prob is not None:
            fg = result.prob if result.lazy else \
                (result.prob[:, 0] if result.prob.ndim == 4 else result.prob[0])
            self._put_layer(Image, f"{src.name} probabilities", fg,
                            dict(place, colormap="magma", contrast_limits=(0.0, 1.0),
                                 blending="additive"))
        n = result.objects if result.objects is not None else int(result.labels.max(initial=0))
        how = f"; {result.settings.describe()}" if result.settings else ""
        self._ending = ("Done", f"{n} object{'s' if n != 1 else ''} in {result.seconds:.1f} s "
                                f"({result.model}; {result.engine}{how})")

    def _on_errored(self, exc) -> None:
        message = describe_error(exc)
        self._ending = ("Failed", f"Failed: {message}")
        show_error(message)

    def _on_aborted(self) -> None:
        self._ending = ("Cancelled", "Cancelled")

    def _on_finished(self) -> None:
        outcome, message = self._ending
        self.run_bar.end(message, outcome)
        self._worker = self._source = None
        self._on_outputs_changed()

    def _put_layer(self, kind, name: str, data, kwargs: dict) -> None:
        """Replace the data of the layer ``name`` if it is a ``kind`` of the same
        dimensionality, else add a new layer."""
        layers = self.viewer.layers
        old = layers[name] if name in layers else None
        multiscale = isinstance(data, list)     # a lazily read zarr pyramid
        ndim = data[0].ndim if multiscale else data.ndim
        if isinstance(old, kind) and old.ndim == ndim and old.multiscale == multiscale:
            old.data = data
            old.scale, old.translate = kwargs["scale"], kwargs["translate"]
            return
        if isinstance(old, kind) and old.ndim == ndim:     # in memory <-> lazy pyramid
            layers.remove(old)
        if multiscale:
            kwargs = dict(kwargs, multiscale=True)
        layer = kind(data, name=name, **kwargs)
        layers.append(layer)
