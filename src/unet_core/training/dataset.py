"""The training set on disk: corrected examples that survive any crash.

A training set is a folder with one sub-folder per example::

    <folder>/<id>/image-<rev>.tif     the image, (H, W) or (H, W, C), its own dtype
    <folder>/<id>/labels-<rev>.tif    instance labels, uint32 (H, W), 0 = background
    <folder>/<id>/mask-<rev>.tif      reviewed region, uint8 (H, W), 1 = reviewed
    <folder>/<id>/example.json        the record: source, region, date, object count, files

Every file is written to a temporary name and renamed into place.  The record is
written last and names the files of its revision, so it is the commit point: a
crash before its rename leaves the previous revision (or nothing), a crash after it
leaves the new one.  Files of older revisions are deleted only after the commit.
The example id is derived from the source image and region, so adding the same
region of the same image again replaces the example.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import uuid
from pathlib import Path

import numpy as np

from ..errors import ImageFileError, InputError, UNetError
from ..files.fileio import IMAGE_SUFFIXES, read_image, write_tiff
from ..files.safefiles import atomic_write
from ..inference.scale import labels_diameter
from .example import (  # noqa: F401  (part of this module's interface)
    Example,
    _check_arrays,
    _region_json,
    as_example,
    example_id,
    uint32_ids,
)

log = logging.getLogger(__name__)

RECORD_NAME = "example.json"
RECORD_VERSION = 1


class TrainingSet:
    """A folder of training examples (see the module docstring for the layout).

    Parameters
    ----------
    folder : str or Path
        Created on the first :meth:`add` if it does not exist.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"{self.folder} is a file; a training set is a folder.")

    def __repr__(self) -> str:
        return f"TrainingSet({str(self.folder)!r}, {len(self)} examples)"

    def _example_dirs(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def add(self, image, labels, region_mask=None, source=None, region=None) -> str:
        """Add (or replace) an example; returns its id.

        Parameters
        ----------
        image : array, (H, W) or (H, W, C)
            Any real dtype; stored as is.
        labels : array of int, (H, W)
            Instance ids, 0 = background; stored as uint32.
        region_mask : array of bool, (H, W), optional
            Reviewed pixels (default: all).
        source : str or Path, optional
            The image the example was cut from (file path or layer name).
        region : optional
            Where in the source: bounding box, tuple of slices or any JSON value.
        """
        image, labels = np.asarray(image), np.asarray(labels)
        mask = np.ones(labels.shape, bool) if region_mask is None else np.asarray(region_mask) > 0
        _check_arrays(image, labels, mask)
        if not mask.any():
            raise InputError("The reviewed region is empty; mark the region you corrected first.")
        ex_id = example_id(source, region, image)
        folder = self.folder / ex_id
        folder.mkdir(parents=True, exist_ok=True)
        rev = uuid.uuid4().hex[:8]
        files = {k: f"{k}-{rev}.tif" for k in ("image", "labels", "mask")}
        write_tiff(folder / files["image"], image)
        write_tiff(folder / files["labels"], uint32_ids(labels))
        write_tiff(folder / files["mask"], mask.astype(np.uint8))
        ids = np.unique(labels[mask])
        record = {
            "format_version": RECORD_VERSION, "id": ex_id,
            "source": None if source is None else str(source), "region": _region_json(region),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "shape": list(image.shape), "dtype": str(image.dtype),
            "n_objects": int((ids > 0).sum()), "reviewed_pixels": int(mask.sum()),
            "diameter": labels_diameter(labels, mask), "files": files,
        }
        with atomic_write(folder / RECORD_NAME) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")
        for p in folder.iterdir():  # older revisions, after the commit
            if p.name != RECORD_NAME and p.name not in files.values() and not p.name.startswith("."):
                p.unlink()
        log.info("training set %s: stored example %s (%d objects)", self.folder, ex_id,
                 record["n_objects"])
        return ex_id

    def remove(self, ex_id: str) -> None:
        """Remove an example (atomically: its folder is renamed away, then deleted)."""
        folder = self.folder / ex_id
        if ex_id.startswith(".") or not (folder / RECORD_NAME).exists():
            raise InputError(f"There is no example {ex_id!r} in {self.folder}.")
        folder.rename(self.folder / f".removed-{ex_id}-{uuid.uuid4().hex[:8]}")
        for trash in self.folder.glob(".removed-*"):  # this one and any a crash left
            shutil.rmtree(trash, ignore_errors=True)

    def _record(self, folder: Path) -> dict:
        path = folder / RECORD_NAME
        try:
            record = json.loads(path.read_text())
            if not isinstance(record.get("files"), dict):
                raise ValueError("no 'files' entry")
        except (OSError, ValueError, AttributeError) as err:
            raise UNetError(f"The record {path} is unreadable ({err}); remove the example "
                            "and add it again.") from None
        return record

    def list(self) -> list[dict]:
        """Records of the complete examples (those with a readable record), by id."""
        out = []
        for folder in self._example_dirs():
            if not (folder / RECORD_NAME).exists():
                continue  # an add that never committed
            try:
                out.append(self._record(folder))
            except UNetError as err:
                log.warning("%s", err)
        return out

    def ids(self) -> list[str]:
        return [r["id"] for r in self.list()]

    def __len__(self) -> int:
        return len(self.list())

    def __contains__(self, ex_id) -> bool:
        return (self.folder / str(ex_id) / RECORD_NAME).exists()

    @property
    def n_objects(self) -> int:
        """Objects (instance ids in reviewed pixels) over all examples."""
        return int(sum(r.get("n_objects", 0) for r in self.list()))

    def load_example(self, ex_id: str) -> Example:
        """Read one example; raises :class:`UNetError` saying what is wrong with it."""
        folder = self.folder / ex_id
        record = self._record(folder)
        files = record["files"]
        image = read_image(folder / files["image"])
        labels = read_image(folder / files["labels"])
        mask = read_image(folder / files["mask"]) > 0
        try:
            _check_arrays(image, labels, mask)
        except InputError as err:
            raise UNetError(f"Example {ex_id} in {self.folder} is inconsistent: {err}") from None
        return Example(ex_id, image, uint32_ids(labels), mask, record)

    def load(self, on_error: str = "report") -> tuple[list[Example], list[tuple[str, str]]]:
        """Read every complete example.

        Parameters
        ----------
        on_error : {"report", "raise"}
            "report": skip broken examples and list them; "raise": raise the first.

        Returns
        -------
        examples : list of Example
        problems : list of (id, message)
            Corrupt or missing files, labels of the wrong shape, unreadable records.
        """
        if on_error not in ("report", "raise"):
            raise InputError(f"on_error must be 'report' or 'raise', got {on_error!r}")
        examples, problems = [], []
        for folder in self._example_dirs():
            if not (folder / RECORD_NAME).exists():
                continue
            try:
                examples.append(self.load_example(folder.name))
            except UNetError as err:
                if on_error == "raise":
                    raise
                log.warning("skipping training example %s: %s", folder.name, err)
                problems.append((folder.name, str(err)))
        return examples, problems


def _stem(path: Path) -> str:
    s = path.stem
    for suffix in ("_labels", "_label", "_mask", "_region", "_regions"):
        if s.endswith(suffix):
            return s[: -len(suffix)]
    return s


def _images_in(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder.")
    return {_stem(p): p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}


def examples_from_folders(images_dir, labels_dir, regions_dir=None
                          ) -> tuple[list[Example], list[tuple[str, str]]]:
    """Pair images with labels (and reviewed-region masks) by file stem.

    A ``_labels`` / ``_mask`` / ``_region`` suffix of the stem is ignored, so
    ``a.tif`` pairs with ``a_labels.tif``.  Without a region file every pixel counts
    as reviewed.

    Returns
    -------
    examples : list of Example
    problems : list of (stem, message)
        Images without labels, unreadable files, shapes that do not match.
    """
    images = _images_in(Path(images_dir))
    labels = _images_in(Path(labels_dir))
    regions = _images_in(Path(regions_dir)) if regions_dir is not None else {}
    examples, problems = [], []
    for stem, path in images.items():
        if stem not in labels:
            problems.append((stem, f"no labels for {path.name} in {labels_dir}"))
            continue
        try:
            image, lab = read_image(path), read_image(labels[stem])
            mask = read_image(regions[stem]) > 0 if stem in regions else np.ones(lab.shape[:2], bool)
            _check_arrays(image, lab, mask)
        except (ImageFileError, InputError) as err:
            problems.append((stem, str(err)))
            continue
        record = {"source": str(path), "labels": str(labels[stem]),
                  "n_objects": int((np.unique(lab[mask]) > 0).sum())}
        examples.append(Example(stem, image, uint32_ids(lab), mask, record))
    for stem in sorted(set(labels) - set(images)):
        problems.append((stem, f"labels {labels[stem].name} have no image in {images_dir}"))
    return examples, problems
