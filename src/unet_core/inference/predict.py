"""The Predictor: a loaded model on a device, serving arrays with exact tiling."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
from collections.abc import Generator

import numpy as np
import torch

from ..errors import InputError
from ..files.inputs import arrange_planes, as_planes
from ..models.modelio import DEFAULT_MODEL, Model, load_model
from ..progress import PlaneTiles, PredictStart, Progress, Stage, run_to_end
from ..segmentation import instances_torch
from ..segmentation.instances import labels_to_grid, probs_to_labels
from . import backends
from .backends import PRECISIONS
from .content import content_box, crop
from .devices import memory_budget, resolve_device
from .image_settings import ImageSettings, SettingsMixin
from .normalize import apply_range, percentile_range, percentiles
from .options import PredictOptions
from .plausibility import check_labels
from .predictor_engine import Network
from .resample import resample, resampled_shape
from .sizing import parse_diameter
from .stain import parse_stain
from .tiling import plan_grid, run_tiles

log = logging.getLogger(__name__)

# Peak bytes per input pixel of a float32 forward pass, per base filter (measured on
# the CPU with a depth-4 U-Net in inference mode: about 900 B/px at 32 filters).
_BYTES_PER_PX_PER_FILTER = 30


class Predictor(SettingsMixin):
    """A model on a device, turning images into probabilities and instance labels.

    Parameters
    ----------
    model : Model, UNet, str or path
        A loaded model, a bare network (any module with a ``config`` like
        :class:`UNetConfig`), or a model name / folder for :func:`load_model`.
    options : PredictOptions, optional
        Device, tiling, test-time augmentation, nucleus size, stain, backend and
        precision (:class:`~unet_core.inference.options.PredictOptions`, which documents each
        and holds their defaults).
    **changes
        Options by name (``Predictor(model, device="cpu", tile=512)``), over
        ``options``.

    The ``tile``, ``halo``, ``border``, ``backend`` and ``precision`` attributes hold
    what the options resolved to (:attr:`options` gives them back as options).
    """

    def __init__(self, model=DEFAULT_MODEL, options: PredictOptions | None = None, **changes):
        if options is not None and not isinstance(options, PredictOptions):
            raise InputError(f"options must be a PredictOptions, got {options!r}; give the "
                             "others by name, e.g. Predictor(model, device='cpu').")
        options = (options or PredictOptions()).replace(**changes)
        tile, halo, self.border = options.tiling()
        if isinstance(model, torch.nn.Module):
            model = Model(net=model)
        elif not isinstance(model, Model):
            model = load_model(model)
        self.model = model
        self.device = resolve_device(options.device)
        cfg = model.config
        self.halo = cfg.halo if halo is None else halo
        if self.halo < cfg.receptive_radius:
            log.info("halo %d px < receptive radius %d px: tiled output is not exact",
                     self.halo, cfg.receptive_radius)
        bpp = _BYTES_PER_PX_PER_FILTER * cfg.base_filters * (2 ** max(cfg.depth - 4, 0))
        backend, precision = backends.resolve(options.backend, options.precision, self.device)
        if self.device.type == "cuda" and precision != "f32":
            bpp //= 2
        budget = memory_budget(self.device)
        if tile is None:
            side = int((budget / bpp) ** 0.5) - 2 * self.halo
            tile = max(cfg.alignment, min(side, 4096))
        self.tile = int(tile)
        self.diameter, self.stain = options.diameter, options.stain
        self.last_settings: ImageSettings | None = None
        #: after :meth:`segment`: a warning when its result looks implausible, else None
        self.last_warning: str | None = None
        self._asked = options
        self._bpp, self._budget = bpp, budget
        self.net = model.net
        #: What runs the network (:class:`~unet_core.inference.predictor_engine.Network`), shared
        #: with the copies of :meth:`with_options`: one export and compile per Predictor.
        self.network = Network(self.net, self.device, backend, precision, options.tta)

    @classmethod
    def from_options(cls, model, options: PredictOptions) -> Predictor:
        """The Predictor of ``model`` with ``options``."""
        return cls(model, options)

    @property
    def options(self) -> PredictOptions:
        """The options this Predictor runs with, resolved (tile, halo, border, backend
        and precision as decided here): a Predictor made from them runs alike."""
        precision = self.precision if self.precision in PRECISIONS else self._asked.precision
        return self._asked.replace(preset=None, tile=self.tile, halo=self.halo,
                                   border=self.border, diameter=self.diameter, stain=self.stain,
                                   backend=self.backend, precision=precision)

    def with_options(self, diameter=None, stain=None) -> Predictor:
        """A Predictor sharing this one's network and device, with another ``diameter``
        and/or ``stain`` (None keeps this one's)."""
        other = copy.copy(self)
        if diameter is not None:
            other.diameter = parse_diameter(diameter)
        if stain is not None:
            other.stain = parse_stain(stain)
        other.last_settings = None
        other.last_warning = None
        return other

    # -- the network (:class:`~unet_core.inference.predictor_engine.Network`) -----------------
    tta = property(lambda self: self.network.tta, doc="Test-time augmentation on or off.")
    backend = property(lambda self: self.network.backend,
                       doc='What runs the network: "torch", "openvino" or "onnxruntime".')
    precision = property(lambda self: self.network.precision,
                         doc='"f32", "bf16" or (CUDA) "amp".')
    engine = property(lambda self: self.network.engine,
                      doc="The :mod:`~unet_core.inference.backends` engine, or None before the first image.")
    engine_info = property(lambda self: self.network.info,
                           doc="What making the engine cost (:func:`~unet_core.inference.backends.make_engine`).")

    def prepare_iter(self, shape=None) -> Generator[Progress, None, dict]:
        """Make and compile the engine (:meth:`~unet_core.inference.predictor_engine.Network.prepare_iter`)."""
        return self.network.prepare_iter(shape)

    def grid(self, shape):
        """The :class:`~unet_core.inference.tiling.TileGrid` used for an (H, W) plane."""
        return plan_grid(tuple(shape), self.tile, self.halo, self.model.config.alignment,
                         self.border)

    def batch_size_for(self, grid) -> int:
        """Tiles per forward pass: batches help small tiles only.  Measured on the CPU,
        four 1120 px tiles in one pass ran 1.15x slower than one at a time
        (memory traffic), so a batch holds at most ~1 MP unless the device is a GPU."""
        if self._asked.batch_size:
            return self._asked.batch_size
        th, tw = grid.tile_shape
        by_memory = self._budget // (th * tw * self._bpp)
        by_speed = (1 << 20) // (th * tw) if self.device.type == "cpu" else 8
        return int(max(1, min(8, len(grid), by_memory, by_speed)))

    # -- probabilities -------------------------------------------------------------
    def predict_iter(self, image, out=None, settings=None) -> Generator[Progress, None, np.ndarray]:
        """Generator form of :meth:`predict`: yields a Progress per batch of tiles.

        Parameters
        ----------
        image : array, (H, W), (H, W, C), (Z, H, W) or (Z, H, W, C)
        out : array-like, optional
            Where to write, float32 (C, H, W) or (Z, C, H, W) (e.g. a zarr array).
        settings : ImageSettings, optional
            From :meth:`settings_for`; decided here when not given.

        Returns (as the generator's value) float32 (C, H, W), or (Z, C, H, W) for stacks,
        on the image's own pixel grid.
        """
        planes, stack = arrange_planes(image)
        z, h, w = planes.shape[:3]
        cout = self.model.config.out_channels
        shape = (z, cout, h, w) if stack else (cout, h, w)
        if out is None:
            out = np.empty(shape, np.float32)
        elif tuple(out.shape) != shape:
            raise InputError(f"out has shape {tuple(out.shape)}, expected {shape}")
        for k, prob_s, _, box in (yield from self._planes_iter(planes, settings,
                                                                 out if stack else out[None])):
            if prob_s is not None:
                dst = out[k] if stack else out
                dst[...] = 0
                dst[(slice(None),) + box] = _to_grid(prob_s, _box_shape(box))
        return out

    def _planes_iter(self, planes, settings, out):
        """Probabilities of every plane at the network's scale, inside the plane's
        content box (:func:`~unet_core.inference.content.content_box`).  Yields Progress; returns a
        list of (plane index, prob (C, h, w) at the network's scale, or None when it was
        written into ``out[k]`` directly, settings, box)."""
        z, h, w = planes.shape[:3]
        as_planes(planes[:, :1, :1], self.model.config.in_channels)  # channel rules, on 1 px
        boxes = [content_box(planes[k]) for k in range(z)]
        yield from self.prepare_iter()
        if settings is None:
            yield Progress(0, 1, Stage.ESTIMATE)
            settings = yield from self._settings_iter(crop(planes[z // 2], boxes[z // 2]))
            per_plane = z > 1
        else:
            per_plane = False
        self.last_settings = settings
        shapes = [resampled_shape((b[0].stop - b[0].start, b[1].stop - b[1].start), settings.scale)
                  for b in boxes]
        grids = {shape: self.grid(shape) for shape in set(shapes)}
        n_batches = {shape: -(-len(g) // self.batch_size_for(g)) for shape, g in grids.items()}
        total, done, results = sum(n_batches[sh] for sh in shapes), 0, []
        first = grids[shapes[0]]
        yield from self.prepare_iter((self.batch_size_for(first), self.model.config.in_channels)
                                     + first.tile_shape)
        yield Progress(0, total, Stage.PREDICT, PredictStart(settings.as_record()))
        norm = self.model.normalization
        cout = self.model.config.out_channels
        for k in range(z):
            s, sub = settings, crop(planes[k], boxes[k])
            if per_plane and k != z // 2:
                lo, hi = percentile_range(self._stained(sub, s.stain, s.white), *percentiles(norm))
                s = dataclasses.replace(s, low=lo, high=hi)
            view = self.model_view(sub, s)
            grid = grids[shapes[k]]
            direct = (s.scale == 1.0 and out is not None
                      and boxes[k] == (slice(0, h), slice(0, w)))
            target = out[k] if direct else np.empty((cout,) + shapes[k], np.float32)
            for _ in run_tiles(grid, view, self.network.forward, target, self.batch_size_for(grid),
                               functools.partial(apply_range, lo=s.low, hi=s.high)):
                done += 1
                yield Progress(done, total, Stage.PREDICT, PlaneTiles(k, len(grid)))
            results.append((k, None if direct else target, s, boxes[k]))
        return results

    def predict(self, image, out=None, settings=None) -> np.ndarray:
        """Probabilities float32 (C, H, W) (or (Z, C, H, W) for stacks) for any input."""
        return run_to_end(self.predict_iter(image, out=out, settings=settings))

    # -- instances -----------------------------------------------------------------
    def segment_iter(self, image, return_prob=False, settings=None, lock=None):
        """Generator form of :meth:`segment`; returns labels, or (labels, prob).

        ``lock`` (a :class:`threading.Lock`), when given, is held while the network
        runs and released for the instances: threads that share one device then take
        turns on it while their watersheds run side by side."""
        planes, stack = arrange_planes(image)
        z, h, w = planes.shape[:3]
        cout = self.model.config.out_channels
        prob = np.empty((z, cout, h, w), np.float32)
        with lock if lock is not None else contextlib.nullcontext():
            results = yield from self._planes_iter(planes, settings, prob)
        params = self.instance_params
        labels = np.zeros((z, h, w), np.uint32)
        offset = 0
        for k, prob_s, s, box in results:
            yield Progress(k, z, Stage.INSTANCES)
            lab = np.zeros((h, w), np.uint32)
            if prob_s is None:
                lab[...] = self._labels_of(prob[k], params)
            else:
                lab_s = self._labels_of(prob_s, params)
                if s.scale != 1.0:
                    lab_s = labels_to_grid(lab_s, prob_s, _box_shape(box),
                                           params.get("fg_threshold", 0.5))
                lab[box] = lab_s
                if return_prob:
                    prob[k] = 0
                    prob[k][(slice(None),) + box] = _to_grid(prob_s, _box_shape(box))
            labels[k] = np.where(lab > 0, lab + offset, 0)
            offset = int(labels[k].max(initial=offset))
        yield Progress(z, z, Stage.INSTANCES)
        self.last_warning = check_labels(labels, self.last_settings, self.model.diameter)
        if self.last_warning:
            log.warning("%s", self.last_warning)
        if not stack:
            labels, prob = labels[0], prob[0]
        return (labels, prob) if return_prob else labels

    def _labels_of(self, prob: np.ndarray, params: dict) -> np.ndarray:
        """Instance labels of one plane's probabilities: on a CUDA device, by the torch
        instance step there (:mod:`unet_core.segmentation.instances_torch`), else on the CPU."""
        if self.device.type == "cuda":
            return instances_torch.probs_to_labels(torch.from_numpy(prob).to(self.device), **params)
        return probs_to_labels(prob, **params)

    @property
    def instance_params(self) -> dict:
        """Keyword arguments of :func:`~unet_core.segmentation.instances.probs_to_labels` from the card."""
        return dict(self.model.card.get("instances", {}))

    def segment(self, image, return_prob=False, settings=None, lock=None):
        """Instance labels uint32 (H, W) (or (Z, H, W)), 0 = background."""
        return run_to_end(self.segment_iter(image, return_prob=return_prob, settings=settings,
                                            lock=lock))


def _box_shape(box) -> tuple[int, int]:
    return box[0].stop - box[0].start, box[1].stop - box[1].start


def _to_grid(prob_s: np.ndarray, shape) -> np.ndarray:
    """(C, h, w) probabilities at the network's scale -> (C, H, W) on the image grid."""
    if prob_s.shape[1:] == tuple(shape):
        return prob_s
    return np.moveaxis(resample(np.moveaxis(prob_s, 0, -1), shape), -1, 0)
