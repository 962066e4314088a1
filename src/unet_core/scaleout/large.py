"""One image larger than memory, file to files: blocks in, zarr or TIFF out.

:func:`segment_file_iter` reads an image by window (:func:`unet_core.files.lazyio.open_image`),
segments it block by block (:mod:`unet_core.scaleout.blocks`), on this machine or over a
dask.distributed cluster, and writes labels (and probabilities) as a chunked zarr
store or a tiled TIFF, plus the merged per-object CSV.  Work in progress lives in a
hidden folder next to the outputs (``.<name>.blocks.part``): a killed run leaves no
output, and a re-run of the same job reuses the blocks already segmented.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import zarr

from ..errors import InputError
from ..files.fileio import content_hash
from ..files.lazyio import LazyImage, open_image, zarr_to_tiff
from ..files.safefiles import replace_dir
from ..inference.window import block_predictor, block_threads, image_settings
from ..progress import Progress, Stage
from ..segmentation.measure import write_csv
from .blockplan import BLOCK, job_key, make_plan
from .blocks import BlockJob, ThreadExecutor, prepare, run_blocks
from .distributed import DaskExecutor
from .heap import trimmed


def _finish_array(src: Path, final: Path) -> Path:
    """A finished zarr array of the work folder to ``final`` (.zarr: moved; else TIFF)."""
    if final.suffix == ".zarr" or final.parent.suffix == ".zarr":
        final.parent.mkdir(parents=True, exist_ok=True)
        return replace_dir(src, final)
    return zarr_to_tiff(zarr.open_array(str(src), mode="r"), final)


def segment_file_iter(pred, source, outputs: dict, *, client=None, model_spec=None,
                      block: int = BLOCK, overlap: int | None = None, model_id=None,
                      threads: int | None = None, source_id: str | None = None):
    """Segment one (large) image block by block and write its outputs.

    Parameters
    ----------
    pred : Predictor
        Serves the blocks on this machine (and decides the image's settings).
    source : path or LazyImage
        Image file / zarr store (workers of a cluster reopen paths), or an opened image.
    outputs : dict
        {"labels": path, "prob": path, "csv": path}, any subset with "labels" or "prob";
        a ``.zarr`` suffix writes a zarr array, else a tiled TIFF.
    client : distributed.Client, optional
        Spread the blocks over this cluster's workers (needs a path ``source``).
    model_spec : dict, optional
        How workers rebuild the predictor (:func:`unet_core.scaleout.distributed.predictor_spec`).
    block, overlap : int
        Block core side and object margin in px (see :func:`unet_core.scaleout.blockplan.make_plan`).
    threads : int, optional
        Blocks segmented at once here (default :func:`~unet_core.inference.window.block_threads`).
    source_id : str, optional
        What identifies the input's content (a hash); finished blocks of an earlier run
        are reused only for the same one.  Default: the hash of ``source``'s file.

    Yields
    ------
    Progress
        Stages "predict" (blocks segmented), "instances" (merged), "measure", "write".

    Returns
    -------
    dict
        {"objects": int, "clipped": int, "settings": dict}: objects found, objects
        larger than the overlap (cut at a block window's edge; raise ``overlap`` if not
        0), and the diameter, scale and stain used (``ImageSettings.as_record()``;
        the ImageSettings itself under "image_settings").
    """
    image = source if isinstance(source, LazyImage) else open_image(source)
    first = next(iter(outputs.values()))
    work = Path(first).parent / f".{Path(first).name}.blocks.part"
    settings = image_settings(pred, image.data)
    job = _block_job(pred, image, settings, work, outputs, block, overlap,
                     use_path=client is not None)
    if source_id is None and image.path is not None:
        source_id = content_hash(Path(image.path))["hash"]
    prepare(job, job_key(job.plan, settings, model_id, image.shape, image.data.dtype, source_id))
    measure = "csv" in outputs
    if client is not None:
        passes = run_blocks(job, DaskExecutor(client, model_spec), measure)
    else:      # here, with the heap's freed memory handed back as the blocks go
        n = block_threads(pred) if threads is None else int(threads)
        passes = trimmed(run_blocks(job, ThreadExecutor(block_predictor(pred), n), measure))
    objects, clipped, table = yield from passes
    yield Progress(0, 1, Stage.WRITE)
    _finish(work, outputs, table)
    yield Progress(1, 1, Stage.WRITE)
    return {"objects": int(objects), "clipped": int(clipped), "settings": settings.as_record(),
            "image_settings": settings}


def _block_job(pred, image: LazyImage, settings, work: Path, outputs: dict, block: int,
               overlap, use_path: bool) -> BlockJob:
    """The blocks of ``image`` (read from its path by a cluster's workers: ``use_path``)."""
    plan = make_plan(image.shape, pred.model.config, block, overlap,
                     settings.diameter, settings.scale)
    if use_path and image.path is None:
        raise InputError("A cluster needs the image as a file or zarr path its workers can read.")
    return BlockJob(str(image.path) if use_path else image.data, plan, settings, str(work),
                    want_prob="prob" in outputs, out_channels=pred.model.config.out_channels)


def _finish(work: Path, outputs: dict, table) -> None:
    """The work folder's finished arrays (and ``table``) to ``outputs``; then it goes."""
    if "labels" in outputs:
        _finish_array(work / "labels", Path(outputs["labels"]))
    if "prob" in outputs:
        _finish_array(work / "prob", Path(outputs["prob"]))
    if "csv" in outputs:
        write_csv(outputs["csv"], table or {"label": np.zeros(0, np.int64)})
    shutil.rmtree(work, ignore_errors=True)


def build_pyramid(group_dir, source=None, min_side: int = 1024, chunk: int = 1024):
    """A multiscale pyramid (levels "0", "1", ... halving, by striding: right for labels)
    in the zarr group ``group_dir``, for viewers that read only what they show.

    Level "0" is ``source`` copied band by band, or already in the group.  Returns the
    levels as zarr arrays, largest first.
    """
    group = zarr.open_group(str(group_dir), mode="a")
    if source is not None:
        level0 = group.create_array("0", shape=source.shape, dtype=source.dtype,
                                    chunks=(chunk, chunk), fill_value=0, overwrite=True)
        for y in range(0, source.shape[0], chunk):
            level0[y:y + chunk] = np.asarray(source[y:y + chunk])
    levels = [group["0"]]
    while max(levels[-1].shape) > min_side:
        prev = levels[-1]
        shape = tuple(-(-s // 2) for s in prev.shape)
        nxt = group.create_array(str(len(levels)), shape=shape, dtype=prev.dtype,
                                 chunks=(chunk, chunk), fill_value=0, overwrite=True)
        for y in range(0, prev.shape[0], 2 * chunk):
            nxt[y // 2:(y + 2 * chunk) // 2] = np.asarray(prev[y:y + 2 * chunk])[::2, ::2]
        levels.append(nxt)
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}], "datasets": [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [2.0**k] * 2}]}
        for k in range(len(levels))]}]
    return levels


def segment_to_pyramid_iter(pred, data, folder, want_prob: bool = False, block: int = BLOCK):
    """Segment an (H, W[, C]) array-like (numpy, dask, zarr) block by block into zarr
    pyramids under ``folder`` (``labels.zarr``, and ``foreground.zarr`` with
    ``want_prob``), for a viewer to show lazily.

    Returns {"objects": int, "clipped": int, "labels": [zarr levels],
    "foreground": [zarr levels] or None}.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {"labels": folder / "labels.zarr" / "0"}
    if want_prob:
        outputs["prob"] = folder / "prob.zarr"
    result = yield from segment_file_iter(pred, LazyImage(data), outputs, block=block)
    yield Progress(0, 1, Stage.PYRAMID)
    result["labels"] = build_pyramid(folder / "labels.zarr")
    result["foreground"] = None
    if want_prob:
        prob = zarr.open_array(str(outputs["prob"]), mode="r")
        result["foreground"] = build_pyramid(folder / "foreground.zarr", source=_Channel(prob, 0))
    yield Progress(1, 1, Stage.PYRAMID)
    return result


class _Channel:
    """Channel ``c`` of a (C, H, W) array-like, read lazily as (H, W)."""

    def __init__(self, arr, c: int):
        self.arr, self.c = arr, c
        self.shape, self.dtype = tuple(arr.shape[1:]), arr.dtype

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return self.arr[(self.c,) + key]
