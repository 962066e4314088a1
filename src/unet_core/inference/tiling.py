"""Tile grids over an image, exact halos and tile extraction.

A grid covers an (H, W) image with equal cores of ``core`` px (multiples of the
network's alignment ``2**depth``), each read with ``halo`` px of context on every
side.  Every tile input is a window of one globally padded image whose corners sit
on the network's pooling grid, so with ``halo >= UNetConfig.receptive_radius`` the
cores of the tiled output equal one whole-image pass over that padded image.  What
lies beyond the image edges is the ``border`` choice (see :class:`TileGrid`);
pixels outside the image are mirrored (numpy's ``reflect`` mode).
"""
from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ..progress import prefetched

CLASSIC = {"tile": 128, "halo": 64, "border": "reflect"}
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


BORDERS = ("none", "reflect")


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
        Context read on each side of a core inside the image.
    align : int
        The network's alignment (``2**depth``).
    border : str
        What the network sees beyond the image edges. ``"none"``: nothing, the image
        is only mirrored up to the next multiple of ``align`` and windows are shifted
        inwards at the edges, so the result equals one forward pass over the image
        itself (the network's zero padding at the image edge, as at the edge of its
        training crops). ``"reflect"``: ``halo`` px of mirrored image on every side,
        so the result equals one forward pass over that reflect-padded image.
    """

    shape: tuple[int, int]
    core: tuple[int, int]
    halo: int
    align: int = 1
    border: str = "reflect"

    @property
    def counts(self) -> tuple[int, int]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.core))

    @property
    def padded(self) -> tuple[int, int]:
        """Image size rounded up to the alignment (the extent windows may use)."""
        return tuple(_align_up(s, self.align) for s in self.shape)

    @property
    def tile_shape(self) -> tuple[int, int]:
        """Input size of each tile: core + 2 * halo, or the whole (aligned) image
        when one window covers it and ``border`` is "none"."""
        if self.border == "reflect":
            return tuple(c + 2 * self.halo for c in self.core)
        return tuple(min(c + 2 * self.halo, p) for c, p in zip(self.core, self.padded))

    def __len__(self) -> int:
        ny, nx = self.counts
        return ny * nx

    def origins(self) -> list[tuple[int, int]]:
        """Core origins (y, x) in image coordinates, row by row."""
        ny, nx = self.counts
        return [(i * self.core[0], j * self.core[1]) for i in range(ny) for j in range(nx)]

    def window(self, origin: tuple[int, int]) -> tuple[int, int]:
        """Top-left corner (image coordinates, may be negative) of a tile's input."""
        if self.border == "reflect":
            return origin[0] - self.halo, origin[1] - self.halo
        return tuple(min(max(o - self.halo, 0), p - t)
                     for o, p, t in zip(origin, self.padded, self.tile_shape))

    @property
    def overhead(self) -> float:
        """Pixels the network sees per image pixel."""
        th, tw = self.tile_shape
        return len(self) * th * tw / (self.shape[0] * self.shape[1])

    def read(self, image: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        """The input window of the tile at ``origin``: (th, tw, ...) from (H, W, ...)."""
        (wy, wx), (th, tw) = self.window(origin), self.tile_shape
        rows = reflect_index(np.arange(wy, wy + th), self.shape[0])
        cols = reflect_index(np.arange(wx, wx + tw), self.shape[1])
        if not isinstance(image, np.ndarray):
            # dask / zarr / memory-mapped: read only the window the tile needs
            r0, c0 = rows.min(), cols.min()
            image = np.asarray(image[r0:rows.max() + 1, c0:cols.max() + 1])
            rows, cols = rows - r0, cols - c0
        return image[rows[:, None], cols[None, :]]

    def core_slices(self, origin: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """Where a tile's output goes: (image slices, slices into the tile output)."""
        (y0, x0), (wy, wx) = origin, self.window(origin)
        y1 = min(y0 + self.core[0], self.shape[0])
        x1 = min(x0 + self.core[1], self.shape[1])
        return ((slice(y0, y1), slice(x0, x1)),
                (slice(y0 - wy, y1 - wy), slice(x0 - wx, x1 - wx)))


def plan_grid(shape: tuple[int, int], max_core: int, halo: int, align: int,
              border: str = "reflect") -> TileGrid:
    """The grid with the fewest tiles of at most ``max_core`` px, then the smallest
    equal cores that cover the image (so a 1100 px image gets two 560 px cores,
    not a 1024 px and a mostly empty one).

    ``halo`` is rounded up to a multiple of ``align``, which keeps the pooling grid
    on the image's pixel grid and tiles multiples of ``align``.  With ``border``
    "none" an image whose aligned side fits in ``max_core + 2 * halo`` is one window.
    """
    if min(shape) < 1:
        raise ValueError(f"cannot tile an image of shape {shape}")
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    halo = _align_up(halo, align) if halo else 0
    max_core = max(align, max_core // align * align)
    core = []
    for s in shape:
        if border == "none" and _align_up(s, align) <= max_core + 2 * halo:
            core.append(_align_up(s, align))
            continue
        n = -(-s // max_core)
        core.append(_align_up(-(-s // n), align))
    return TileGrid(tuple(shape), tuple(core), halo, align, border)


def run_tiles(grid: TileGrid, view, forward, out: np.ndarray, batch_size: int = 1,
              prepare=None) -> Generator[int, None, None]:
    """Run ``forward`` over the tiles of ``grid`` on ``view`` and write their cores
    into ``out`` (C, H, W); yields the number of tiles in each batch, once it is written.

    ``view`` is (H, W, C) array-like (numpy, or any lazy view that reads a window when
    indexed); ``forward`` maps (B, th, tw, C) float32 to (B, C, th, tw); ``prepare``
    (optional) maps each tile as read to what ``forward`` takes (e.g. normalization).
    Batches of ``batch_size`` tiles are read in a background thread while the
    network runs on the previous one.
    """
    origins = grid.origins()
    batches = [origins[i:i + batch_size] for i in range(0, len(origins), batch_size)]

    def read(batch):
        tiles = [grid.read(view, o) for o in batch]
        return np.stack(tiles if prepare is None else [prepare(t) for t in tiles])

    for batch, x in prefetched(read, batches):
        y = forward(x)
        for o, tile_out in zip(batch, y):
            dst, src = grid.core_slices(o)
            out[(slice(None),) + dst] = tile_out[(slice(None),) + src]
        yield len(batch)
