"""How one image goes through the engine: whole or block by block, TIFF or zarr out.

:func:`route` is the one place that decides, for ``predict``, ``batch``, the cluster
backend and the plugin's widgets alike.  :data:`INPUT_SUFFIXES` are the files a
folder run takes as images (plus ``.zarr`` stores).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import lazyio
from ..files.fileio import IMAGE_SUFFIXES

#: Outputs of images above this many pixels default to zarr (TIFF is one file per image,
#: slow to read by window in napari); ``zarr=True`` asks for zarr at any size.
ZARR_PIXELS = 8192 * 8192
#: What a folder run takes as an input image: these files, and ``.zarr`` stores.
INPUT_SUFFIXES = tuple(IMAGE_SUFFIXES) + (".zarr",)
#: Inputs that may stay on disk (read by window); others are always read whole.
WINDOW_SUFFIXES = (".tif", ".tiff", ".zarr")


@dataclass(frozen=True)
class Route:
    """``blocks``: segmented block by block (:mod:`unet_core.scaleout.large`), else whole;
    ``zarr``: its labels / probabilities written as zarr stores, else TIFF."""

    blocks: bool
    zarr: bool


def route(data, zarr: bool = False) -> Route:
    """The route of an image: a :class:`~unet_core.files.lazyio.LazyImage` or array-like.

    A 2D (H, W) / (H, W, C) image goes block by block when it is not in memory or is
    larger than :data:`~unet_core.files.lazyio.SMALL_PIXELS`; its outputs are zarr stores
    with ``zarr`` or above :data:`ZARR_PIXELS`, else TIFF.
    """
    if isinstance(data, lazyio.LazyImage):
        data = data.data
    shape = tuple(data.shape)
    two_d = len(shape) == 2 or (len(shape) == 3 and shape[-1] <= 4)
    pixels = shape[0] * shape[1] if two_d else 0
    blocks = two_d and (not isinstance(data, np.ndarray) or pixels > lazyio.SMALL_PIXELS)
    return Route(blocks, blocks and (bool(zarr) or pixels > ZARR_PIXELS))


def is_input(path: Path) -> bool:
    """Whether a folder run takes ``path`` as an image (:data:`INPUT_SUFFIXES`)."""
    if path.suffix == ".zarr":
        return lazyio.is_zarr_path(path)
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
