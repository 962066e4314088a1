"""Where the blocks of an image larger than memory lie, and what their results depend on.

A :class:`BlockPlan` cuts an (H, W) image into square cores; each core is segmented on
a window of core + ``overlap`` (room for the nuclei that cross its border) + the
network's exact halo (see :mod:`unet_core.scaleout.blocks` for the passes over them).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

#: Default block (core) side in px: a multiple of :data:`~unet_core.files.lazyio.CHUNK`.
BLOCK = 2048
#: Default room for nuclei crossing a block border, px (a nucleus up to ~this wide).
OVERLAP = 64


def _align_up(n: int, a: int) -> int:
    return -(-int(n) // a) * a


@dataclass(frozen=True)
class BlockPlan:
    """Blocks over an (H, W) image.

    Attributes
    ----------
    shape : (int, int)
    block : int
        Core side in px.
    overlap : int
        Object margin around each core, px (a multiple of ``align``).
    context : int
        Network context beyond the margin, px (the model's exact halo).
    """

    shape: tuple
    block: int = BLOCK
    overlap: int = OVERLAP
    context: int = 96

    @property
    def counts(self) -> tuple:
        return tuple(-(-s // self.block) for s in self.shape)

    def blocks(self) -> list:
        ny, nx = self.counts
        return [(i, j) for i in range(ny) for j in range(nx)]

    def core(self, i, j) -> tuple:
        """(y0, y1, x0, x1) of block (i, j)'s core."""
        b, (h, w) = self.block, self.shape
        return i * b, min((i + 1) * b, h), j * b, min((j + 1) * b, w)

    def _grow(self, i, j, m) -> tuple:
        y0, y1, x0, x1 = self.core(i, j)
        h, w = self.shape
        return max(y0 - m, 0), min(y1 + m, h), max(x0 - m, 0), min(x1 + m, w)

    def region(self, i, j) -> tuple:
        """Core + overlap, clipped to the image: where the block's objects may lie."""
        return self._grow(i, j, self.overlap)

    def window(self, i, j) -> tuple:
        """Region + context: what the network reads for the block."""
        return self._grow(i, j, self.overlap + self.context)

    @property
    def region_shape(self) -> tuple:
        return tuple(min(self.block + 2 * self.overlap, s) for s in self.shape)


def make_plan(shape, model_config, block: int = BLOCK, overlap: int | None = None,
              diameter: float | None = None, scale: float = 1.0) -> BlockPlan:
    """A plan whose window origins sit on the network's pooling grid (exact tiling at
    ``scale`` 1; with resampling, windows agree with the whole image up to interpolation).

    ``overlap`` defaults to 2.5 x ``diameter`` (the largest expected nucleus, image px)
    when the diameter is known, else :data:`OVERLAP`.  The network's context is its
    exact halo, in image px (``halo / scale``).
    """
    align = model_config.alignment
    if overlap is None:
        overlap = math.ceil(2.5 * diameter) if diameter else OVERLAP
    overlap = _align_up(max(int(overlap), align), align)
    block = _align_up(max(int(block), 2 * overlap), align)
    context = _align_up(math.ceil(model_config.halo / min(max(scale, 1e-3), 1.0)), align)
    return BlockPlan(tuple(int(s) for s in shape[:2]), block, overlap, context)


def offsets_of(plan: BlockPlan, counts: dict) -> dict:
    """First id - 1 of each block's objects, in block order."""
    offsets, total = {}, 0
    for ij in plan.blocks():
        offsets[ij] = total
        total += counts[ij]
    return offsets


def job_key(plan: BlockPlan, settings, model_id, shape, dtype, source: str | None = None) -> dict:
    """What a finished block depends on (an earlier run's blocks are reused if equal):
    ``source`` identifies the input's content (a hash of its file), so blocks of an
    image since replaced by another of the same shape are not reused."""
    s = asdict(settings) if hasattr(settings, "__dataclass_fields__") else repr(settings)
    return json.loads(json.dumps({"plan": asdict(plan), "settings": s, "model": model_id,
                                  "shape": list(shape), "dtype": str(dtype), "source": source},
                                 default=str))

