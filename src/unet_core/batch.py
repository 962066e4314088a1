"""Folder processing: labels, probabilities and per-object measurements for every file.

:func:`batch_iter` segments every image of a folder with one loaded model and writes,
per input ``<stem>.<ext>``, atomically (temporary file, then rename):

- ``<stem>_labels.tif``: uint32 instance labels (H, W) or (Z, H, W);
- ``<stem>_prob.tif``: float32 probabilities (C, H, W) or (Z, C, H, W), when asked;
- ``<stem>_objects.csv``: one row per object (:func:`measure_objects`), when asked.

Images larger than memory (TIFF read by window, zarr) go block by block
(:mod:`unet_core.large`) and, above a size or with ``zarr=True``, write
``<stem>_labels.zarr`` / ``<stem>_prob.zarr`` stores instead of TIFF.  Two inputs
with one stem (``img.png``, ``img.tif``) get ``img_png_*`` and ``img_tif_*``.

A file that cannot be read or segmented is reported and the rest continue.  A re-run
resumes: a file is skipped when the status file (:data:`STATUS_NAME`, in the output
folder) says it was done with the same input content (size and hash), model and
settings, and all its outputs are there.  The output folder is locked while a batch
writes to it.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generator

from .devices import DEFAULT_DEVICE
from .errors import InputError, UNetError
from .fileio import IMAGE_SUFFIXES, atomic_write, content_hash, write_tiff
from .measure import measure_objects, write_csv
from .progress import Progress, Stage, relay

log = logging.getLogger(__name__)

OUTPUTS = ("labels", "prob", "csv")
SUFFIXES = {"labels": "_labels.tif", "prob": "_prob.tif", "csv": "_objects.csv"}
ZARR_SUFFIXES = {"labels": "_labels.zarr", "prob": "_prob.zarr", "csv": "_objects.csv"}
OUTPUT_ENDINGS = tuple(SUFFIXES.values()) + tuple(ZARR_SUFFIXES.values())
STATUS_NAME = ".napari-unet-batch.json"

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
        :mod:`unet_core.plausibility`), and the warning: which settings to check.
    """

    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    flagged: list = field(default_factory=list)

def output_paths(stem: str, output_dir, outputs=("labels", "csv"), as_zarr: bool = False) -> dict[str, Path]:
    """Where the ``outputs`` of input ``<stem>.*`` go: {"labels": .../<stem>_labels.tif, ...}
    (``.zarr`` stores instead of TIFF with ``as_zarr``)."""
    suffixes = ZARR_SUFFIXES if as_zarr else SUFFIXES
    return {k: Path(output_dir) / f"{stem}{suffixes[k]}" for k in outputs}


def _read_status(path: Path) -> dict:
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("ignoring unreadable batch status %s (%s)", path, err)
        return {}
    return status.get("files", {}) if isinstance(status, dict) else {}


def _write_status(path: Path, files: dict) -> None:
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps({"format_version": 1, "files": files}, indent=1) + "\n")


def _is_up_to_date(output_dir: Path, record: dict | None, key: str) -> bool:
    """The status says done with the same key (input content, model, settings), and
    every output it lists is still there."""
    if not record or record.get("status") != "done" or record.get("key") != key:
        return False
    return all((output_dir / n).exists() for n in record.get("outputs", ()))


def _is_input(p: Path) -> bool:
    from .lazyio import is_zarr_path

    return (p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) or (p.suffix == ".zarr" and is_zarr_path(p))


def _find_inputs(input_dir: Path, output_dir: Path, pattern: str | None) -> list[Path]:
    """Files matching ``pattern`` (default: every image file and .zarr folder)."""
    if not input_dir.is_dir():
        raise InputError(f"Input folder not found: {input_dir}")
    found = input_dir.glob(pattern or "*")
    files = sorted(p for p in found if not p.name.startswith(".")
                   and (_is_input(p) if pattern is None else (p.is_file() or p.suffix == ".zarr")))
    inside, out = input_dir.resolve(), output_dir.resolve()
    if inside == out:
        # our own outputs also match patterns like "*.tif*"
        files = [p for p in files if not p.name.endswith(OUTPUT_ENDINGS)]
    elif inside in out.parents:
        # an output folder inside the input folder: "**/*.tif" would find our outputs
        files = [p for p in files if out not in p.resolve().parents]
    if not files:
        what = repr(pattern) if pattern else "(no TIFF, PNG, JPEG, BMP or .zarr images)"
        raise InputError(f"No files match {what} in {input_dir}. Check the folder and the file "
                         "pattern (e.g. *.tif*, *.png).")
    return files


def output_stems(files: list[Path], input_dir: Path) -> dict[Path, str]:
    """Output stem of each input: its path in ``input_dir`` without the extension, or
    with ``_<ext>`` appended when two inputs share a stem (``img.png`` and ``img.tif``
    -> ``img_png``, ``img_tif``)."""
    def stem(p: Path) -> str:
        name = str(p.relative_to(input_dir))
        for ext in (".ome.tiff", ".ome.tif", ".ome.zarr", p.suffix):
            if ext and name.lower().endswith(ext):
                return name[: -len(ext)]
        return name

    stems = {p: stem(p) for p in files}
    seen: dict[str, int] = {}
    for s in stems.values():
        seen[s] = seen.get(s, 0) + 1
    return {p: (s if seen[s] == 1 else f"{s}_{p.suffix.lstrip('.').lower()}") for p, s in stems.items()}


def describe_failure(err: BaseException) -> str:
    """The message reported for a file that failed."""
    if isinstance(err, MemoryError):
        return "Not enough memory for this image; use a smaller tile or another machine."
    return str(err) if isinstance(err, UNetError) else f"{type(err).__name__}: {err}"


def process_file(pred, src: Path, output_dir: Path, stem: str, outputs=("labels", "csv"), *,
                 zarr: bool = False, client=None, spec=None, block: int | None = None,
                 ome_labels: bool = True, source_id: str | None = None):
    """Segment one file and write its outputs (atomically); yields Progress of stage
    "file".  Images larger than memory go block by block (:mod:`unet_core.large`),
    into ``.zarr`` stores when large (or ``zarr``), else TIFF.  With ``ome_labels``,
    the labels of an OME-Zarr input also go into its own ``labels/nuclei``
    (:mod:`unet_core.omezarr`), where OME-Zarr viewers look for them.

    ``source_id``: the input's content hash when the caller has it (the block driver
    would otherwise hash the file again).

    Returns {"objects": int, "outputs": [file names], "settings": the diameter, scale
    and stain used}.
    """
    from .inputs import check_image_size
    from .large import ZARR_PIXELS, segment_file_iter, wants_blocks
    from .lazyio import open_image

    image = open_image(src)
    check_image_size(image.shape)
    big = wants_blocks(image)
    as_zarr = big and (zarr or image.shape[0] * image.shape[1] > ZARR_PIXELS)
    paths = output_paths(stem, output_dir, outputs, as_zarr)
    if big:
        kw = {"block": block} if block else {}
        gen = segment_file_iter(pred, image, paths, client=client, model_spec=spec,
                                source_id=source_id, **kw)
    else:
        gen = pred.segment_iter(image.data, return_prob=True)
    result = yield from relay(gen, lambda p: Progress(
        0, 1, Stage.FILE, {"file": src.name, "stage": p.stage, "fraction": p.fraction}))
    warning = None
    if big:
        n, settings = result["objects"], result["settings"]
    else:
        settings = pred.last_settings.as_record() if pred.last_settings else None
        warning = pred.last_warning
        labels, prob = result
        if "labels" in paths:
            write_tiff(paths["labels"], labels)
        if "prob" in paths:
            write_tiff(paths["prob"], prob)
        if "csv" in paths:
            write_csv(paths["csv"], measure_objects(labels, image.data))
        n = int(labels.max(initial=0))
    names = [p.name for p in paths.values()]     # the status checks these exist
    if ome_labels and image.ome and "labels" in paths:
        from .omezarr import write_ome_labels

        done = open_image(paths["labels"], check_chunks=False).data if big else labels
        yield Progress(0, 1, Stage.FILE, {"file": src.name, "stage": Stage.WRITE, "fraction": 1.0})
        where = write_ome_labels(src, done, scale=image.scale[-2:])
        return {"objects": n, "outputs": names, "settings": settings, "ome_labels": str(where),
                "warning": warning}
    return {"objects": n, "outputs": names, "settings": settings, "warning": warning}


#: The :class:`~unet_core.options.PredictOptions` a file's resume key holds.
_KEY_OPTIONS = ("tile", "halo", "border", "tta")


def _job_key(content: dict, model_id, outputs, pred, zarr, ome_labels=True) -> str:
    options = pred.options.to_dict()
    return json.dumps({"input": content["hash"], "size": content["stat"][0], "model": model_id,
                       "outputs": list(outputs), "zarr": bool(zarr),
                       **({} if ome_labels else {"ome_labels": False}),
                       **{k: options[k] for k in _KEY_OPTIONS}}, sort_keys=True)


def batch_iter(model_or_predictor, input_dir, output_dir, *, pattern: str | None = None,
               outputs=("labels", "csv"), device: str = DEFAULT_DEVICE, resume: bool = True,
               zarr: bool = False, client=None, block: int | None = None,
               ome_labels: bool = True) -> Generator[Progress, None, dict]:
    """Segment every image in a folder, yielding progress; resumable.

    Parameters
    ----------
    model_or_predictor : Predictor, Model, UNet, str or path
        A ready :class:`~unet_core.predict.Predictor` (used as is), or anything
        :class:`Predictor` accepts (loaded once, on ``device``).
    input_dir, output_dir : path
        Folder of input images; folder for the outputs (created if missing, locked
        against a second batch while this one runs).
    pattern : str, optional
        Glob of the inputs inside ``input_dir`` (``"*.tif*"``; ``"**/*.png"`` recurses).
        Default: every image file (TIFF, PNG, JPEG, BMP) and ``.zarr`` folder.
    outputs : sequence of {"labels", "prob", "csv"}
        What to write per file (see the module docstring).
    device : str
        Device when a model (not a Predictor) is given.
    resume : bool
        Skip files done before with the same content, model and settings (the status
        file records a hash of each input) whose outputs are all present.
    zarr : bool
        Write labels / probabilities of images segmented block by block as zarr
        stores at any size (always above :data:`unet_core.large.ZARR_PIXELS`).
    client : distributed.Client, optional
        Spread files over the cluster's workers (and huge images' blocks).
    block : int, optional
        Block side in px for images segmented block by block (memory per block).
    ome_labels : bool
        Also write the labels of OME-Zarr inputs into their own ``labels/nuclei``
        (OME-NGFF label image), where OME-Zarr viewers find them.

    Yields
    ------
    Progress
        ``Progress(i, n, "batch", {"file", "status", "error"})`` after each file, with
        status "done", "skipped" or "failed" (``error`` the message for failures), and
        ``Progress(i, n, "file", {"file", "stage", "fraction"})`` while a file runs.
        Stopping the generator cancels; finished files stay written.

    Returns
    -------
    BatchReport

    Raises
    ------
    InputError
        A missing input folder, no matching files, unknown outputs, or an output
        folder another batch is writing to.
    """
    from .lazyio import folder_lock
    from .predict import Predictor

    outputs = tuple(dict.fromkeys(outputs))
    unknown = set(outputs) - set(OUTPUTS)
    if unknown or not outputs:
        raise InputError(f"Unknown or no outputs {sorted(unknown)}; choose from {list(OUTPUTS)}.")
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    files = _find_inputs(input_dir, output_dir, pattern)
    stems = output_stems(files, input_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"The output {output_dir} is a file, not a folder; give a folder with -o.")
    output_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(output_dir):
        _remove_stale_temporaries(output_dir)
        pred = model_or_predictor if isinstance(model_or_predictor, Predictor) else \
            Predictor(model_or_predictor, device=device)
        card = pred.model.card
        model_id = card.get("sha256") or card.get("name")
        status_path = output_dir / STATUS_NAME
        status = _read_status(status_path)
        report = BatchReport()
        todo, n = [], len(files)
        for src in files:
            name = str(src.relative_to(input_dir))
            record = status.get(name) or {}
            try:
                content = content_hash(src, record.get("content"))
            except OSError as err:
                content = {"stat": [0, 0], "hash": f"unreadable: {err}"}
            key = _job_key(content, model_id, outputs, pred, zarr, ome_labels)
            if resume and _is_up_to_date(output_dir, record, key):
                report.skipped.append(name)
                yield Progress(len(report.skipped), n, Stage.BATCH, {"file": name, "status": "skipped"})
                continue
            todo.append((src, name, stems[src], content, key))
        if client is not None:
            from .distributed import run_files as runner
        else:
            runner = _run_local
        options = {"outputs": outputs, "zarr": zarr, "block": block, "ome_labels": ome_labels}
        yield from runner(pred, todo, output_dir, options, client, status, status_path, report, n)
    return report


def record_result(report, status, status_path, name, content, key, result, error):
    if error is None:
        report.done.append(name)
        status[name] = {"status": "done", "key": key, "content": content,
                        "objects": result["objects"], "outputs": result["outputs"],
                        "settings": result.get("settings"), "warning": result.get("warning"),
                        **({"ome_labels": result["ome_labels"]} if "ome_labels" in result else {}),
                        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    else:
        log.warning("batch: %s failed: %s", name, error)
        report.failed.append((name, error))
        status[name] = {"status": "failed", "error": error, "key": key, "content": content}
    _write_status(status_path, status)
    info = {"file": name, "status": "done" if error is None else "failed"}
    if error is not None:
        info["error"] = error
    elif result.get("warning"):
        report.flagged.append((name, result["warning"]))
        info["warning"] = result["warning"]
    return info


def count_files(report: BatchReport) -> int:
    return len(report.done) + len(report.skipped) + len(report.failed)


def _remove_stale_temporaries(output_dir: Path) -> None:
    """Temporary files of a killed run (we hold the folder's lock, so nobody else is
    writing them); unfinished block work (``.*.blocks.part``) stays, to be resumed."""
    import shutil

    for p in output_dir.glob(".*.part"):
        if p.is_file():
            p.unlink(missing_ok=True)
    for p in output_dir.glob(".*.old"):
        shutil.rmtree(p, ignore_errors=True)


def _run_local(pred, todo, output_dir, options, client, status, status_path, report, n):
    for entry in todo:
        yield from file_iter(pred, entry, output_dir, options, status, status_path, report, n)


def file_iter(pred, entry, output_dir, options, status, status_path, report, n, **extra):
    """One file through :func:`process_file` (``extra``: its cluster keywords): its
    progress, then its record in the status and the report; yields Progress."""
    src, name, stem, content, key = entry
    result, error = None, None
    try:
        result = yield from relay(process_file(pred, src, output_dir, stem, **options, **extra,
                                               source_id=content.get("hash")),
                                  lambda p: Progress(count_files(report), n, Stage.FILE, p.info))
    except FILE_ERRORS as err:
        error = describe_failure(err)
    info = record_result(report, status, status_path, name, content, key, result, error)
    yield Progress(count_files(report), n, Stage.BATCH, info)
