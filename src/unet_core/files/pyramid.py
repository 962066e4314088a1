"""Large images as multiscale pyramids that read only what a viewer shows.

:func:`open_pyramid` opens a TIFF (tiled, striped or BigTIFF) or a zarr / OME-Zarr
image without reading its pixels and returns its levels, largest first: the file's
own levels where it has them (a pyramidal TIFF's sub-resolutions, an OME-Zarr's
``multiscales`` datasets), else levels built on demand (:class:`CoarseLevel`: 2 x 2
means of the level below, computed one 1024 px tile at a time and kept in a small
shared cache).  Level 0 is the file read by window, the same array the block-wise
segmentation reads (:func:`unet_core.files.lazyio.open_image`).

Images up to :func:`large_pixels` per plane are left to whoever reads small images
whole (``open_pyramid`` returns None for them).
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import dask.array as da
import numpy as np
import tifffile
import zarr

from .fileio import READ_ERRORS
from .lazyio import is_zarr_path

log = logging.getLogger(__name__)

#: File name endings of the TIFFs read.
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
#: Images with more pixels than this per plane open as pyramids (``$NAPARI_UNET_LAZY_PIXELS``
#: overrides it).
LARGE_PIXELS = 4096 * 4096
#: Levels halve until their longest side is at most this.
TOP_SIDE = 1024
#: Tile side of built levels (px): the unit computed and cached.
TILE = 1024
#: Bytes of built tiles one pyramid keeps (least recently used dropped first).
CACHE_BYTES = 96 << 20


def large_pixels() -> int:
    """Pixels per plane above which an image opens as a pyramid."""
    env = os.environ.get("NAPARI_UNET_LAZY_PIXELS")
    return int(env) if env else LARGE_PIXELS


@dataclass
class Pyramid:
    """A large image's levels, largest first.

    Attributes
    ----------
    levels : list of array-like
        (H, W) or (H, W, C) each, same dtype; level k is about 2**k times smaller.
        Level 0 is a zarr or dask array read by window.
    path : Path
        The file or zarr folder.
    rgb : bool
        Whether the last axis is colour (C of 3 or 4).
    scale : tuple of float
        Pixel size (y, x) of level 0 (from OME-Zarr metadata; 1.0 when unknown).
    own_levels : bool
        Whether the levels come from the file (else they are built on demand).
    """

    levels: list
    path: Path
    rgb: bool = False
    scale: tuple = (1.0, 1.0)
    own_levels: bool = False
    cache: TileCache | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple:
        return tuple(self.levels[0].shape)


class TileCache:
    """Least-recently-used tiles of built levels, bounded in bytes, thread-safe."""

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes, self.nbytes = int(max_bytes), 0
        self._tiles: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key, tile: np.ndarray) -> None:
        with self._lock:
            if key in self._tiles:
                return
            self._tiles[key] = tile
            self.nbytes += tile.nbytes
            while self.nbytes > self.max_bytes and len(self._tiles) > 1:
                _, old = self._tiles.popitem(last=False)
                self.nbytes -= old.nbytes


def half(block: np.ndarray, dtype) -> np.ndarray:
    """2 x 2 means of an (H, W[, C]) block (odd edges repeat their last row / column),
    rounded back to ``dtype`` for integers."""
    h, w = block.shape[:2]
    if h % 2 or w % 2:
        pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (block.ndim - 2)
        block = np.pad(block, pad, mode="edge")
    f = block.astype(np.float32)
    out = (f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2]) * 0.25
    dtype = np.dtype(dtype)
    if dtype.kind in "iub":
        out = np.rint(out)
    return out.astype(dtype, copy=False)


class CoarseLevel:
    """Half of ``finer`` per side (2 x 2 means), computed per tile when read.

    An array-like for viewers: ``shape``, ``dtype``, ``ndim`` and numpy indexing of the
    first two axes by integers and slices (steps applied after the window is read).
    """

    def __init__(self, finer, cache: TileCache, tile: int = TILE):
        self.finer, self.cache, self.tile = finer, cache, int(tile)
        h, w = finer.shape[:2]
        self.shape = (-(-h // 2), -(-w // 2)) + tuple(finer.shape[2:])
        self.dtype = np.dtype(finer.dtype)
        self.ndim = len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"CoarseLevel(shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        bounds, after = [], []
        for k, n in zip(key[:2], self.shape[:2]):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 0:      # rare: read the whole axis, index afterwards
                    start, stop = 0, n
                    after.append(k)
                else:
                    stop = max(start, stop)
                    after.append(slice(None, None, step))
            else:
                i = int(k) + n if int(k) < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} is out of bounds for an axis of size {n}")
                start, stop = i, i + 1
                after.append(0)
            bounds.append((start, stop))
        window = self._window(*bounds[0], *bounds[1])
        return window[tuple(after) + key[2:]]

    def _window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        out = np.empty((y1 - y0, x1 - x0) + self.shape[2:], self.dtype)
        t = self.tile
        for ty in range(y0 // t, -(-y1 // t)):
            for tx in range(x0 // t, -(-x1 // t)):
                tile = self._tile(ty, tx)
                ay, ax = max(y0, ty * t), max(x0, tx * t)
                by, bx = min(y1, (ty + 1) * t), min(x1, (tx + 1) * t)
                out[ay - y0:by - y0, ax - x0:bx - x0] = tile[ay - ty * t:by - ty * t,
                                                            ax - tx * t:bx - tx * t]
        return out

    def _tile(self, ty: int, tx: int) -> np.ndarray:
        key = (id(self), ty, tx)
        tile = self.cache.get(key)
        if tile is None:
            t2 = 2 * self.tile
            tile = half(np.asarray(self.finer[ty * t2:(ty + 1) * t2, tx * t2:(tx + 1) * t2]),
                        self.dtype)
            self.cache.put(key, tile)
        return tile


def built_levels(level0, top_side: int = TOP_SIDE, cache: TileCache | None = None) -> list:
    """``level0`` and :class:`CoarseLevel` halves of it until the longest side is at
    most ``top_side``."""
    cache = cache if cache is not None else TileCache()
    levels = [level0]
    while max(levels[-1].shape[:2]) > top_side:
        levels.append(CoarseLevel(levels[-1], cache))
    return levels


def _spatial(shape, axes: str) -> tuple[int, int] | None:
    """(H, W) of a plane with axes "YX" or "YXS" (S of 3 or 4), else None."""
    if axes == "YX" or (axes == "YXS" and shape[-1] in (3, 4)):
        return int(shape[0]), int(shape[1])
    return None


def _open_tiff(path: Path, force: bool):
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes, shape, nlevels = series.axes, tuple(series.shape), len(series.levels)
        page = series.pages[0] if series.pages else tif.pages[0]
        windowed = page.is_tiled or page.rowsperstrip < page.imagelength
    hw = _spatial(shape, axes)
    if hw is None or not windowed or (not force and hw[0] * hw[1] <= large_pixels()):
        return None
    levels = [zarr.open(tifffile.imread(path, aszarr=True, series=0, level=k), mode="r")
              for k in range(nlevels)]
    rgb = axes == "YXS"
    if nlevels > 1:
        return Pyramid(levels, path, rgb, own_levels=True)
    cache = TileCache()
    return Pyramid(built_levels(levels[0], cache=cache), path, rgb, cache=cache)


def _ome_levels(node):
    """(levels, scale, axes) of an OME-Zarr image group, leading singleton axes dropped."""
    attrs = dict(node.attrs)
    ms = (attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales"))[0]
    axes = "".join((a["name"] if isinstance(a, dict) else a)[0].upper()
                   for a in ms.get("axes", []))
    levels, scale = [], (1.0, 1.0)
    for k, ds in enumerate(ms["datasets"]):
        arr = node[ds["path"]]
        if k == 0:
            for t in ds.get("coordinateTransformations", []):
                if t.get("type") == "scale":
                    scale = tuple(float(s) for s in t["scale"][-2:])
        lead = arr.ndim - 2
        if lead and all(s == 1 for s in arr.shape[:lead]):
            arr = da.from_zarr(arr)[(0,) * lead]
        levels.append(arr)
    return levels, scale, (axes[-2:] if axes else "YX")


def _open_zarr(path: Path, force: bool):
    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        levels, scale, axes = [node], (1.0, 1.0), "YX"
    elif node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales"):
        levels, scale, axes = _ome_levels(node)
    else:
        return None
    shape = tuple(levels[0].shape)
    rgb = len(shape) == 3 and shape[-1] in (3, 4)
    if len(shape) != 2 and not rgb:
        return None
    if not force and shape[0] * shape[1] <= large_pixels():
        return None
    if len(levels) > 1:
        return Pyramid(levels, path, rgb, scale, own_levels=True)
    cache = TileCache()
    return Pyramid(built_levels(levels[0], cache=cache), path, rgb, scale, cache=cache)


def open_pyramid(path, force: bool = False) -> Pyramid | None:
    """Open a large TIFF or zarr / OME-Zarr image as a :class:`Pyramid`, or None.

    None (the file is better read whole, or by another reader) for images of at most
    :func:`large_pixels` per plane (unless ``force``), TIFFs stored as one compressed
    strip (no window can be read without the whole), and images that are not one 2D
    plane, grey or RGB(A) (stacks, several channels).

    Reads only the file's metadata.
    """
    path = Path(path)
    try:
        if is_zarr_path(path):
            return _open_zarr(path, force)
        if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
            return _open_tiff(path, force)
    except READ_ERRORS as err:     # corrupt or unusual: a reader of whole files says why
        log.info("%s does not open as a pyramid (%s: %s)", path, type(err).__name__, err)
    return None
