"""Instance segmentation of images larger than memory, block by block.

The image is cut into square blocks (cores).  Each block is segmented on a window of
its core plus ``overlap`` px (room for the nuclei that cross its border) plus the
network's exact halo (so its probabilities equal those of a whole-image pass).  A
block keeps the objects whose centroid lies in its core, as stardist's
``predict_instances_big`` does; every nucleus has exactly one centroid, so it gets
exactly one id, also at block corners.  Three passes, each over blocks, so each can
run on a different worker (:mod:`unet_core.distributed`):

1. ``segment``: per block, kept objects (local ids) of the core + overlap region into a
   temporary zarr array, and the core's probabilities when asked;
2. ``merge``: per core, the kept objects of the block and its 8 neighbours painted
   with global ids (block order decides the rare pixel two objects claim);
3. ``measure``: per block, :func:`unet_core.batch.measure_objects` of its own objects
   on the final labels (each lies inside the block's region), tables concatenated.

Memory is one window at a time, whatever the image size.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .lazyio import CHUNK, create_array
from .progress import Progress, Stage
from .window import segment_window

log = logging.getLogger(__name__)

#: Default block (core) side in px: a multiple of :data:`~unet_core.lazyio.CHUNK`.
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


# -- the three passes ----------------------------------------------------------------

def _keep_centred(lab: np.ndarray, reg: tuple, core: tuple, shape: tuple):
    """Relabel to 1..n the objects of ``lab`` (over region ``reg``) whose centroid lies
    in ``core``; also count kept objects that touch an inner region edge (too large
    for the overlap)."""
    n = int(lab.max(initial=0))
    if n == 0:
        return lab.astype(np.uint32), 0, 0
    flat = lab.ravel()
    area = np.bincount(flat, minlength=n + 1).astype(np.float64)
    yy, xx = np.indices(lab.shape, dtype=np.float32)
    cy = np.bincount(flat, yy.ravel(), n + 1) / np.maximum(area, 1) + reg[0]
    cx = np.bincount(flat, xx.ravel(), n + 1) / np.maximum(area, 1) + reg[2]
    keep = (area > 0) & (cy >= core[0]) & (cy < core[1]) & (cx >= core[2]) & (cx < core[3])
    keep[0] = False
    lut = np.zeros(n + 1, np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    out = lut[lab]
    edges = []
    if reg[0] > 0:
        edges.append(out[0])
    if reg[1] < shape[0]:
        edges.append(out[-1])
    if reg[2] > 0:
        edges.append(out[:, 0])
    if reg[3] < shape[1]:
        edges.append(out[:, -1])
    clipped = len(np.unique(np.concatenate(edges))) - 1 if edges else 0
    return out, int(keep.sum()), max(clipped, 0)


@dataclass
class BlockJob:
    """Everything a worker needs for one image's blocks (picklable).

    ``source`` is a path (workers reopen it) or, on one machine, the array itself.
    """

    source: object
    plan: BlockPlan
    settings: object
    work: str              # temporary zarr group (windows, labels, prob)
    want_prob: bool = False
    out_channels: int = 3

    def data(self):
        src = self.source
        if isinstance(src, (str, Path)):
            cache = self.__dict__.get("_data")
            if cache is None:
                from .lazyio import open_image

                cache = self.__dict__["_data"] = open_image(src).data
            return cache
        return src

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_data", None)
        return state

    def read(self, box) -> np.ndarray:
        y0, y1, x0, x1 = box
        return np.asarray(self.data()[y0:y1, x0:x1])


def prepare(job: BlockJob, key: dict) -> None:
    """Create the temporary arrays; keep finished blocks of an earlier run of the same
    job (same ``key``), start afresh otherwise."""
    work = Path(job.work)
    meta = work / "job.json"
    if work.exists():
        try:
            same = json.loads(meta.read_text()) == key
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(work)
    (work / "done").mkdir(parents=True, exist_ok=True)
    p = job.plan
    ny, nx = p.counts
    rh, rw = p.region_shape
    create_array(work, "windows", (ny, nx, rh, rw), np.uint32, (1, 1, rh, rw))
    chunk = (min(CHUNK, p.block),) * 2
    create_array(work, "labels", p.shape, np.uint32, chunk)
    if job.want_prob:
        create_array(work, "prob", (job.out_channels,) + p.shape, np.float32, (1,) + chunk)
    if not meta.exists():
        meta.write_text(json.dumps(key))


def _open(job, name):
    import zarr

    return zarr.open_array(str(Path(job.work) / name), mode="r+")


def segment_block(job: BlockJob, pred, ij, lock=None) -> tuple:
    """Pass 1 for block ``ij``: returns (objects kept, objects clipped by the overlap).

    ``lock``: held while the network runs and while probabilities are written (blocks
    segmented in threads share the device, and a core may share a chunk with another)."""
    i, j = ij
    marker = Path(job.work) / "done" / f"{i}_{j}.json"
    if marker.exists():
        return tuple(json.loads(marker.read_text()))
    p = job.plan
    win, reg, core = p.window(i, j), p.region(i, j), p.core(i, j)
    labels, prob = segment_window(pred, job.read(win), job.settings, job.want_prob, lock)
    inner = (slice(reg[0] - win[0], reg[1] - win[0]), slice(reg[2] - win[2], reg[3] - win[2]))
    kept, n, clipped = _keep_centred(labels[inner], reg, core, p.shape)
    store = np.zeros(p.region_shape, np.uint32)
    store[: kept.shape[0], : kept.shape[1]] = kept
    _open(job, "windows")[i, j] = store
    if prob is not None:
        with lock if lock is not None else contextlib.nullcontext():
            _open(job, "prob")[:, core[0]:core[1], core[2]:core[3]] = \
                prob[:, core[0] - win[0]:core[1] - win[0], core[2] - win[2]:core[3] - win[2]]
    marker.write_text(json.dumps([n, clipped]))
    return n, clipped


def merge_block(job: BlockJob, offsets: dict, ij) -> None:
    """Pass 2 for core ``ij``: paint the kept objects of the 3 x 3 neighbourhood."""
    i, j = ij
    p = job.plan
    y0, y1, x0, x1 = p.core(i, j)
    out = np.zeros((y1 - y0, x1 - x0), np.uint32)
    windows = _open(job, "windows")
    ny, nx = p.counts
    for a in range(max(i - 1, 0), min(i + 2, ny)):
        for b in range(max(j - 1, 0), min(j + 2, nx)):
            r = p.region(a, b)
            top, bot, lef, rig = max(r[0], y0), min(r[1], y1), max(r[2], x0), min(r[3], x1)
            if top >= bot or lef >= rig:
                continue
            lab = np.asarray(windows[a, b, top - r[0]:bot - r[0], lef - r[2]:rig - r[2]])
            dst = out[top - y0:bot - y0, lef - x0:rig - x0]
            free = (lab > 0) & (dst == 0)
            dst[free] = lab[free] + np.uint32(offsets[(a, b)])
    _open(job, "labels")[y0:y1, x0:x1] = out


def measure_block(job: BlockJob, offsets: dict, counts: dict, ij) -> dict:
    """Pass 3 for block ``ij``: measurements of its own objects in image coordinates."""
    from .batch import measure_objects

    i, j = ij
    r = job.plan.region(i, j)
    lab = np.asarray(_open(job, "labels")[r[0]:r[1], r[2]:r[3]])
    lo, hi = offsets[ij], offsets[ij] + counts[ij]
    lab = np.where((lab > lo) & (lab <= hi), lab, 0)
    table = measure_objects(lab, job.read(r))
    for col in table:
        if col.endswith("_y") and col.startswith(("centroid", "bbox")):
            table[col] = table[col] + r[0]
        elif col.endswith("_x") and col.startswith(("centroid", "bbox")):
            table[col] = table[col] + r[2]
    return table


def concat_tables(tables) -> dict:
    """Concatenate per-block measurement tables, rows sorted by label."""
    tables = [t for t in tables if t and len(t.get("label", ())) > 0]
    if not tables:
        return {}
    cols = list(tables[0])
    out = {c: np.concatenate([t[c] for t in tables]) for c in cols}
    order = np.argsort(out["label"], kind="stable")
    return {c: v[order] for c, v in out.items()}


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


def _segment_blocks(job: BlockJob, pred, blocks, threads: int):
    """Pass 1 over ``blocks``: yields ((objects, clipped), block) as blocks finish.

    With ``threads`` > 1 that many blocks are in flight: they take turns on the
    network (one lock) and run their watersheds side by side, so a GPU is not left
    waiting for one CPU core (memory: one block's window per thread)."""
    if threads <= 1 or len(blocks) < 2:
        for ij in blocks:
            yield segment_block(job, pred, ij), ij
        return
    import threading
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    lock, todo = threading.Lock(), list(blocks)
    with ThreadPoolExecutor(threads, thread_name_prefix="block") as pool:
        running = {}
        try:
            while todo or running:
                while todo and len(running) < threads:
                    ij = todo.pop(0)
                    running[pool.submit(segment_block, job, pred, ij, lock)] = ij
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    yield fut.result(), running.pop(fut)
        finally:
            todo.clear()  # closed early (cancelled): start no more blocks


def run_local(job: BlockJob, pred, measure: bool = True, threads: int = 1):
    """Generator: the three passes over the blocks; returns (objects, clipped, table
    or None).  ``threads``: blocks segmented at once (see :func:`_segment_blocks`)."""
    blocks = job.plan.blocks()
    n = len(blocks)
    counts, clipped = {}, 0
    yield Progress(0, n, Stage.PREDICT, {"blocks": n})
    for k, ((count, c), ij) in enumerate(_segment_blocks(job, pred, blocks, threads)):
        counts[ij] = count
        clipped += c
        yield Progress(k + 1, n, Stage.PREDICT, {"blocks": n})
    offsets = offsets_of(job.plan, counts)
    for k, ij in enumerate(blocks):
        merge_block(job, offsets, ij)
        yield Progress(k + 1, n, Stage.INSTANCES)
    table = None
    if measure:
        tables = []
        for k, ij in enumerate(blocks):
            tables.append(measure_block(job, offsets, counts, ij))
            yield Progress(k + 1, n, Stage.MEASURE)
        table = concat_tables(tables)
    return sum(counts.values()), clipped, table
