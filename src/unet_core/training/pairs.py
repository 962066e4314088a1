"""Annotated image/mask pairs from a folder, as training and validation examples.

The layout (as in published nucleus data sets)::

    <folder>/NAME_img.tif      image: grey (H, W) or colour (H, W, 3)
    <folder>/NAME_mask.tif     instance labels (H, W), 0 = background
    <folder>/MANIFEST.csv      optional: one row per NAME with ``modality``
                               ("fluorescence", "brightfield", "he"), ``source_dataset``,
                               ``licence``, ...

Each pair becomes an :class:`~.dataset.Example` whose record names its ``group`` (the
source data set: the unit that is held back to estimate how a model does on a new
lab's images), its ``stain`` and ``licence``.  Without a manifest the stain comes from
the image (:func:`~unet_core.inference.stain.detect_stain`) and every pair is its own group.
"""
from __future__ import annotations

import csv
import fnmatch
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files.fileio import read_image
from ..inference.scale import distance_diameter, equivalent_diameters
from ..inference.stain import Stain, detect_stain, parse_stain
from .example import Example, _check_arrays, uint32_ids

log = logging.getLogger(__name__)

IMAGE_SUFFIX, MASK_SUFFIX, MANIFEST = "_img", "_mask", "MANIFEST.csv"
# a manifest's words for instance masks made from binary masks (touching nuclei merged)
_BINARY_WORDS = ("binary mask",)
# an id that touches all four edges and covers more than this share of the image is the
# background given an id (a colour-coded label image decoded colour by colour)
_BACKGROUND_SHARE = 0.5


def read_manifest(folder) -> dict[str, dict]:
    """Rows of ``folder/MANIFEST.csv`` by pair name ({} when there is none)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["name"]: row for row in csv.DictReader(f) if row.get("name")}


def pair_names(folder) -> list[str]:
    """Names of the complete pairs (``NAME_img.*`` with a ``NAME_mask.*``) in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of image/mask pairs.")
    stems = {p.stem for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    return sorted(s[: -len(IMAGE_SUFFIX)] for s in stems
                  if s.endswith(IMAGE_SUFFIX) and s[: -len(IMAGE_SUFFIX)] + MASK_SUFFIX in stems)


def _file(folder: Path, stem: str) -> Path:
    hits = sorted(p for p in folder.glob(stem + ".*") if p.is_file())
    if not hits:
        raise InputError(f"No file {stem}.* in {folder}.")
    return hits[0]


def _stain_of(row: dict, image: np.ndarray) -> str:
    modality = (row.get("modality") or "").strip().lower()
    if modality:
        try:
            return parse_stain(modality)
        except InputError:
            pass
    return detect_stain(image)


def true_diameter(labels: np.ndarray, merged: bool = False) -> float | None:
    """Median nucleus diameter (px) of a mask: the median equivalent diameter of the
    whole nuclei (those cut by the image's edge are left out when at least five others
    remain: a cut nucleus is not smaller); for masks whose touching nuclei are merged
    (``merged``) from the distance transform of the foreground instead."""
    if merged:
        return distance_diameter(labels > 0)
    diameters = equivalent_diameters(labels)
    return float(np.median(diameters)) if diameters.size else None


def load_pairs(folder, groups=None, exclude_groups=None, stains=None, per_nucleus_only=False,
               names=None) -> list[Example]:
    """Read the pairs of ``folder`` as examples.

    Parameters
    ----------
    groups, exclude_groups : iterable of str, optional
        Keep only / leave out pairs whose group (the manifest's ``source_dataset``)
        matches one of these names or glob patterns (``"MoNuSeg*"``).
    stains : iterable of str, optional
        Keep only pairs of these stains.
    per_nucleus_only : bool
        Leave out pairs whose masks were made from binary masks (touching nuclei merged).
    names : iterable of str, optional
        Keep only these pair names.

    Returns
    -------
    list of Example
        ``record``: ``source`` (image path), ``group``, ``stain``, ``licence``,
        ``merged`` (instances from a binary mask), ``diameter`` (true median, px),
        ``n_objects``.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    wanted = set(names) if names is not None else None
    stains = {parse_stain(s) for s in stains} if stains else None

    def matches(group, patterns):
        return any(fnmatch.fnmatchcase(group, p) for p in patterns)

    out = []
    for name in pair_names(folder):
        if wanted is not None and name not in wanted:
            continue
        row = manifest.get(name, {})
        group = (row.get("source_dataset") or name).strip()
        if groups and not matches(group, groups):
            continue
        if exclude_groups and matches(group, exclude_groups):
            continue
        merged = any(w in group.lower() for w in _BINARY_WORDS)
        if per_nucleus_only and merged:
            continue
        img_path = _file(folder, name + IMAGE_SUFFIX)
        image = read_image(img_path)
        labels = _without_background_id(uint32_ids(read_image(_file(folder, name + MASK_SUFFIX))),
                                        name)
        mask = np.ones(labels.shape, bool)
        _check_arrays(image, labels, mask)
        stain = _stain_of(row, image)
        if stains and stain not in stains:
            continue
        record = {"source": str(img_path), "group": group, "stain": stain,
                  "licence": (row.get("licence") or "").strip() or None, "merged": merged,
                  "diameter": true_diameter(labels, merged),
                  "n_objects": int(labels.max())}
        out.append(Example(name, image, labels, mask, record))
    return out


def _without_background_id(labels: np.ndarray, name: str) -> np.ndarray:
    """``labels`` with an id that is really the background (it touches all four edges and
    covers most of the image) set to 0."""
    edges = [labels[0], labels[-1], labels[:, 0], labels[:, -1]]
    common = set(np.unique(edges[0]).tolist())
    for e in edges[1:]:
        common &= set(np.unique(e).tolist())
    for i in sorted(common - {0}):
        if (labels == i).mean() > _BACKGROUND_SHARE:
            log.warning("pair %s: id %d is the background (it covers %.0f%% of the image and "
                        "every edge); taken as background", name, i, 100 * (labels == i).mean())
            labels = np.where(labels == i, 0, labels).astype(labels.dtype)
    return labels


def group_summary(examples) -> list[dict]:
    """One row per group: name, stain, pairs, nuclei, licence (for model cards)."""
    rows: dict[str, dict] = {}
    for ex in examples:
        r = ex.record
        row = rows.setdefault(r.get("group", ex.id), {"group": r.get("group", ex.id),
                                                      "stain": r.get("stain"), "pairs": 0,
                                                      "nuclei": 0, "licence": r.get("licence")})
        row["pairs"] += 1
        row["nuclei"] += int(r.get("n_objects") or 0)
    return list(rows.values())


def sampling_weights(examples) -> np.ndarray | None:
    """Per-example probabilities: every stain the same share of the crops; within a
    stain, each group (source) a share that grows with the square root of its nuclei
    (a one-image source is seen, not learnt by heart); within a group, each example by
    its reviewed area.  None when no example names a group (then crops follow reviewed
    area alone)."""
    if not any("group" in e.record for e in examples):
        return None
    area = np.array([float(e.mask.sum()) for e in examples])
    group = [e.record.get("group", e.id) for e in examples]
    stain = [e.record.get("stain", Stain.FLUORESCENCE.value) for e in examples]
    nuclei, group_area, group_stain = Counter(), Counter(), {}
    for e, g, s, a in zip(examples, group, stain, area):
        nuclei[g] += max(int(e.record.get("n_objects") or 0), 1)
        group_area[g] += a
        group_stain[g] = s
    stain_total = Counter()
    for g, s in group_stain.items():
        stain_total[s] += np.sqrt(nuclei[g])
    n_stains = len(stain_total)
    w = np.array([a / max(group_area[g], 1.0) * np.sqrt(nuclei[g]) / stain_total[s] / n_stains
                  for a, g, s in zip(area, group, stain)])
    return w / w.sum() if w.sum() > 0 else None
