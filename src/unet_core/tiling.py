"""Tile grids over an image, exact halos and reflect-padded tile extraction.

A grid covers an (H, W) image with equal cores of ``core`` px (multiples of the
network's alignment ``2**depth``), each read with a ``halo`` px border on every
side.  Pixels outside the image are mirrored (numpy's ``reflect`` mode), so the
tile inputs are windows of one globally reflect-padded image, and every tile
origin sits on the same pooling grid.  With ``halo >= UNetConfig.receptive_radius``
the cores of the tiled output equal one whole-image pass over that padded image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASSIC = {"tile": 128, "halo": 64}
"""The classic scheme: 128 px cores in 256 px reflect-padded tiles (not exact at depth 4)."""


def _align_up(n: int, a: int) -> int:
    return -(-n // a) * a


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map any integer positions onto ``[0, n)`` by mirroring without repeating the
    edge pixel (numpy's ``reflect`` mode), for any distance beyond the edge."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m < n, m, period - m)


@dataclass(frozen=True)
class TileGrid:
    """Equal tiles covering an image.

    Attributes
    ----------
    shape : (int, int)
        Image height and width.
    core : (int, int)
        Core height and width, multiples of ``align``.
    halo : int
        Border read around each core.
    """

    shape: tuple[int, int]
    core: tuple[int, int]
    halo: int

    @property
    def counts(self) -> tuple[int, int]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.core))

    @property
    def tile_shape(self) -> tuple[int, int]:
        """Input size of each tile: core + 2 * halo."""
        return tuple(c + 2 * self.halo for c in self.core)

    def __len__(self) -> int:
        ny, nx = self.counts
        return ny * nx

    def origins(self) -> list[tuple[int, int]]:
        """Core origins (y, x) in image coordinates, row by row."""
        ny, nx = self.counts
        return [(i * self.core[0], j * self.core[1]) for i in range(ny) for j in range(nx)]

    @property
    def overhead(self) -> float:
        """Pixels the network sees per image pixel."""
        th, tw = self.tile_shape
        return len(self) * th * tw / (self.shape[0] * self.shape[1])

    def read(self, image: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        """The input window of the tile at ``origin``: (th, tw, ...) from (H, W, ...)."""
        (y0, x0), h = origin, self.halo
        rows = reflect_index(np.arange(y0 - h, y0 + self.core[0] + h), self.shape[0])
        cols = reflect_index(np.arange(x0 - h, x0 + self.core[1] + h), self.shape[1])
        if not isinstance(image, np.ndarray):
            # dask / zarr / memory-mapped: read only the window the tile needs
            r0, c0 = rows.min(), cols.min()
            image = np.asarray(image[r0:rows.max() + 1, c0:cols.max() + 1])
            rows, cols = rows - r0, cols - c0
        return image[rows[:, None], cols[None, :]]

    def core_slices(self, origin: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """Where a tile's output goes: (image slices, slices into the tile output)."""
        (y0, x0), h = origin, self.halo
        y1 = min(y0 + self.core[0], self.shape[0])
        x1 = min(x0 + self.core[1], self.shape[1])
        return (slice(y0, y1), slice(x0, x1)), (slice(h, h + y1 - y0), slice(h, h + x1 - x0))


def plan_grid(shape: tuple[int, int], max_core: int, halo: int, align: int) -> TileGrid:
    """The grid with the fewest tiles of at most ``max_core`` px, then the smallest
    equal cores that cover the image (so a 1100 px image gets two 560 px cores,
    not a 1024 px and a mostly empty one).

    ``halo`` is rounded up to a multiple of ``align``, which keeps the pooling grid
    on the image's pixel grid and tiles multiples of ``align``.
    """
    if min(shape) < 1:
        raise ValueError(f"cannot tile an image of shape {shape}")
    halo = _align_up(halo, align) if halo else 0
    max_core = max(align, max_core // align * align)
    core = []
    for s in shape:
        n = -(-s // max_core)
        core.append(_align_up(-(-s // n), align))
    return TileGrid(tuple(shape), tuple(core), halo)
