"""Images larger than memory: lazy reading by window, zarr stores written atomically.

Inputs are opened without reading their pixels: a TIFF (BigTIFF, tiled or striped)
through ``tifffile.imread(..., aszarr=True)``, a zarr array or an OME-Zarr image
(level 0 of its multiscale pyramid, with its scale).  Reading ``image[y0:y1, x0:x1]``
then reads only that window.  Outputs too large for one TIFF write go block by block
into a zarr store that is built under a temporary name and renamed when complete.
"""
from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import tifffile
import zarr
from PIL import Image

from ..errors import ImageFileError
from .fileio import READ_ERRORS, check_fits, check_link, read_error_reason, read_image
from .lazyimage import LazyImage
from .safefiles import atomic_write
from .zarrinput import MissingChunksWarning, open_zarr  # noqa: F401  (part of this module's API)

#: Images up to this many pixels are read whole (cheaper than windows).
SMALL_PIXELS = 2048 * 2048
#: Chunk side of the zarr stores we write (napari reads them by chunk).
CHUNK = 1024


def indexable(data):
    """``data`` as an array that takes numpy indexing, ``None`` / newaxis included,
    without reading it: numpy and dask arrays as they are, anything else (a zarr array,
    a TIFF's zarr view) as a lazy dask view in its own chunks."""
    if isinstance(data, np.ndarray) or hasattr(data, "dask"):
        return data
    return da.from_array(data, chunks=getattr(data, "chunks", "auto"))


def is_zarr_path(path) -> bool:
    """A ``.zarr`` folder (or any folder with zarr metadata)."""
    p = Path(path)
    return p.is_dir() and (p.suffix == ".zarr" or any(
        (p / n).exists() for n in ("zarr.json", ".zarray", ".zgroup")))


def _open_tiff(path: Path) -> LazyImage:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = series.shape, series.dtype
            page = tif.pages[0]
            raw = page.compression == 1
            windowed = page.is_tiled or page.rowsperstrip < page.imagelength or raw
    except READ_ERRORS as err:
        raise ImageFileError(f"Cannot read {path}: the file is corrupt or not a valid TIFF image "
                             f"({read_error_reason(err)}).") from None
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if raw and path.stat().st_size < need:
        raise ImageFileError(f"{path} declares {' x '.join(map(str, shape))} px ({need:,} bytes) but "
                             f"holds {path.stat().st_size:,} bytes: it is truncated or corrupt.")
    check_fits(path, shape, need, windowed)
    if int(np.prod(shape)) <= SMALL_PIXELS:
        return LazyImage(read_image(path), path, (1.0,) * len(shape))
    try:
        store = tifffile.imread(path, aszarr=True)
        data = zarr.open(store, mode="r")
    except (ValueError, OSError, KeyError, TypeError) as err:
        raise ImageFileError(f"Cannot read {path} by window ({type(err).__name__}: {err}).") from None
    return LazyImage(data, path, (1.0,) * len(shape))


def open_image(path, check_chunks: bool = True) -> LazyImage:
    """Open an image file or zarr store for reading by window.

    TIFF files larger than :data:`SMALL_PIXELS` and zarr stores stay on disk; small
    TIFFs and PNG/JPEG/BMP are read whole (see :func:`unet_core.files.fileio.read_image`).
    ``check_chunks``: warn when chunks of a zarr store are missing (off for outputs,
    which leave their empty chunks out).

    Raises
    ------
    ImageFileError
        Missing, corrupt or unsupported inputs, and images too large to read whole that
        cannot be read by window.

    Warns
    -----
    MissingChunksWarning
        A zarr store with chunks missing (they read as its fill value).
    """
    path = Path(path)
    check_link(path)
    if is_zarr_path(path):
        return open_zarr(path, check_chunks)
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file() and path.stat().st_size:
        return _open_tiff(path)
    if path.is_file() and path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
        _check_raster_header(path)
    data = read_image(path)
    return LazyImage(data, path, (1.0,) * data.ndim)


def _check_raster_header(path: Path) -> None:
    """Declared size of a PNG/JPEG/BMP before decoding it whole."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            bands = len(im.getbands())
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageFileError(f"Cannot read {path}: the file is corrupt or not a valid image "
                             f"({read_error_reason(err)}).") from None
    check_fits(path, (h, w, bands), h * w * bands)


# -- writing ------------------------------------------------------------------------

def create_array(store_dir, name: str, shape, dtype, chunks, attrs=None):
    """Create (or reopen, with the same shape/dtype) a zarr array ``store_dir/name``."""
    group = zarr.open_group(str(store_dir), mode="a")
    if name in group:
        arr = group[name]
        if tuple(arr.shape) == tuple(shape) and np.dtype(arr.dtype) == np.dtype(dtype):
            return arr
        del group[name]
    arr = group.create_array(name, shape=tuple(shape), dtype=dtype, chunks=tuple(chunks),
                             fill_value=0)
    if attrs:
        arr.attrs.update(attrs)
    return arr


def zarr_to_tiff(arr, path, tile: int = 512) -> Path:
    """Write a 2D (H, W) or (C, H, W) zarr array as a tiled TIFF, tile row by tile row
    (memory: one row of tiles), atomically."""
    shape = tuple(arr.shape)
    h, w = shape[-2:]
    lead = shape[:-2]

    def tiles():
        for idx in np.ndindex(*lead):
            for y in range(0, h, tile):
                row = np.asarray(arr[idx + (slice(y, y + tile), slice(None))])
                for x in range(0, w, tile):
                    t = np.zeros((tile, tile), arr.dtype)
                    part = row[:, x:x + tile]
                    t[: part.shape[0], : part.shape[1]] = part
                    yield t

    big = int(np.prod(shape)) * np.dtype(arr.dtype).itemsize > (3 << 30)
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, tiles(), shape=shape, dtype=arr.dtype, tile=(tile, tile),
                         compression="zlib", bigtiff=big)
    return Path(path)
