"""Folder processing: labels, probabilities and per-object measurements for every file.

:func:`batch_iter` segments every image of a folder with one loaded model and writes,
per input ``<stem>.<ext>``, atomically (temporary file, then rename):

- ``<stem>_labels.tif``: uint32 instance labels (H, W) or (Z, H, W);
- ``<stem>_prob.tif``: float32 probabilities (C, H, W) or (Z, C, H, W), when asked;
- ``<stem>_objects.csv``: one row per object (:func:`~unet_core.segmentation.measure.measure_objects`),
  when asked.

Images larger than memory (TIFF read by window, zarr) go block by block
(:mod:`unet_core.scaleout.large`; :func:`unet_core.scaleout.route.route` decides) and, above a size or
with ``zarr=True``, write
``<stem>_labels.zarr`` / ``<stem>_prob.zarr`` stores instead of TIFF.  Two inputs
with one stem (``img.png``, ``img.tif``) get ``img_png_*`` and ``img_tif_*``.

A file that cannot be read or segmented is reported and the rest continue.  A re-run
resumes: a file is skipped when the status file (:data:`STATUS_NAME`, in the output
folder) says it was done with the same input content (size and hash), model and
settings, and all its outputs are there.  The output folder is locked while a batch
writes to it.
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Generator
from pathlib import Path

from ..errors import InputError
from ..files.fileio import content_hash
from ..files.outputs import OUTPUT_ENDINGS, OUTPUTS, output_stems
from ..files.safefiles import folder_lock
from ..inference.devices import DEFAULT_DEVICE
from ..inference.predict import Predictor
from ..progress import Progress
from .batch_run import BatchReport, BatchRun, FileTask
from .route import is_input

log = logging.getLogger(__name__)

STATUS_NAME = ".napari-unet-batch.json"


def _read_status(path: Path) -> dict:
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("ignoring unreadable batch status %s (%s)", path, err)
        return {}
    return status.get("files", {}) if isinstance(status, dict) else {}


def _is_up_to_date(output_dir: Path, record: dict | None, key: str) -> bool:
    """The status says done with the same key (input content, model, settings), and
    every output it lists is still there."""
    if not record or record.get("status") != "done" or record.get("key") != key:
        return False
    return all((output_dir / n).exists() for n in record.get("outputs", ()))



def _find_inputs(input_dir: Path, output_dir: Path, pattern: str | None) -> list[Path]:
    """Files matching ``pattern`` (default: every image file and .zarr folder)."""
    if not input_dir.is_dir():
        raise InputError(f"Input folder not found: {input_dir}")
    found = input_dir.glob(pattern or "*")
    files = sorted(p for p in found if not p.name.startswith(".")
                   and (is_input(p) if pattern is None else (p.is_file() or p.suffix == ".zarr")))
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



#: The :class:`~unet_core.inference.options.PredictOptions` a file's resume key holds.
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
               ome_labels: bool = True) -> Generator[Progress, None, BatchReport]:
    """Segment every image in a folder, yielding progress; resumable.

    Parameters
    ----------
    model_or_predictor : Predictor, Model, UNet, str or path
        A ready :class:`~unet_core.inference.predict.Predictor` (used as is), or anything
        :class:`Predictor` accepts (loaded once, on ``device``).
    input_dir, output_dir : path
        Folder of input images; folder for the outputs (created if missing, locked
        against a second batch while this one runs).
    pattern : str, optional
        Glob of the inputs inside ``input_dir`` (``"*.tif*"``; ``"**/*.png"`` recurses).
        Default: every image file (:data:`unet_core.scaleout.route.INPUT_SUFFIXES`, ``.zarr``).
    outputs : sequence of {"labels", "prob", "csv"}
        What to write per file (see the module docstring).
    device : str
        Device when a model (not a Predictor) is given.
    resume : bool
        Skip files done before with the same content, model and settings (the status
        file records a hash of each input) whose outputs are all present.
    zarr : bool
        Write labels / probabilities of images segmented block by block as zarr
        stores at any size (always above :data:`unet_core.scaleout.route.ZARR_PIXELS`).
    client : distributed.Client, optional
        Spread files over the cluster's workers (and huge images' blocks).
    block : int, optional
        Block side in px for images segmented block by block (memory per block).
    ome_labels : bool
        Also write the labels of OME-Zarr inputs into their own ``labels/nuclei``
        (OME-NGFF label image), where OME-Zarr viewers find them.

    Yields ``Progress(i, n, "batch", FileStatus)`` after each file (status "done",
    "skipped" or "failed") and ``Progress(i, n, "file", FileStep)`` while a file runs
    (:mod:`unet_core.progress`); stopping the generator cancels (finished files stay).
    Returns a :class:`BatchReport`.  Raises :class:`InputError` for a missing input
    folder, no matching files, unknown outputs, or an output folder in use.
    """
    outputs = tuple(dict.fromkeys(outputs))
    unknown = set(outputs) - set(OUTPUTS)
    if unknown or not outputs:
        raise InputError(f"Unknown or no outputs {sorted(unknown)}; choose from {list(OUTPUTS)}.")
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    files = _find_inputs(input_dir, output_dir, pattern)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"The output {output_dir} is a file, not a folder; give a folder with -o.")
    output_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(output_dir):  # one batch at a time writes to a folder
        _remove_stale_temporaries(output_dir)
        pred = model_or_predictor if isinstance(model_or_predictor, Predictor) else \
            Predictor(model_or_predictor, device=device)
        options = {"outputs": outputs, "zarr": zarr, "block": block, "ome_labels": ome_labels}
        status = output_dir / STATUS_NAME
        run = BatchRun(pred, output_dir, options, _read_status(status), status, len(files))
        todo = yield from _tasks(run, files, input_dir, resume)
        yield from run.run(todo, client)
    return run.report


def _tasks(run: BatchRun, files: list[Path], input_dir: Path, resume: bool):
    """Generator: returns the :class:`FileTask` of each input to do; yields the
    progress of the inputs skipped (done before, with the same key)."""
    card = run.pred.model.card
    model_id = card.get("sha256") or card.get("name")
    opts = run.options
    stems, _ = output_stems(files, root=input_dir)
    todo = []
    for src in files:
        name = str(src.relative_to(input_dir))
        record = run.status.get(name) or {}
        try:
            content = content_hash(src, record.get("content"))
        except OSError as err:
            content = {"stat": [0, 0], "hash": f"unreadable: {err}"}
        key = _job_key(content, model_id, opts["outputs"], run.pred, opts["zarr"],
                       opts["ome_labels"])
        if resume and _is_up_to_date(run.output_dir, record, key):
            yield run.skip(name)
        else:
            todo.append(FileTask(src, name, stems[src], content, key))
    return todo


def _remove_stale_temporaries(output_dir: Path) -> None:
    """Temporary files of a killed run (we hold the folder's lock, so nobody else is
    writing them); unfinished block work (``.*.blocks.part``) stays, to be resumed."""
    for p in output_dir.glob(".*.part"):
        if p.is_file():
            p.unlink(missing_ok=True)
    for p in output_dir.glob(".*.old-*"):
        shutil.rmtree(p, ignore_errors=True)

