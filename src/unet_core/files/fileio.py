"""Reading and writing images and tensors (writes are atomic: :mod:`unet_core.files.safefiles`)."""
from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..errors import ImageFileError
from .safefiles import atomic_write

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


def save_tensors(tensors: dict, path, metadata: dict | None = None) -> Path:
    """Write torch tensors as a safetensors file atomically.  A write the system refuses
    (a full disk, a file size limit) raises OSError with the system's reason, as any
    other write does, not safetensors' own error."""
    with atomic_write(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as err:
            code = re.search(r"os error (\d+)", str(err))
            if code is None:
                raise OSError(f"cannot write the tensors: {err}") from None
            errno = int(code.group(1))
            raise OSError(errno, os.strerror(errno), str(path)) from None
    return Path(path)


def memory_limit() -> int | None:
    """Bytes of physical memory of this machine (None where the system does not say).

    An image that declares more pixels than this cannot be read here, whatever its
    file size: such a file is refused before anything is allocated.
    """
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):   # not a POSIX system
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


#: Images read whole may need at most this fraction of the physical memory: their pixels
#: and a few working copies (float32, probabilities) must fit beside everything else.
MAX_WHOLE_FRACTION = 0.25


def check_fits(path, shape, nbytes: int, windowed: bool = False) -> None:
    """Refuse, before anything is allocated, an image whose header declares more than
    this machine can read whole (a damaged header, e.g. a 270-byte TIFF declaring
    200000 x 200000 px, or an image to be read by window instead).  Images that can be
    read by window (tiled or striped TIFF, zarr) pass whatever their size."""
    limit = memory_limit()
    if windowed or limit is None or nbytes <= limit * MAX_WHOLE_FRACTION:
        return
    raise ImageFileError(
        f"{path} declares an image of shape {tuple(int(s) for s in shape)} ({_gib(nbytes)}), "
        f"more than this machine can read at once ({_gib(limit)} of memory); its header is "
        "damaged, or the image must be saved so it can be read by window: a tiled (Big)TIFF "
        "(tifffile.imwrite(..., tile=(512, 512))) or zarr.")


def declared_nbytes(path: Path) -> tuple[tuple[int, ...], int] | None:
    """(shape, bytes) an image file declares in its header, without reading its pixels.

    None when the header cannot say (the read then reports what is wrong).
    """
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return tuple(series.shape), int(np.prod(series.shape, dtype=np.float64)) * series.dtype.itemsize
        props = iio.improps(path)
        return tuple(props.shape), int(np.prod(props.shape, dtype=np.float64)) * props.dtype.itemsize
    except (*READ_ERRORS, MemoryError):
        return None


# What decoders raise on a damaged file: truncated compressed data raises zlib.error
# (not an OSError), struct.error for short headers, EOFError for cut streams.
READ_ERRORS = (ValueError, OSError, KeyError, IndexError, TypeError, RuntimeError, EOFError,
               zlib.error, struct.error)


def read_image(path) -> np.ndarray:
    """Read a TIFF (tifffile) or PNG/JPEG/BMP (imageio) into a numpy array.

    A file whose header declares more pixels than this machine has memory for is
    refused before its pixels are allocated.

    Raises
    ------
    ImageFileError
        Missing, empty, truncated, corrupt, too large or unsupported files, with what
        to do about it.
    """
    path = Path(path)
    check_link(path)
    if not path.exists():
        raise ImageFileError(f"Image file not found: {path}")
    if path.is_dir():
        raise ImageFileError(f"{path} is a folder, not an image file.")
    if not path.is_file():
        raise ImageFileError(f"{path} is not a regular file (a device or pipe?); give an image file.")
    if path.stat().st_size == 0:
        raise ImageFileError(f"{path} is empty (0 bytes); it was probably not copied completely.")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageFileError(f"{path}: unsupported file type {suffix!r}; use one of "
                             f"{', '.join(IMAGE_SUFFIXES)}.")
    declared = declared_nbytes(path)
    if declared is not None:
        check_fits(path, *declared)
    try:
        if suffix in (".tif", ".tiff"):
            data = _read_tiff(path)
        else:
            data = np.asarray(iio.imread(path))
    except READ_ERRORS as err:
        raise ImageFileError(f"Cannot read {path}: the file is truncated, corrupt or not a valid "
                             f"{suffix[1:].upper()} image ({read_error_reason(err)}). Copy it "
                             "again from its source.") from None
    except MemoryError:
        raise ImageFileError(f"Not enough memory to read {path}"
                             + (f" ({_gib(declared[1])})" if declared else "")
                             + ". Close other programs, or cut the image into parts.") from None
    if data.size == 0 or data.ndim < 2:
        raise ImageFileError(f"Cannot read {path}: the file is corrupt or holds no image data "
                             f"(read shape {data.shape}).")
    return data


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF's first series; samples stored in planes (an RGB TIFF of planar
    configuration, axes ...SYX) come channels last, as every colour image here."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = np.asarray(series.asarray())
        axes = series.axes
    if axes.endswith("SYX") and data.ndim >= 3 and data.shape[-3] <= 4:
        data = np.moveaxis(data, -3, -1)
    return data


def check_link(path: Path) -> None:
    """Refuse a symbolic link that leads nowhere: one that loops back on itself (the
    system gives up resolving it) or one whose target is missing."""
    if not path.is_symlink() or path.exists():
        return
    try:
        path.resolve(strict=True)
    except (RuntimeError, OSError) as err:    # RuntimeError: Python < 3.13 on a loop
        if isinstance(err, FileNotFoundError):
            raise ImageFileError(f"{path} is a symbolic link to {os.readlink(path)}, which does "
                                 "not exist; point the link at the image or remove it.") from None
        raise ImageFileError(f"{path} is a symbolic link that loops back on itself (it leads "
                             "to no file); point the link at the image or remove it.") from None


def read_error_reason(err: BaseException) -> str:
    """Why a reader refused a file, for people: the error's kind and message, with any
    bytes of the file it quotes left out (a reader quoting the first bytes of a file
    that is not an image would print its content)."""
    text = re.sub(r"""b(['"]).*?\1""", "...", str(err))
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def write_tiff(path, data: np.ndarray, **kwargs) -> Path:
    """Write ``data`` as a (zlib-compressed) TIFF atomically."""
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, data, compression="zlib", **kwargs)
    return Path(path)


def content_hash(path: Path, old: dict | None = None) -> dict:
    """{"stat": [size, mtime_ns, ctime_ns], "hash": blake2b of the content} of a file or
    zarr folder; the hash of ``old`` is reused only when none of the three changed.
    The change time (ctime) is set by the system on every write and cannot be set back
    (``touch -r`` sets the mtime only), so an edit that keeps size and mtime is hashed
    again: what is compared is the content."""
    # an OME-Zarr input's labels/ is where this batch writes: not part of the input
    files = sorted(q for q in path.rglob("*") if q.is_file()
                   and q.relative_to(path).parts[0] != "labels") if path.is_dir() else [path]
    stats = [q.stat() for q in files] or [path.stat()]
    stat = [sum(st.st_size for st in stats) if files else 0, max(st.st_mtime_ns for st in stats),
            max(st.st_ctime_ns for st in stats)]
    if old and old.get("stat") == stat and old.get("hash"):
        return {"stat": stat, "hash": old["hash"]}
    h = hashlib.blake2b(digest_size=16)
    for q in files:
        h.update(str(q.relative_to(path) if path.is_dir() else q.name).encode())
        with open(q, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return {"stat": stat, "hash": h.hexdigest()}
