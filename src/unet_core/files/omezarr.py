"""Instance labels into an OME-Zarr image's own ``labels/`` group (OME-NGFF 0.4 / 0.5).

Viewers that read OME-Zarr (napari-ome-zarr, ome-zarr-py, Fiji's MoBIE, ...) find label
images in ``<image>.zarr/labels/<name>/``: a multiscale pyramid of integer arrays with
``image-label`` metadata, listed in ``labels/``'s own ``labels`` attribute.  The store is
written beside its final place and renamed in, so a killed run leaves the old labels
or the new ones, never a half-written pyramid.

>>> write_ome_labels("plate.ome.zarr", labels, name="nuclei", scale=(0.325, 0.325))
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import zarr

from .safefiles import replace_dir

LABELS_NAME = "nuclei"


def zarr_format_of(path: Path) -> int:
    """2 for a zarr v2 store (``.zgroup``/``.zattrs``), else 3."""
    return 2 if (path / ".zgroup").exists() or (path / ".zattrs").exists() else 3


def _set_ome_attrs(group, fmt: int, **attrs) -> None:
    """NGFF 0.4 (zarr v2) keeps its keys at the top level; 0.5 (zarr v3) under "ome"."""
    if fmt == 2:
        group.attrs.update(attrs)
    else:
        ome = dict(group.attrs.get("ome", {}))
        ome.update(attrs, version="0.5")
        group.attrs["ome"] = ome


def write_ome_labels(image_path, labels, name: str = LABELS_NAME, scale=(1.0, 1.0),
                     chunk: int = 1024, min_side: int = 256) -> Path:
    """Write ``labels`` as the label image ``name`` of the OME-Zarr image at ``image_path``.

    Parameters
    ----------
    image_path : path
        The OME-Zarr image group (the one with ``multiscales``).
    labels : array-like, (H, W) integer
        Instance ids (numpy, zarr or dask: read in bands of ``chunk`` rows).
    name : str
        The label image's name under ``labels/``; an existing one is replaced.
    scale : (float, float)
        The image's pixel size (y, x) at level 0, so the labels overlay it.

    Returns
    -------
    Path
        ``<image_path>/labels/<name>``.
    """
    image_path = Path(image_path)
    fmt = zarr_format_of(image_path)
    labels_dir = image_path / "labels"
    root = zarr.open_group(str(labels_dir), mode="a", zarr_format=fmt)
    final = labels_dir / name
    tmp = labels_dir / f".{name}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(str(tmp), mode="w", zarr_format=fmt)
    shape = tuple(int(s) for s in labels.shape)
    dtype = np.dtype(labels.dtype) if np.dtype(labels.dtype).kind in "iu" else np.dtype(np.uint32)
    level = group.create_array("0", shape=shape, dtype=dtype, chunks=(chunk, chunk), fill_value=0)
    for y in range(0, shape[0], chunk):
        level[y:y + chunk] = np.asarray(labels[y:y + chunk]).astype(dtype, copy=False)
    levels = [level]
    while max(levels[-1].shape) > min_side:
        prev = levels[-1]
        nxt = group.create_array(str(len(levels)), shape=tuple(-(-s // 2) for s in prev.shape),
                                 dtype=dtype, chunks=(chunk, chunk), fill_value=0)
        for y in range(0, prev.shape[0], 2 * chunk):
            # every other pixel: ids stay ids (no averaging of labels)
            nxt[y // 2:(y + 2 * chunk) // 2] = np.asarray(prev[y:y + 2 * chunk])[::2, ::2]
        levels.append(nxt)
    sy, sx = (float(s) for s in scale[-2:])
    multiscales = [{"version": "0.4", "name": name, "axes": [
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}], "datasets": [
        {"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [sy * 2.0**k, sx * 2.0**k]}]} for k in range(len(levels))]}]
    if fmt != 2:
        multiscales[0].pop("version")
    _set_ome_attrs(group, fmt, multiscales=multiscales,
                   **{"image-label": {"version": "0.4", "source": {"image": "../../"}}}
                   if fmt == 2 else {"image-label": {"source": {"image": "../../"}}})
    replace_dir(tmp, final)
    names = list(root.attrs.get("labels", []) if fmt == 2 else
                 root.attrs.get("ome", {}).get("labels", []))
    if name not in names:
        _set_ome_attrs(root, fmt, labels=names + [name])
    return final
