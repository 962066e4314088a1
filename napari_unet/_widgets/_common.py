"""Non-Qt helpers of the widgets: predictor cache and the worker jobs.

Everything here runs without Qt or napari; the generator "jobs" run inside napari
thread workers and only yield :class:`~unet_core.Progress` and return results.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from pathlib import Path

from unet_core import PredictOptions, Predictor, Progress, load_model
from unet_core.files.lazyio import indexable
from unet_core.progress import Stage
from unet_core.scaleout.route import route

log = logging.getLogger(__name__)

#: Tiling choices of the Segment widget: (label, preset key).
TILINGS = (("exact (default)", "exact"), ("classic 128 -> 256", "classic"), ("custom", "custom"))

#: What a Predictor is built from: the model, then every :class:`~unet_core.PredictOptions`
#: field but the per-image ones (nucleus size and stain go to
#: :meth:`~unet_core.Predictor.with_options`), with the options' defaults.
_PER_IMAGE = ("diameter", "stain")
PredictorKey = make_dataclass(
    "PredictorKey", [("model", str)] + [(f.name, f.type, field(default=f.default))
                                        for f in fields(PredictOptions) if f.name not in _PER_IMAGE],
    frozen=True, namespace={
        "__doc__": "Everything a :class:`~unet_core.Predictor` is built from.",
        "options": lambda self: PredictOptions(**{k: v for k, v in asdict(self).items()
                                                  if k != "model"})})


class PredictorCache:
    """Holds the last Predictor and rebuilds it only when its key (or model file) changes.

    One slot only: a second model would double the (GPU) memory, and a
    :class:`~unet_core.Model` must not be shared between devices.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._stamp = None
        self._predictor = None

    def get(self, key: PredictorKey) -> Predictor:
        """The Predictor for ``key``, loading the model if needed (call from a worker)."""
        card = Path(key.model) / "model.json"
        stamp = (key, card.stat().st_mtime_ns if card.exists() else None)
        with self._lock:
            if self._predictor is None or stamp != self._stamp:
                self._predictor = self._stamp = None
                self._predictor = Predictor(load_model(key.model), key.options())
                self._stamp = stamp
            return self._predictor


@dataclass
class SegmentResult:
    """What a segment job returns: labels uint32 (H, W) / (Z, H, W), probabilities
    float32 (C, H, W) / (Z, C, H, W), seconds taken, the model's name and the
    image's settings (diameter, scale, stain).

    For layers segmented block by block (``lazy``), ``labels`` and ``prob`` are zarr
    arrays, or lists of them (a multiscale pyramid, largest first) for images over
    1024 px; ``prob`` is the foreground channel only, or None; ``objects`` the number
    of nuclei.
    """

    labels: object
    prob: object
    seconds: float
    model: str
    settings: object = None
    engine: str = ""     # what ran the network, e.g. "OpenVINO bf16, compiled in 1.2 s"
    objects: int | None = None
    lazy: bool = False
    folder: Path | None = None
    warning: str | None = None   # the result looks implausible: which settings to check


def layer_pixels(layer):
    """The full-resolution data of an image layer (level 0 of a multiscale one)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def is_lazy(data) -> bool:
    """Whether layer data goes block by block (:func:`unet_core.scaleout.route.route`): not in
    memory (dask, zarr, ...), or a 2D image larger than
    :data:`unet_core.files.lazyio.SMALL_PIXELS`."""
    return route(data).blocks


def segment_job(cache: PredictorCache, key: PredictorKey, data, diameter="auto", stain="auto",
                want_prob: bool = True, name: str = "image"):
    """Generator job: load (or reuse) the predictor, then segment ``data``.

    Layers that are not in memory or are large are read window by window and written
    block by block into zarr pyramids (:func:`unet_core.scaleout.large.segment_to_pyramid_iter`);
    others are read whole, here, off the GUI thread.

    Yields Progress (stage "load", then the engine's); returns a :class:`SegmentResult`.
    """
    yield Progress(0, 1, Stage.LOAD)
    pred = cache.get(key).with_options(diameter=diameter, stain=stain)
    t0 = time.perf_counter()
    compiled = pred.engine is None
    if is_lazy(data):
        from unet_core.scaleout.large import segment_to_pyramid_iter

        from ._result_cache import release, result_folder

        folder = result_folder(name)
        try:
            res = yield from segment_to_pyramid_iter(pred, data, folder, want_prob=want_prob)
        except BaseException:      # failed or cancelled (GeneratorExit): nothing will show it
            release(folder)
            raise
        one = lambda levels: levels if levels is None or len(levels) > 1 else levels[0]  # noqa: E731
        return SegmentResult(one(res["labels"]), one(res["foreground"]), time.perf_counter() - t0,
                             pred.model.name, res["image_settings"],
                             engine_text(pred, compiled), objects=res["objects"],
                             lazy=True, folder=folder)
    # lazy stacks stay lazy: the engine reads one plane at a time
    labels, prob = yield from pred.segment_iter(indexable(data), return_prob=True)
    return SegmentResult(labels, prob, time.perf_counter() - t0, pred.model.name,
                         pred.last_settings, engine_text(pred, compiled),
                         warning=pred.last_warning)


def estimate_job(cache: PredictorCache, key: PredictorKey, data, stain="auto"):
    """Generator job: the image's :class:`~unet_core.inference.image_settings.ImageSettings` with an
    estimated nucleus diameter."""
    yield Progress(0, 1, Stage.LOAD)
    pred = cache.get(key).with_options(diameter="auto", stain=stain)
    return (yield from pred.settings_iter(data))


def engine_text(pred: Predictor, compiled: bool = False) -> str:
    """What ran the network ("OpenVINO bf16"), with the compile time when this run paid it."""
    from unet_core.inference.backends import describe

    text = describe(pred.backend, pred.precision)
    if compiled and pred.engine_info.get("seconds") is not None:
        text += f", compiled in {pred.engine_info['seconds']:.1f} s"
    return text


def batch_job(cache: PredictorCache, key: PredictorKey, input_dir, output_dir, diameter="auto",
              stain="auto", scheduler=None, **kwargs):
    """Generator job: :func:`unet_core.scaleout.batch.batch_iter` with the cached predictor, at
    ``diameter`` ("auto": estimated per file) and ``stain``; on this process
    (``scheduler`` None), a local dask cluster ("local") or a scheduler's address."""
    from unet_core.scaleout.batch import batch_iter

    yield Progress(0, 1, Stage.LOAD)
    pred = cache.get(key).with_options(diameter=diameter, stain=stain)
    if not scheduler:
        return (yield from batch_iter(pred, input_dir, output_dir, **kwargs))
    from unet_core.scaleout.distributed import close_client, make_client

    client = make_client(scheduler)
    try:
        return (yield from batch_iter(pred, input_dir, output_dir, client=client, **kwargs))
    finally:
        close_client(client)
