"""Zarr stores as inputs: opened lazily, with their damage named instead of hidden.

A zarr array or OME-Zarr image is read by window.  What can be wrong with a store is
found as early as it is cheap to: OME metadata naming a dataset outside the store, a
chunk that does not decode (named when the window holding it is read), chunks that
are missing (they read as the fill value: a warning when the store is opened).
"""
from __future__ import annotations

import warnings
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import zarr

from ..errors import ImageFileError
from .fileio import read_error_reason
from .lazyimage import LazyImage


class MissingChunksWarning(UserWarning):
    """A zarr store with fewer chunks on disk than its shape needs."""


# what chunk decoders raise on damaged bytes (zstd / blosc: RuntimeError; zlib.error)
_DECODE_ERRORS = (RuntimeError, ValueError, OSError, TypeError, EOFError, zlib.error)


class CheckedZarr:
    """A zarr array read by window, whose damaged chunks raise :class:`ImageFileError`
    naming the store (not a decoder's traceback).

    ``lead``: indices of leading axes dropped (an OME-Zarr (1, 1, Y, X) read as (Y, X)).
    Slicing returns numpy arrays.
    """

    def __init__(self, array, path, lead: tuple = ()):
        self.array, self.path, self.lead = array, Path(path), tuple(lead)
        self.shape = tuple(array.shape[len(self.lead):])
        self.chunks = tuple(array.chunks[len(self.lead):])
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        try:
            return np.asarray(self.array[self.lead + key])
        except _DECODE_ERRORS as err:
            raise ImageFileError(
                f"Cannot read {self.path}: a chunk of the zarr store is corrupt or unreadable "
                f"({read_error_reason(err)}). Copy the store again from its source.") from None

    def __array__(self, dtype=None, copy=None):
        data = self[...]
        return data if dtype is None else data.astype(dtype)


def warn_missing_chunks(array, path, check: bool = True) -> int:
    """Warn when chunks of a local zarr array are missing (a store copied in part);
    returns how many.  Chunks left out because they held only the fill value look the
    same, so the warning says both."""
    if not check:
        return 0
    try:
        total, present = int(array.nchunks), int(array.nchunks_initialized)
    except (AttributeError, OSError, ValueError, TypeError):   # stores that cannot list
        return 0
    missing = total - present
    fill = getattr(array.fill_value, "item", lambda: array.fill_value)()
    if missing > 0:
        warnings.warn(
            f"{path}: {missing} of its {total} chunks are missing; they read as "
            f"{fill}. If the store was copied or written incompletely, copy it "
            "again (a store written without its empty chunks is fine as it is).",
            MissingChunksWarning, stacklevel=3)
    return missing


def _dataset_path(path: Path, multiscales) -> tuple[str, dict]:
    """The level-0 dataset of OME metadata (its path, its entry), checked to name an
    array in the store."""
    try:
        level0 = multiscales[0]["datasets"][0]
        name = level0["path"]
    except (KeyError, IndexError, TypeError):
        raise ImageFileError(f"{path}: its OME-Zarr metadata (multiscales) names no dataset; "
                             "the metadata is damaged. Give the path of one array instead.") from None
    parts = PurePosixPath(str(name)).parts
    if not isinstance(name, str) or not parts or name.startswith("/") or \
            any(p in (".", "..") for p in parts):
        raise ImageFileError(f"{path}: its OME-Zarr metadata names dataset path {name!r}, which is "
                             "not an array inside the store; the metadata is damaged (it should "
                             "name an array of the store, such as '0').")
    return name, level0


def _plain(arr, path: Path):
    """A zarr array without metadata: leading axes of length 1 are dropped, so a
    (1, Y, X) store is the 2-D image it holds (segmented block by block when large),
    not a stack of one plane read whole."""
    lead = ()
    while arr.ndim - len(lead) > 2 and arr.shape[len(lead)] == 1:
        lead += (0,)
    return LazyImage(CheckedZarr(arr, path, lead), path, (1.0,) * (arr.ndim - len(lead)))


def open_zarr(path: Path, check_chunks: bool = True):
    """A zarr array or OME-Zarr image (level 0, its scale) as a LazyImage; with
    ``check_chunks``, missing chunks are warned about (:func:`warn_missing_chunks`)."""
    try:
        node = zarr.open(str(path), mode="r")
    except (ValueError, OSError, KeyError, TypeError) as err:
        raise ImageFileError(f"Cannot open {path} as zarr ({read_error_reason(err)}).") from None
    if isinstance(node, zarr.Array):
        warn_missing_chunks(node, path, check_chunks)
        return _plain(node, path)
    attrs = dict(node.attrs)
    ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not ms:
        arrays = sorted(k for k, _ in node.arrays())
        if len(arrays) != 1:
            raise ImageFileError(f"{path} is a zarr group without multiscale metadata and with "
                                 f"{len(arrays)} arrays; give the path of one array.")
        arr = node[arrays[0]]
        warn_missing_chunks(arr, path, check_chunks)
        return _plain(arr, path)
    name, level0 = _dataset_path(path, ms)
    try:
        arr = node[name]
    except (KeyError, ValueError, OSError) as err:
        raise ImageFileError(f"{path}: its OME-Zarr metadata names dataset {name!r}, which the "
                             f"store does not hold ({read_error_reason(err)}).") from None
    warn_missing_chunks(arr, path, check_chunks)
    scale = (1.0,) * arr.ndim
    for t in level0.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = tuple(float(s) for s in t["scale"])
    axes = [a["name"] if isinstance(a, dict) else a for a in ms[0].get("axes", [])]
    lead = ()
    if axes and len(axes) == arr.ndim and axes[-2:] == ["y", "x"]:
        # drop leading singleton t/c/z axes of OME-Zarr: (1, 1, Y, X) -> (Y, X)
        ones = [i for i in range(arr.ndim - 2) if arr.shape[i] == 1]
        if len(ones) == arr.ndim - 2:
            lead, scale = (0,) * len(ones), scale[-2:]
    return LazyImage(CheckedZarr(arr, path, lead), path, scale, ome=True)
