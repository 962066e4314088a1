"""One folder run's files: each segmented (whole or block by block), written, recorded.

:func:`process_file` segments one input and writes its outputs; a :class:`BatchRun`
takes the :class:`FileTask` of each input that needs doing through it, on this
machine or over a dask.distributed cluster, and records each result in the report
and the status file (:mod:`unet_core.scaleout.batch` finds the inputs and decides which to do).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UNetError, explain
from ..files.fileio import write_tiff
from ..files.inputs import check_image_size
from ..files.lazyio import open_image
from ..files.omezarr import write_ome_labels
from ..files.outputs import output_paths
from ..files.safefiles import atomic_write
from ..progress import FileStatus, FileStep, Progress, Stage, relay, run_to_end
from ..segmentation.measure import measure_objects, write_csv
from .distributed import predictor_spec, worker_predictor
from .large import segment_file_iter
from .route import WINDOW_SUFFIXES, route

log = logging.getLogger(__name__)

# errors of one file that must not stop the folder (torch's OOM is a RuntimeError)
FILE_ERRORS = (UNetError, OSError, ValueError, MemoryError, RuntimeError, zlib.error)


@dataclass
class BatchReport:
    """What a batch did with each input (names relative to the input folder).

    Attributes
    ----------
    done : list of str
        Segmented now.
    skipped : list of str
        Already done with the same content, model and settings (a resumed batch).
    failed : list of (str, str)
        Inputs that could not be segmented, and why.
    flagged : list of (str, str)
        Inputs segmented now whose result looks implausible (see
        :mod:`unet_core.inference.plausibility`), and the warning: which settings to check.
    """

    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    flagged: list = field(default_factory=list)

    @property
    def count(self) -> int:
        """Inputs finished so far (done, skipped or failed)."""
        return len(self.done) + len(self.skipped) + len(self.failed)


@dataclass(frozen=True)
class FileTask:
    """One input of a batch: its path, its name in the input folder (the status's
    key), its output stem, its content record (size, hash) and its job key."""

    src: Path
    name: str
    stem: str
    content: dict
    key: str


def write_status(path: Path, files: dict) -> None:
    """The status file of a batch (the record of each input), atomically."""
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps({"format_version": 1, "files": files}, indent=1) + "\n")


def process_file(pred, src: Path, output_dir: Path, stem: str, outputs=("labels", "csv"), *,
                 zarr: bool = False, client=None, spec=None, block: int | None = None,
                 ome_labels: bool = True, source_id: str | None = None):
    """Segment one file and write its outputs (atomically); yields Progress of stage
    "file".  The image's :func:`~unet_core.scaleout.route.route` decides: whole, or block by
    block (:mod:`unet_core.scaleout.large`) into ``.zarr`` stores or TIFF.  With ``ome_labels``,
    the labels of an OME-Zarr input also go into its own ``labels/nuclei``
    (:mod:`unet_core.files.omezarr`), where OME-Zarr viewers look for them.

    ``source_id``: the input's content hash when the caller has it (the block driver
    would otherwise hash the file again).

    Returns {"objects": int, "outputs": [file names], "settings": the diameter, scale
    and stain used}.
    """
    image = open_image(src)
    check_image_size(image.shape)
    way = route(image, zarr)
    paths = output_paths(stem, output_dir, outputs, way.zarr)
    if way.blocks:
        kw = {"block": block} if block else {}
        gen = segment_file_iter(pred, image, paths, client=client, model_spec=spec,
                                source_id=source_id, **kw)
    else:
        gen = pred.segment_iter(image.data, return_prob=True)
    result = yield from relay(gen, lambda p: Progress(
        0, 1, Stage.FILE, FileStep(src.name, p.stage, p.fraction)))
    if way.blocks:
        done = {"objects": result["objects"], "settings": result["settings"], "warning": None}
    else:
        done = _write_whole(pred, paths, *result, image.data)
    done["outputs"] = [p.name for p in paths.values()]     # the status checks these exist
    if ome_labels and image.ome and "labels" in paths:
        labels = open_image(paths["labels"], check_chunks=False).data if way.blocks else result[0]
        yield Progress(0, 1, Stage.FILE, FileStep(src.name, Stage.WRITE, 1.0))
        done["ome_labels"] = str(write_ome_labels(src, labels, scale=image.scale[-2:]))
    return done


def _write_whole(pred, paths: dict, labels, prob, image) -> dict:
    """The outputs of an image segmented whole; its record (objects, settings, warning)."""
    if "labels" in paths:
        write_tiff(paths["labels"], labels)
    if "prob" in paths:
        write_tiff(paths["prob"], prob)
    if "csv" in paths:
        write_csv(paths["csv"], measure_objects(labels, image))
    settings = pred.last_settings.as_record() if pred.last_settings else None
    return {"objects": int(labels.max(initial=0)), "settings": settings,
            "warning": pred.last_warning}


def _file_task(spec, src: str, output_dir: str, stem: str, options: dict):
    """Segment one file on a worker; returns (result of process_file or None, error or None)."""
    try:
        return run_to_end(process_file(worker_predictor(spec), Path(src), Path(output_dir), stem,
                                       **options)), None
    except FILE_ERRORS as err:
        return None, explain(err)


@dataclass
class BatchRun:
    """The files of one batch to do, and where their results go.

    ``options``: :func:`process_file`'s keywords (outputs, zarr, block, ome_labels);
    ``status``: the status file's records (written after each file); ``total``: the
    batch's inputs, done before included (for progress).
    """

    pred: object
    output_dir: Path
    options: dict
    status: dict
    status_path: Path
    total: int
    report: BatchReport = field(default_factory=BatchReport)

    def skip(self, name: str) -> Progress:
        """Record an input done before (resumed)."""
        self.report.skipped.append(name)
        return Progress(len(self.report.skipped), self.total, Stage.BATCH,
                        FileStatus(name, "skipped"))

    def run(self, tasks: list[FileTask], client=None):
        """Generator: every task, here or over ``client``'s workers; yields Progress."""
        if client is None:
            for task in tasks:
                yield from self.file_iter(task)
        else:
            yield from self._run_cluster(tasks, client)

    def file_iter(self, task: FileTask, **extra):
        """One file through :func:`process_file` (``extra``: its cluster keywords): its
        progress, then its record in the status and the report; yields Progress."""
        result, error = None, None
        try:
            result = yield from relay(
                process_file(self.pred, task.src, self.output_dir, task.stem, **self.options,
                             **extra, source_id=task.content.get("hash")),
                lambda p: Progress(self.report.count, self.total, Stage.FILE, p.info))
        except FILE_ERRORS as err:
            error = explain(err)
        info = self.record(task, result, error)
        yield Progress(self.report.count, self.total, Stage.BATCH, info)

    def _run_cluster(self, tasks: list[FileTask], client):
        """Small files as one task each over the workers; images larger than memory one
        after another, each split into blocks over the workers."""
        from distributed import as_completed

        spec = predictor_spec(self.pred)
        futures, big = {}, []
        for task in tasks:
            if _goes_in_blocks(task.src):
                big.append(task)
            else:
                futures[client.submit(_file_task, spec, str(task.src), str(self.output_dir),
                                      task.stem, self.options, pure=False)] = task
        for fut in as_completed(futures):
            info = self.record(futures[fut], *fut.result())
            yield Progress(self.report.count, self.total, Stage.BATCH, info)
        for task in big:
            yield from self.file_iter(task, client=client, spec=spec)

    def record(self, task: FileTask, result: dict | None, error: str | None) -> dict:
        """A finished file in the report and the status file; returns its progress info."""
        name, report = task.name, self.report
        if error is None:
            report.done.append(name)
            self.status[name] = {
                "status": "done", "key": task.key, "content": task.content,
                "objects": result["objects"], "outputs": result["outputs"],
                "settings": result.get("settings"), "warning": result.get("warning"),
                **({"ome_labels": result["ome_labels"]} if "ome_labels" in result else {}),
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        else:
            log.warning("batch: %s failed: %s", name, error)
            report.failed.append((name, error))
            self.status[name] = {"status": "failed", "error": error, "key": task.key,
                                 "content": task.content}
        write_status(self.status_path, self.status)
        warning = (result.get("warning") or None) if error is None else None
        if warning:
            report.flagged.append((name, warning))
        return FileStatus(name, "done" if error is None else "failed", error, warning)


def _goes_in_blocks(src: Path) -> bool:
    """Whether an input goes block by block (only files read by window can)."""
    if src.suffix.lower() not in WINDOW_SUFFIXES:
        return False
    try:
        return route(open_image(src)).blocks
    except FILE_ERRORS:
        return False   # the worker reports the error
