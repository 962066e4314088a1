"""An image opened for reading by window (the type the readers of large images return)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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
