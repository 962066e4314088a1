"""Inference options: the one place their defaults live.

:class:`PredictOptions` holds what a :class:`~unet_core.inference.predict.Predictor` is built
from besides its model: device, tiling, test-time augmentation, nucleus size, stain
and what runs the network.  The Predictor, the ``predict`` and ``batch`` commands
(their options are built from the fields: name, default, help and choices), the
widgets' predictor keys and the dask workers all read them from here.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field, fields

import torch

from ..errors import InputError
from .backends import BACKENDS, PRECISIONS
from .devices import DEFAULT_DEVICE
from .sizing import parse_diameter
from .stain import STAIN_CHOICES, parse_stain
from .tiling import BORDERS, CLASSIC

#: Tiling presets: what ``preset`` sets where ``tile``, ``halo`` and ``border`` are not given.
PRESETS = {"exact": {"tile": None, "halo": None, "border": None}, "classic": CLASSIC}
#: What the network sees beyond the image edges when neither ``border`` nor a preset says.
DEFAULT_BORDER = "none"


def _opt(default, text: str, kind=None, metavar: str | None = None, choices=None,
         cli: bool = True):
    """A field with what its command-line option needs: ``text`` (its help), an
    argparse type ``kind``, ``metavar`` and ``choices``; ``cli`` False keeps it off the
    command line."""
    meta = {"help": text, "type": kind, "metavar": metavar, "choices": choices, "cli": cli}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PredictOptions:
    """How a :class:`~unet_core.inference.predict.Predictor` runs its model.

    Values are checked (and normalised: ``diameter`` "12" becomes 12.0, ``stain``
    "H&E" becomes "he") when the options are made; a bad one is an
    :class:`~unet_core.errors.InputError` that says what to give instead.  ``tile``,
    ``halo`` and ``batch_size`` left at None are decided by the Predictor (from the
    device memory and the model); ``preset`` fills in those of ``tile``, ``halo`` and
    ``border`` not given.  Each field's help text is its command-line option's.

    Attributes
    ----------
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
        image) or "none" (the default: nothing, the network's own zero padding, as at
        the edges of its training crops; cheaper, since no pixels are added). Either
        way the tiled result equals one whole-image pass with the same border.
    tta : bool
        Test-time augmentation: average the probabilities of the tile, its left-right
        and up-down mirror images and its 180-degree rotation.  Four forward passes, so
        about 4x slower, for smoother maps and fewer split or merged nuclei.  Mirroring
        keeps the tiles' alignment, so the tiled result is still exact.
    diameter : "auto", float or None
        Nucleus diameter in the image's px.  The image is resampled so its nuclei come
        to the model's own ``diameter`` (model card), segmented with the exact tiling
        at that scale, and the results are brought back to the image's grid.  "auto"
        (default) estimates it from the image (:mod:`unet_core.inference.sizing`); None uses
        the image as it is.
    stain : str
        "auto" (default: decided from the channels and the background),
        "fluorescence", "brightfield" or "he" (see :mod:`unet_core.inference.stain`).
    backend : str
        What runs the network: "auto" (on a CPU the fastest installed of OpenVINO and
        ONNX Runtime, else PyTorch; on a GPU PyTorch), "torch", "openvino",
        "onnxruntime".  See :mod:`unet_core.inference.backends`.
    precision : str
        "auto" (f32 on a CPU; PyTorch's mixed precision on a GPU), "f32" or "bf16"
        (OpenVINO on CPUs that run it natively: faster, changes some labels).
    """

    device: str = _opt(DEFAULT_DEVICE, "auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:1, mps")
    tile: int | None = _opt(None, "maximum tile core in px, rounded to the model's alignment "
                            "(default: as large as the device memory allows)", int, "PX")
    halo: int | None = _opt(None, "border read around each tile core in px (default: exact, "
                            "from the model; smaller is faster but no longer exact)",
                            int, "PX")
    batch_size: int | None = _opt(None, "tiles per forward pass (default: as many as the "
                                  "memory allows, at most 8)", int, "N")
    preset: str | None = _opt(None, "tiling preset: exact (large tiles with the exact halo) or "
                              "classic (128 px cores in 256 px reflect-padded tiles)",
                              choices=tuple(PRESETS))
    border: str | None = _opt(None, "what the network sees beyond the image edges: none (its "
                              "own zero padding) or reflect (halo px of mirrored image)",
                              choices=BORDERS, cli=False)
    tta: bool = _opt(False, "test-time augmentation: average over the image and its mirror "
                     "images (4x slower, fewer split or merged nuclei)")
    diameter: float | str | None = _opt(
        "auto", "typical nucleus diameter in px; images are resampled so their nuclei come to "
        "the model's own size. auto: estimated from each image; none: the image as it is",
        metavar="auto|PX|none")
    stain: str = _opt("auto", "auto (from the channels and the background), fluorescence, "
                      "brightfield (inverted) or he (hematoxylin by colour deconvolution)",
                      choices=STAIN_CHOICES)
    backend: str = _opt("auto", "what runs the network: auto (on a CPU the fastest installed of "
                        "openvino and onnxruntime, else torch; torch on a GPU)", choices=BACKENDS)
    precision: str = _opt("auto", "auto (f32 on the CPU, mixed precision on a CUDA GPU), f32 or "
                          "bf16 (OpenVINO on CPUs that run it natively: faster, changes some "
                          "labels)", choices=PRECISIONS)

    def __post_init__(self):
        set_ = object.__setattr__
        device = str(self.device) if isinstance(self.device, torch.device) else self.device
        set_(self, "device", _text(device, "device"))
        for name, low in (("tile", 1), ("halo", 0), ("batch_size", 1)):
            set_(self, name, _whole(getattr(self, name), name, low))
        for name, allowed in (("preset", tuple(PRESETS)), ("border", BORDERS),
                              ("backend", BACKENDS), ("precision", PRECISIONS)):
            value = getattr(self, name)
            if value is None and name in ("preset", "border"):
                continue
            value = _text(value, name).lower()
            if value not in allowed:
                raise InputError(f"Unknown {name} {getattr(self, name)!r}; use one of "
                                 f"{', '.join(allowed)}.")
            set_(self, name, value)
        if not isinstance(self.tta, bool):
            raise InputError(f"tta must be True or False, got {self.tta!r}.")
        set_(self, "diameter", parse_diameter(self.diameter))
        set_(self, "stain", parse_stain(self.stain))

    @classmethod
    def names(cls, cli: bool = False) -> tuple[str, ...]:
        """The field names (with ``cli``: those offered on the command line)."""
        return tuple(f.name for f in fields(cls) if not cli or f.metadata["cli"])

    @classmethod
    def from_dict(cls, values: dict) -> PredictOptions:
        """Options from ``values``; an unknown name is an :class:`InputError`."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise InputError(f"Unknown inference options {unknown}; use {list(cls.names())}.")
        return cls(**values)

    def replace(self, **changes) -> PredictOptions:
        """A checked copy with ``changes``."""
        self.from_dict(changes)   # names checked before dataclasses.replace's TypeError
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def tiling(self) -> tuple[int | None, int | None, str]:
        """(tile, halo, border) with the preset's values where not given."""
        preset = PRESETS.get(self.preset, {})
        tile = preset.get("tile") if self.tile is None else self.tile
        halo = preset.get("halo") if self.halo is None else self.halo
        border = self.border or preset.get("border") or DEFAULT_BORDER
        return tile, halo, border


def _text(value, name: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name} must be a name such as 'auto', got {value!r}.")
    return value


def _whole(value, name: str, low: int):
    """None, or a whole number >= ``low``."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and float(value).is_integer() and value >= low:
        return int(value)
    raise InputError(f"{name} must be >= {low}, a whole number (leave it out for the default), "
                     f"got {value!r}.")
