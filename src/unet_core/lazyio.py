"""Images larger than memory: lazy reading by window, zarr stores written atomically.

Inputs are opened without reading their pixels: a TIFF (BigTIFF, tiled or striped)
through ``tifffile.imread(..., aszarr=True)``, a zarr array or an OME-Zarr image
(level 0 of its multiscale pyramid, with its scale).  Reading ``image[y0:y1, x0:x1]``
then reads only that window.  Outputs too large for one TIFF write go block by block
into a zarr store that is built under a temporary name and renamed when complete.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ImageFileError
from .fileio import READ_ERRORS, check_fits, check_link, names_open_file, read_error_reason
from .zarrinput import MissingChunksWarning  # noqa: F401  (part of this module's API)

#: Images up to this many pixels are read whole (cheaper than windows).
SMALL_PIXELS = 2048 * 2048
#: Chunk side of the zarr stores we write (napari reads them by chunk).
CHUNK = 1024


@dataclass
class LazyImage:
    """An image opened for reading by window.

    Attributes
    ----------
    data : array-like, (H, W) or (H, W, C)
        numpy, zarr or dask array; slicing reads only the window.
    path : Path or None
        Where it came from (workers of a cluster reopen it from there).
    scale : tuple of float
        Pixel size per axis from OME-Zarr metadata, 1.0 when unknown.
    ome : bool
        Whether ``path`` is an OME-Zarr image (labels then go into its ``labels/``).
    """

    data: object
    path: Path | None = None
    scale: tuple = field(default_factory=tuple)
    ome: bool = False

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.data.dtype).itemsize


def is_zarr_path(path) -> bool:
    """A ``.zarr`` folder (or any folder with zarr metadata)."""
    p = Path(path)
    return p.is_dir() and (p.suffix == ".zarr" or any(
        (p / n).exists() for n in ("zarr.json", ".zarray", ".zgroup")))


def _open_tiff(path: Path) -> LazyImage:
    import tifffile
    import zarr

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
        from .fileio import read_image

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
    TIFFs and PNG/JPEG/BMP are read whole (see :func:`unet_core.fileio.read_image`).
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
    from .zarrinput import open_zarr

    path = Path(path)
    check_link(path)
    if is_zarr_path(path):
        return open_zarr(path, check_chunks)
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file() and path.stat().st_size:
        return _open_tiff(path)
    from .fileio import read_image

    if path.is_file() and path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
        _check_raster_header(path)
    data = read_image(path)
    return LazyImage(data, path, (1.0,) * data.ndim)


def _check_raster_header(path: Path) -> None:
    """Declared size of a PNG/JPEG/BMP before decoding it whole."""
    try:
        from PIL import Image
    except ImportError:
        return
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
    import zarr

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


def replace_dir(tmp: Path, final: Path) -> Path:
    """Move a finished store ``tmp`` onto ``final``: the old one (if any) is moved aside
    first, so ``final`` is always either the old complete store or the new one."""
    tmp, final = Path(tmp), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def zarr_to_tiff(arr, path, tile: int = 512) -> Path:
    """Write a 2D (H, W) or (C, H, W) zarr array as a tiled TIFF, tile row by tile row
    (memory: one row of tiles), atomically."""
    import tifffile

    from .fileio import atomic_write

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


@contextlib.contextmanager
def folder_lock(folder, what: str = "batch"):
    """An exclusive lock on ``folder`` for the life of the block (fcntl), so two runs
    cannot write the same outputs at once.  A crashed holder releases it with its
    process; the lock file is removed when the block ends (while still locked: a run
    that opened the old file sees it is gone and says so, instead of locking a stale
    file)."""
    import fcntl

    from .errors import InputError

    path = Path(folder) / ".napari-unet.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    busy = (f"Another {what} is writing to {folder}; wait for it to finish or choose another "
            "output folder.")
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            raise InputError(busy.replace(f"{folder};", f"{folder} ({holder or 'another process'});")) \
                from None
        if not names_open_file(path, f.fileno()):   # removed by the run that held it just now
            raise InputError(busy)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid()}))
        f.flush()
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)
