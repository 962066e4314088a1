"""Instance segmentation of images larger than memory, block by block.

The image is cut into square blocks (cores).  Each block is segmented on a window of
its core plus ``overlap`` px (room for the nuclei that cross its border) plus the
network's exact halo (so its probabilities equal those of a whole-image pass).  A
block keeps the objects whose centroid lies in its core, as stardist's
``predict_instances_big`` does; every nucleus has exactly one centroid, so it gets
exactly one id, also at block corners.  Three passes, each over blocks, so each can
run on a different worker (:mod:`unet_core.scaleout.distributed`):

1. ``segment``: per block, kept objects (local ids) of the core + overlap region into a
   temporary zarr array, and the core's probabilities when asked;
2. ``merge``: per core, the kept objects of the block and its 8 neighbours painted
   with global ids (block order decides the rare pixel two objects claim);
3. ``measure``: per block, :func:`unet_core.segmentation.measure.measure_objects` of its own objects
   on the final labels (each lies inside the block's region), tables concatenated.

:func:`run_blocks` drives the passes through an executor: :class:`ThreadExecutor` on
this machine, :class:`unet_core.scaleout.distributed.DaskExecutor` over a cluster's workers.
Memory is one window at a time, whatever the image size.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from ..files.lazyio import CHUNK, create_array, open_image
from ..inference.window import segment_window
from ..progress import BlockCount, Progress, Stage
from ..segmentation.measure import measure_objects
from .blockplan import BlockPlan, offsets_of

log = logging.getLogger(__name__)


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


class ThreadExecutor:
    """The passes on this machine: pass 1 with ``threads`` blocks in flight (they take
    turns on the network, one lock, and run their watersheds side by side, so a GPU is
    not left waiting for one CPU core; memory: one block's window per thread), passes
    2 and 3 one block after another."""

    def __init__(self, pred, threads: int = 1):
        self.pred, self.threads = pred, int(threads)

    def segment(self, job: BlockJob, blocks):
        """Pass 1 over ``blocks``: yields (block, (objects, clipped)) as blocks finish."""
        if self.threads <= 1 or len(blocks) < 2:
            for ij in blocks:
                yield ij, segment_block(job, self.pred, ij)
            return
        lock, todo = threading.Lock(), list(blocks)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="block") as pool:
            running = {}
            try:
                while todo or running:
                    while todo and len(running) < self.threads:
                        ij = todo.pop(0)
                        running[pool.submit(segment_block, job, self.pred, ij, lock)] = ij
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        yield running.pop(fut), fut.result()
            finally:
                todo.clear()  # closed early (cancelled): start no more blocks

    def map(self, fn, args: tuple, blocks):
        """``fn(*args, ij)`` for each block: yields (block, result) as blocks finish."""
        for ij in blocks:
            yield ij, fn(*args, ij)


def run_blocks(job: BlockJob, executor, measure: bool = True):
    """Generator: the three passes over the blocks through ``executor``
    (:class:`ThreadExecutor` or :class:`~unet_core.scaleout.distributed.DaskExecutor`); returns
    (objects, clipped, table or None)."""
    blocks = job.plan.blocks()
    n = len(blocks)
    counts, clipped = {}, 0
    yield Progress(0, n, Stage.PREDICT, BlockCount(n))
    for k, (ij, (count, c)) in enumerate(executor.segment(job, blocks)):
        counts[ij] = count
        clipped += c
        yield Progress(k + 1, n, Stage.PREDICT, BlockCount(n))
    offsets = offsets_of(job.plan, counts)
    for k, _ in enumerate(executor.map(merge_block, (job, offsets), blocks)):
        yield Progress(k + 1, n, Stage.INSTANCES)
    table = None
    if measure:
        tables = []
        for k, (_, t) in enumerate(executor.map(measure_block, (job, offsets, counts), blocks)):
            tables.append(t)
            yield Progress(k + 1, n, Stage.MEASURE)
        table = concat_tables(tables)
    return sum(counts.values()), clipped, table
