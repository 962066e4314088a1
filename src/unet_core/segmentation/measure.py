"""Per-object measurements of instance labels, and tables as CSV."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from skimage.measure import regionprops_table

from ..errors import InputError
from ..files.safefiles import atomic_write

_PROPS_2D = ("label", "area", "centroid", "bbox", "intensity_mean", "intensity_max",
             "intensity_min", "eccentricity", "equivalent_diameter_area", "perimeter",
             "solidity", "orientation", "axis_major_length", "axis_minor_length")
# eccentricity, perimeter, orientation are 2D only; solidity fails on the flat (one-plane)
# objects of plane-by-plane stacks
_PROPS_3D = ("label", "area", "centroid", "bbox", "intensity_mean", "intensity_max",
             "intensity_min", "equivalent_diameter_area")

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
