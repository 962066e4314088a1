"""The Predictor: a loaded model on a device, serving arrays with exact tiling."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Generator

import numpy as np
import torch

from .errors import InputError
from .inputs import as_planes
from .modelio import Model, load_model
from .normalize import apply_range, percentile_range
from .progress import Progress, run_to_end
from .tiling import CLASSIC, plan_grid

log = logging.getLogger(__name__)

DEFAULT_BORDER = "none"
PRESETS = {"exact": {"tile": None, "halo": None, "border": None}, "classic": CLASSIC}

# Peak bytes per input pixel of a float32 forward pass, per base filter (measured on
# the CPU with a depth-4 U-Net in inference mode: about 900 B/px at 32 filters).
_BYTES_PER_PX_PER_FILTER = 30


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" picks CUDA, then Apple MPS, then the CPU; others must be available."""
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name in ("gpu",):
        name = "cuda"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"Unknown device {device!r}; use auto, cpu, cuda or mps.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was asked for but no CUDA GPU is available to PyTorch here; "
                         "use device 'auto' or 'cpu'.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("MPS was asked for but is not available here; use 'auto' or 'cpu'.")
    return dev


def memory_budget(device: torch.device) -> int:
    """Bytes one batch of tiles may use: half the free GPU memory, or a quarter of
    the physical memory (0.5 to 8 GB) on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(max(total // 4, 512 << 20), 8 << 30))


class Predictor:
    """A model on a device, turning images into probabilities and instance labels.

    Parameters
    ----------
    model : Model, UNet, str or path
        A loaded model, a bare network (any module with a ``config`` like
        :class:`UNetConfig`), or a model name / folder for :func:`load_model`.
    device : str
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps".
    tile : int, optional
        Maximum core size in px (rounded to the model's alignment). Default: as large
        as the device memory allows. Images at most this size run as a single tile.
    halo : int, optional
        Border read around each core. Default: the model's exact halo (96 px at
        depth 4). Smaller halos are faster but no longer exact.
    batch_size : int, optional
        Tiles per forward pass. Default: as many as fit the memory budget (max 8).
    preset : str, optional
        "exact" (the default) or "classic" (128 px cores in 256 px reflect-padded tiles).
    border : str, optional
        Beyond the image edges the network sees "reflect" (``halo`` px of mirrored
        image) or "none" (nothing: the network's own zero padding, as at the edges of
        its training crops; cheaper, since no pixels are added). Either way the
        tiled result equals one whole-image pass with the same border.
    tta : bool
        Test-time augmentation: average the probabilities of the tile, its left-right
        and up-down mirror images and its 180-degree rotation.  Four forward passes, so
        about 4x slower, for smoother maps and fewer split or merged nuclei.  Mirroring
        keeps the tiles' alignment, so the tiled result is still exact.
    """

    def __init__(self, model="nuclei", device="auto", tile=None, halo=None, batch_size=None,
                 preset=None, border=None, tta=False):
        if preset is not None:
            if preset not in PRESETS:
                raise InputError(f"Unknown tiling preset {preset!r}; use one of {sorted(PRESETS)}.")
            tile = PRESETS[preset]["tile"] if tile is None else tile
            halo = PRESETS[preset]["halo"] if halo is None else halo
            border = PRESETS[preset]["border"] if border is None else border
        self.border = DEFAULT_BORDER if border is None else str(border)
        if self.border not in ("none", "reflect"):
            raise InputError(f"Unknown border {border!r}; use 'reflect' or 'none'.")
        if isinstance(model, torch.nn.Module):
            model = Model(net=model)
        elif not isinstance(model, Model):
            model = load_model(model)
        self.model = model
        self.device = resolve_device(device)
        cfg = model.config
        self.halo = cfg.halo if halo is None else int(halo)
        if self.halo < 0:
            raise InputError(f"halo must be >= 0, got {halo}")
        if self.halo < cfg.receptive_radius:
            log.info("halo %d px < receptive radius %d px: tiled output is not exact",
                     self.halo, cfg.receptive_radius)
        bpp = _BYTES_PER_PX_PER_FILTER * cfg.base_filters * (2 ** max(cfg.depth - 4, 0))
        self.amp_dtype = None
        if self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            bpp //= 2
        budget = memory_budget(self.device)
        if tile is None:
            side = int((budget / bpp) ** 0.5) - 2 * self.halo
            tile = max(cfg.alignment, min(side, 4096))
        if int(tile) < 1:
            raise InputError(f"tile must be >= 1 px, got {tile}")
        self.tile = int(tile)
        self.tta = bool(tta)
        self._bpp, self._budget, self._batch_size = bpp, budget, batch_size
        self.channels_last = self.device.type in ("cpu", "cuda")
        self.net = model.net.to(self.device).eval()
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def grid(self, shape):
        """The :class:`~unet_core.tiling.TileGrid` used for an (H, W) plane."""
        return plan_grid(tuple(shape), self.tile, self.halo, self.model.config.alignment,
                         self.border)

    def batch_size_for(self, grid) -> int:
        """Tiles per forward pass: batches help small tiles only.  Measured on the CPU,
        four 1120 px tiles in one pass ran 1.15x slower than one at a time
        (memory traffic), so a batch holds at most ~1 MP unless the device is a GPU."""
        if self._batch_size:
            return max(1, int(self._batch_size))
        th, tw = grid.tile_shape
        by_memory = self._budget // (th * tw * self._bpp)
        by_speed = (1 << 20) // (th * tw) if self.device.type == "cpu" else 8
        return int(max(1, min(8, len(grid), by_memory, by_speed)))

    # -- probabilities -------------------------------------------------------------
    def predict_iter(self, image, out=None) -> Generator[Progress, None, np.ndarray]:
        """Generator form of :meth:`predict`: yields a Progress per batch of tiles.

        Parameters
        ----------
        image : array, (H, W), (H, W, C), (Z, H, W) or (Z, H, W, C)
        out : array-like, optional
            Where to write, float32 (C, H, W) or (Z, C, H, W) (e.g. a zarr array).

        Returns (as the generator's value) float32 (C, H, W), or (Z, C, H, W) for stacks.
        """
        planes, stack = as_planes(image, self.model.config.in_channels)
        z, h, w = planes.shape[:3]
        cout = self.model.config.out_channels
        shape = (z, cout, h, w) if stack else (cout, h, w)
        if out is None:
            out = np.empty(shape, np.float32)
        elif tuple(out.shape) != shape:
            raise InputError(f"out has shape {tuple(out.shape)}, expected {shape}")
        grid = self.grid((h, w))
        bs = self.batch_size_for(grid)
        origins = grid.origins()
        batches = [origins[i:i + bs] for i in range(0, len(origins), bs)]
        total, done = z * len(batches), 0
        yield Progress(0, total, "predict")
        norm = self.model.normalization
        for k in range(z):
            plane = planes[k]
            lo, hi = percentile_range(plane, norm.get("low", 1.0), norm.get("high", 99.8))
            target = out[k] if stack else out
            for batch in batches:
                x = np.stack([apply_range(grid.read(plane, o), lo, hi) for o in batch])
                y = self._forward(x)
                for o, tile_out in zip(batch, y):
                    dst, src = grid.core_slices(o)
                    target[(slice(None),) + dst] = tile_out[(slice(None),) + src]
                done += 1
                yield Progress(done, total, "predict", {"plane": k, "tiles": len(origins)})
        return out

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """(B, th, tw, C) float32 -> sigmoid probabilities (B, C_out, th, tw) float32."""
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).to(self.device)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        amp = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype
               else contextlib.nullcontext())
        with torch.inference_mode(), amp:
            y = torch.sigmoid(self.net(t).float())
            if self.tta:
                for dims in ((3,), (2,), (2, 3)):
                    y += torch.sigmoid(self.net(torch.flip(t, dims)).float()).flip(dims)
                y /= 4
        return y.cpu().contiguous().numpy()

    def predict(self, image, out=None) -> np.ndarray:
        """Probabilities float32 (C, H, W) (or (Z, C, H, W) for stacks) for any input."""
        return run_to_end(self.predict_iter(image, out=out))

    # -- instances -----------------------------------------------------------------
    def segment_iter(self, image, return_prob=False):
        """Generator form of :meth:`segment`; returns labels, or (labels, prob)."""
        from .instances import probs_to_labels

        prob = yield from self.predict_iter(image)
        params = self.model.card.get("instances", {})
        if prob.ndim == 3:
            labels = probs_to_labels(prob, **params)
        else:
            labels = np.zeros((prob.shape[0],) + prob.shape[2:], np.uint32)
            offset = 0
            for k in range(prob.shape[0]):
                yield Progress(k, prob.shape[0], "instances")
                lab = probs_to_labels(prob[k], **params)
                labels[k] = np.where(lab > 0, lab + offset, 0)
                offset = int(labels[k].max(initial=offset))
        yield Progress(1, 1, "instances")
        return (labels, prob) if return_prob else labels

    def segment(self, image, return_prob=False):
        """Instance labels uint32 (H, W) (or (Z, H, W)), 0 = background."""
        return run_to_end(self.segment_iter(image, return_prob=return_prob))
