"""Reading images and writing any file atomically (temporary file, then rename)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import ImageFileError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")

# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_image(path) -> np.ndarray:
    """Read a TIFF (tifffile) or PNG/JPEG/BMP (imageio) into a numpy array.

    Raises
    ------
    ImageFileError
        Missing, empty, corrupt or unsupported files, with what to do about it.
    """
    path = Path(path)
    if not path.exists():
        raise ImageFileError(f"Image file not found: {path}")
    if path.is_dir():
        raise ImageFileError(f"{path} is a folder, not an image file.")
    if path.stat().st_size == 0:
        raise ImageFileError(f"{path} is empty (0 bytes); it was probably not copied completely.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            data = np.asarray(tifffile.imread(path))
        elif suffix in IMAGE_SUFFIXES:
            import imageio.v3 as iio

            data = np.asarray(iio.imread(path))
        else:
            data = None
    except (ValueError, OSError, KeyError, IndexError, TypeError, RuntimeError) as err:
        raise ImageFileError(f"Cannot read {path}: the file is corrupt or not a valid "
                             f"{suffix[1:].upper()} image ({type(err).__name__}: {err}).") from None
    if data is None:
        raise ImageFileError(f"{path}: unsupported file type {suffix!r}; use one of "
                             f"{', '.join(IMAGE_SUFFIXES)}.")
    if data.size == 0 or data.ndim < 2:
        raise ImageFileError(f"Cannot read {path}: the file is corrupt or holds no image data "
                             f"(read shape {data.shape}).")
    return data


def write_tiff(path, data: np.ndarray, **kwargs) -> Path:
    """Write ``data`` as a (zlib-compressed) TIFF atomically."""
    import tifffile

    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, data, compression="zlib", **kwargs)
    return Path(path)
