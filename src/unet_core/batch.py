"""Folder processing: labels, probabilities and per-object measurements for every file.

:func:`batch_iter` segments every image of a folder with one loaded model and writes,
per input ``<stem>.<ext>``, atomically (temporary file, then rename):

- ``<stem>_labels.tif``: uint32 instance labels (H, W) or (Z, H, W);
- ``<stem>_prob.tif``: float32 probabilities (C, H, W) or (Z, C, H, W), when asked;
- ``<stem>_objects.csv``: one row per object (:func:`measure_objects`), when asked.

A file that cannot be read or segmented is reported and the rest continue.  A re-run
resumes: a file is skipped when all its outputs exist and are newer than the input,
unless the status file (:data:`STATUS_NAME`, in the output folder) says they were made
by another model.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Generator

import numpy as np

from .errors import InputError, UNetError
from .fileio import atomic_write, read_image, write_tiff
from .progress import Progress

log = logging.getLogger(__name__)

OUTPUTS = ("labels", "prob", "csv")
SUFFIXES = {"labels": "_labels.tif", "prob": "_prob.tif", "csv": "_objects.csv"}
STATUS_NAME = ".napari-unet-batch.json"

_PROPS_2D = ("label", "area", "centroid", "bbox", "intensity_mean", "intensity_max",
             "intensity_min", "eccentricity", "equivalent_diameter_area", "perimeter",
             "solidity", "orientation", "axis_major_length", "axis_minor_length")
# eccentricity, perimeter, orientation are 2D only; solidity fails on the flat (one-plane)
# objects of plane-by-plane stacks
_PROPS_3D = ("label", "area", "centroid", "bbox", "intensity_mean", "intensity_max",
             "intensity_min", "equivalent_diameter_area")
# errors of one file that must not stop the folder (torch's OOM is a RuntimeError)
_FILE_ERRORS = (UNetError, OSError, ValueError, MemoryError, RuntimeError)


def output_paths(stem: str, output_dir, outputs=("labels", "csv")) -> dict[str, Path]:
    """Where the ``outputs`` of input ``<stem>.*`` go: {"labels": .../<stem>_labels.tif, ...}."""
    return {k: Path(output_dir) / f"{stem}{SUFFIXES[k]}" for k in outputs}


def _column_name(key: str, ndim: int) -> str:
    """skimage's "centroid-0" / "bbox-3" / "intensity_mean-1" -> "centroid_y" / "bbox_max_x" /
    "intensity_mean_ch1"."""
    name, _, idx = key.partition("-")
    if not idx:
        return name
    i = int(idx)
    axes = "zyx"[-ndim:]
    if name == "centroid":
        return f"centroid_{axes[i]}"
    if name == "bbox":
        return f"bbox_{'min' if i < ndim else 'max'}_{axes[i % ndim]}"
    return f"{name}_ch{i}"


def measure_objects(labels: np.ndarray, image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-object measurements of instance labels (skimage ``regionprops_table``).

    Parameters
    ----------
    labels : ndarray, (H, W) or (Z, H, W), integer
        Instance ids, 0 = background.
    image : ndarray, optional
        Intensities of the same (H, W) / (Z, H, W), optionally with a trailing channel
        axis ((H, W, C) colour images); without it the intensity columns are left out.

    Returns
    -------
    dict of str to 1D ndarray
        Columns in order: label, area (px), centroid_y/x, bbox_min_y/x, bbox_max_y/x,
        intensity_mean/max/min (``_ch<k>`` per channel), eccentricity,
        equivalent_diameter_area, perimeter, solidity, orientation (rad),
        axis_major_length, axis_minor_length (2D only past solidity).
    """
    from skimage.measure import regionprops_table

    labels = np.asarray(labels)
    props = _PROPS_2D if labels.ndim == 2 else _PROPS_3D
    if image is not None:
        image = np.asarray(image)
        if image.shape[:labels.ndim] != labels.shape or image.ndim > labels.ndim + 1:
            raise InputError(f"The intensity image {image.shape} does not fit labels {labels.shape}.")
    else:
        props = tuple(p for p in props if not p.startswith("intensity"))
    table = regionprops_table(labels.astype(np.int64, copy=False), intensity_image=image,
                              properties=props)
    return {_column_name(k, labels.ndim): np.asarray(v) for k, v in table.items()}


def write_csv(path, table: dict[str, np.ndarray]) -> Path:
    """Write a column table atomically as CSV (floats with 6 significant digits)."""
    columns = list(table)
    rows = zip(*(table[c].tolist() for c in columns))
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
    return Path(path)


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


def _is_up_to_date(src: Path, paths, record: dict | None, model_id: str | None) -> bool:
    """All outputs exist, are newer than the input, and came from this model (if known)."""
    if record and model_id and record.get("model") not in (None, model_id):
        return False
    if not all(p.is_file() for p in paths):
        return False
    mtime = src.stat().st_mtime_ns
    return all(p.stat().st_mtime_ns >= mtime for p in paths)


def _find_inputs(input_dir: Path, output_dir: Path, pattern: str) -> list[Path]:
    if not input_dir.is_dir():
        raise InputError(f"Input folder not found: {input_dir}")
    files = sorted(p for p in input_dir.glob(pattern) if p.is_file() and not p.name.startswith("."))
    if input_dir.resolve() == output_dir.resolve():
        # our own outputs also match patterns like "*.tif*"
        files = [p for p in files if not p.name.endswith(tuple(SUFFIXES.values()))]
    if not files:
        raise InputError(f"No files match {pattern!r} in {input_dir}. Check the folder and the "
                         "file pattern (e.g. *.tif*, *.png).")
    return files


def _process(pred, src: Path, paths: dict[str, Path], n_done: int, n: int):
    """Segment one file and write its outputs; yields Progress of stage "file"."""
    image = read_image(src)
    gen = pred.segment_iter(image, return_prob=True)
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            labels, prob = stop.value
            break
        yield Progress(n_done, n, "file", {"file": src.name, "stage": p.stage, "fraction": p.fraction})
    if "labels" in paths:
        write_tiff(paths["labels"], labels)
    if "prob" in paths:
        write_tiff(paths["prob"], prob)
    if "csv" in paths:
        write_csv(paths["csv"], measure_objects(labels, image))
    return int(labels.max(initial=0))


def batch_iter(model_or_predictor, input_dir, output_dir, *, pattern: str = "*.tif*",
               outputs=("labels", "csv"), device: str = "auto",
               resume: bool = True) -> Generator[Progress, None, dict]:
    """Segment every image in a folder, yielding progress; resumable.

    Parameters
    ----------
    model_or_predictor : Predictor, Model, UNet, str or path
        A ready :class:`~unet_core.predict.Predictor` (used as is), or anything
        :class:`Predictor` accepts (loaded once, on ``device``).
    input_dir, output_dir : path
        Folder of input images; folder for the outputs (created if missing).
    pattern : str
        Glob of the inputs inside ``input_dir`` (``"*.tif*"``; ``"**/*.png"`` recurses).
    outputs : sequence of {"labels", "prob", "csv"}
        What to write per file (see the module docstring).
    device : str
        Device when a model (not a Predictor) is given.
    resume : bool
        Skip files whose outputs are all present and newer than the input.

    Yields
    ------
    Progress
        ``Progress(i, n, "batch", {"file", "status", "error"})`` after each file, with
        status "done", "skipped" or "failed" (``error`` the message for failures), and
        ``Progress(i, n, "file", {"file", "stage", "fraction"})`` while a file runs.
        Stopping the generator cancels; finished files stay written.

    Returns
    -------
    dict
        ``{"done": [names], "skipped": [names], "failed": [(name, message)]}``.

    Raises
    ------
    InputError
        A missing input folder, no matching files, or unknown outputs.
    """
    from .predict import Predictor

    outputs = tuple(dict.fromkeys(outputs))
    unknown = set(outputs) - set(OUTPUTS)
    if unknown or not outputs:
        raise InputError(f"Unknown or no outputs {sorted(unknown)}; choose from {list(OUTPUTS)}.")
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    files = _find_inputs(input_dir, output_dir, pattern)
    output_dir.mkdir(parents=True, exist_ok=True)
    pred = model_or_predictor if isinstance(model_or_predictor, Predictor) else \
        Predictor(model_or_predictor, device=device)
    card = pred.model.card
    model_id = card.get("sha256") or card.get("name")
    status_path = output_dir / STATUS_NAME
    status = _read_status(status_path) if resume else {}
    report = {"done": [], "skipped": [], "failed": []}
    n = len(files)
    for i, src in enumerate(files):
        name = str(src.relative_to(input_dir))
        stem = name[: -len(src.suffix)] if src.suffix else name
        if src.name.lower().endswith(".ome.tif") or src.name.lower().endswith(".ome.tiff"):
            stem = stem[: -len(".ome")]
        paths = output_paths(stem, output_dir, outputs)
        info = {"file": name}
        if resume and _is_up_to_date(src, paths.values(), status.get(name), model_id):
            report["skipped"].append(name)
            yield Progress(i + 1, n, "batch", {**info, "status": "skipped"})
            continue
        try:
            n_objects = yield from _process(pred, src, paths, i, n)
        except _FILE_ERRORS as err:
            msg = str(err) if isinstance(err, UNetError) else f"{type(err).__name__}: {err}"
            if isinstance(err, MemoryError):
                msg = "Not enough memory for this image; use a smaller tile or another machine."
            log.warning("batch: %s failed: %s", name, msg)
            report["failed"].append((name, msg))
            status[name] = {"status": "failed", "error": msg, "model": model_id}
            _write_status(status_path, status)
            yield Progress(i + 1, n, "batch", {**info, "status": "failed", "error": msg})
            continue
        report["done"].append(name)
        status[name] = {"status": "done", "model": model_id, "objects": n_objects,
                        "outputs": [p.name for p in paths.values()],
                        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        _write_status(status_path, status)
        yield Progress(i + 1, n, "batch", {**info, "status": "done"})
    return report
