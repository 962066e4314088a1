"""The Segment dock widget: an image layer and a model in, an instance Labels layer out."""
from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_warning
from qtpy.QtWidgets import QWidget

from unet_core.inference.image_settings import ImageSettings

from ._common import TILINGS, PredictorCache, PredictorKey, estimate_job, layer_pixels, segment_job
from ._controls import (
    OUTPUT_KEY,
    ModelPicker,
    RunBar,
    ScaleControls,
    boxes_row,
    check_box,
    chosen_layer,
    combo_box,
    fill_layer_combo,
    follow_selection,
    form_row,
    inference_combo,
    make_form,
    scroll_body,
    spin_box,
    tta_check,
    watch_layers,
)
from ._jobs import JobRunner
from ._layers import warm_up_labels
from ._result_cache import RESULT_KEY, remove_leftovers_soon, remove_unused


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
        self._source = None        # the image layer of the running job
        self._want = (True, False)  # (labels, probabilities) of the running job
        self._results = set()      # folders of the lazy results this widget made
        warm_up_labels()
        remove_leftovers_soon()

        self.image_combo = combo_box("Image layer to segment")
        self.model_picker = ModelPicker()
        self.device_combo = inference_combo()
        self.tiling_combo = combo_box(
            "exact: large tiles with a halo that makes tiled output equal to a whole-image "
            "pass\nclassic: 128 px cores in 256 px tiles\ncustom: choose tile and halo", TILINGS)
        self.tile_spin = spin_box(16, 8192, 512, 16, "Largest tile core in px (rounded to the "
                                  "model's alignment)")
        self.halo_spin = spin_box(0, 512, 0, 8, "Border read around each tile, px (model's: "
                                  "the model's exact halo, which makes tiled output equal to "
                                  "a whole-image pass)", special="model's")
        self.batch_spin = spin_box(0, 64, 0, 1, "Tiles per forward pass (auto: as memory allows)",
                                   special="auto")
        self.custom_row = form_row(("tile", self.tile_spin), ("halo", self.halo_spin),
                                   ("batch", self.batch_spin))
        self.labels_check = check_box("instances", 'Add / update the Labels layer "<image> labels"',
                                      True)
        self.prob_check = check_box("probabilities",
                                    'Add / update the image layer "<image> probabilities"')
        self.tta_check = tta_check()
        self.scale = ScaleControls(self)
        self.run_bar = RunBar()
        self.jobs = JobRunner(self.run_bar, "Segmentation", result=self._on_result,
                              finished=self._on_job_over)

        layout = scroll_body(self)
        layout.addLayout(make_form(
            ("Image", self.image_combo), ("Model", self.model_picker),
            ("Nucleus size", self.scale.size_row), ("Stain", self.scale.stain_combo),
            ("Device", self.device_combo), ("Tiling", self.tiling_combo),
            ("", self.custom_row), ("", self.tta_check),
            ("Outputs", boxes_row(self.labels_check, self.prob_check))))
        layout.addWidget(self.run_bar)
        layout.addStretch(1)

        self.tiling_combo.currentIndexChanged.connect(self._on_tiling_changed)
        self.labels_check.toggled.connect(self._on_outputs_changed)
        self.prob_check.toggled.connect(self._on_outputs_changed)
        self.run_bar.run.connect(self._on_run)
        self.scale.estimate.connect(self._on_estimate)
        watch_layers(self.viewer, self._on_layers_changed)
        follow_selection(self.viewer, self.image_combo, Image)
        self._on_tiling_changed()
        self._on_layers_changed()

    # -- state ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a segmentation is in progress."""
        return self.jobs.running

    def image_layer(self) -> Image | None:
        """The chosen image layer, or None."""
        return chosen_layer(self.image_combo, self.viewer, Image)

    def predictor_key(self) -> PredictorKey:
        """Model, device and tiling as chosen in the widget."""
        preset = self.tiling_combo.currentData()
        device, backend, precision = self.device_combo.currentData()
        common = {"model": self.model_picker.model_path(), "device": device, "backend": backend,
                  "precision": precision, "tta": self.tta_check.isChecked()}
        if preset != "custom":
            return PredictorKey(preset=preset, **common)
        return PredictorKey(tile=self.tile_spin.value(), halo=self.halo_spin.value() or None,
                            batch_size=self.batch_spin.value() or None, **common)

    # -- slots ---------------------------------------------------------------------
    def _on_layers_changed(self, event=None) -> None:
        fill_layer_combo(self.image_combo, self.viewer, Image)
        self._on_outputs_changed()
        self._remove_unused_results()

    def _remove_unused_results(self) -> None:
        """Lazy results of this widget that no layer shows any more leave the cache."""
        if self._results:
            self._results -= set(remove_unused(self._results, self.viewer.layers))

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
        self._source = layer
        return layer, key

    def _on_run(self) -> None:
        ready = self._ready()
        if ready:
            layer, key = ready
            self._want = (self.labels_check.isChecked(), self.prob_check.isChecked())
            self.jobs.start(f"Segmenting {layer.name}", segment_job, self._cache, key,
                            layer_pixels(layer), self.scale.diameter(), self.scale.stain(),
                            self._want[1], layer.name)

    def _on_estimate(self) -> None:
        ready = self._ready()
        if ready:
            layer, key = ready
            self.jobs.start(f"Estimating the nuclei of {layer.name}", estimate_job, self._cache,
                            key, layer_pixels(layer), self.scale.stain())

    def _on_result(self, result) -> str:
        if isinstance(result, ImageSettings):
            self.scale.show_estimate(result)
            return f"Estimate: {result.describe()}"
        src = self._source
        if result.settings is not None:
            self.scale.show_resolved(result.settings)
        lazy = {RESULT_KEY: str(result.folder)} if result.lazy else {}
        place = {"scale": src.scale, "translate": src.translate, "metadata": lazy}
        want_labels, want_prob = self._want
        if result.lazy:
            self._results.add(result.folder)
        if want_labels:
            self._put_layer(Labels, f"{src.name} labels", result.labels, place)
        if want_prob and result.prob is not None:
            fg = result.prob if result.lazy else \
                (result.prob[:, 0] if result.prob.ndim == 4 else result.prob[0])
            self._put_layer(Image, f"{src.name} probabilities", fg,
                            dict(place, colormap="magma", contrast_limits=(0.0, 1.0),
                                 blending="additive",
                                 metadata={OUTPUT_KEY: "probabilities", **lazy}))
        self._remove_unused_results()
        n = result.objects if result.objects is not None else int(result.labels.max(initial=0))
        how = f"; {result.settings.describe()}" if result.settings else ""
        notes = (result.settings.notes if result.settings else []) + \
            ([result.warning] if result.warning else [])
        for note in notes:
            show_warning(note)
        return (f"{n} object{'s' if n != 1 else ''}{_per_plane(result)} in {result.seconds:.1f} s "
                f"({result.model}; {result.engine}{how})" + "".join(f"\n{t}" for t in notes))

    def _on_job_over(self) -> None:
        self._source = None
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
            kept = {k: v for k, v in old.metadata.items() if k != RESULT_KEY}
            old.metadata = {**kept, **kwargs.get("metadata", {})}
            return
        if isinstance(old, kind) and old.ndim == ndim:     # in memory <-> lazy pyramid
            layers.remove(old)
        if multiscale:
            kwargs = dict(kwargs, multiscale=True)
        layer = kind(data, name=name, **kwargs)
        layers.append(layer)


#: Planes of a stack whose counts the status lists (then "...").
PLANES_LISTED = 8


def _per_plane(result) -> str:
    """" (per plane: 40, 38, ...)" for a stack's labels in memory, else ""."""
    labels = result.labels
    if result.lazy or not isinstance(labels, np.ndarray) or labels.ndim != 3:
        return ""
    counts = [int(np.unique(plane[plane > 0]).size) for plane in labels[:PLANES_LISTED]]
    more = ", ..." if labels.shape[0] > PLANES_LISTED else ""
    return f" (per plane: {', '.join(map(str, counts))}{more})"
