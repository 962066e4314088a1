"""File > Open of large images: TIFF and OME-Zarr as lazy multiscale image layers.

napari's own readers read a file whole; a 20,000 px mosaic then costs gigabytes before
anything runs.  This reader opens TIFFs (tiled, striped, BigTIFF) and zarr / OME-Zarr
images of more than :func:`unet_core.files.pyramid.large_pixels` per plane (4096 x 4096
by default) as multiscale layers whose levels are read, or built, only where napari
shows them (:func:`unet_core.files.pyramid.open_pyramid`).  Smaller files, stacks and
multichannel images are left to napari's readers (``get_reader`` returns None).

Segment reads level 0 of such a layer by window and segments it block by block.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

#: Layer metadata: the file a layer was read from, and where its levels come from.
SOURCE_KEY = "napari_unet_source"
LEVELS_KEY = "napari_unet_levels"


def get_reader(path):
    """The reader of ``path`` if it is a large TIFF or zarr image, else None."""
    from unet_core.files.pyramid import open_pyramid

    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    pyramid = open_pyramid(path)
    return None if pyramid is None else partial(read_pyramid, pyramid)


def _stem(path: Path) -> str:
    name = path.name.rstrip("/")
    for end in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".btf", ".tf8"):
        if name.lower().endswith(end):
            return name[: -len(end)]
    return name


def contrast_of(level) -> tuple[float, float]:
    """Contrast limits from the 0.5 and 99.8 percentiles of a (small) level."""
    small = np.asarray(level[...])
    lo, hi = (float(v) for v in np.percentile(small, (0.5, 99.8)))
    return (lo, hi if hi > lo else lo + 1.0)


def read_pyramid(pyramid, path=None) -> list:
    """One multiscale image layer of ``pyramid`` (napari's LayerData tuple)."""
    kwargs = {"name": _stem(Path(pyramid.path)), "multiscale": True, "rgb": pyramid.rgb,
              "scale": pyramid.scale, "cache": False,
              "metadata": {SOURCE_KEY: str(pyramid.path),
                           LEVELS_KEY: "file" if pyramid.own_levels else "built"}}
    if not pyramid.rgb:
        kwargs["contrast_limits"] = contrast_of(pyramid.levels[-1])
    return [(pyramid.levels, kwargs, "image")]
