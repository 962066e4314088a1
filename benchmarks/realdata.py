"""Real fluorescence nuclei with expert labels, for honest checks (never for training).

The stardist wheel on PyPI ships one 512 x 512 fluorescence image from the 2018 Data
Science Bowl with its expert instance mask.  This module downloads that wheel once
with pip into a cache folder and reads the two TIFFs from it; nothing is committed.
"""
from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent / "data"
WHEEL_SPEC = "stardist==0.9.2"


def dsb2018_sample(cache: Path = CACHE):
    """(image uint16 (512, 512), labels (512, 512)) of the DSB2018 sample, or raise."""
    import tifffile

    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("stardist-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
                        WHEEL_SPEC], check=True)
        wheels = sorted(cache.glob("stardist-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as z:
        img = tifffile.imread(io.BytesIO(z.read("stardist/data/images/img2d.tif")))
        lab = tifffile.imread(io.BytesIO(z.read("stardist/data/images/mask2d.tif")))
    return img, lab


def classical_baseline(image):
    """Otsu threshold + distance-transform watershed: the classical reference."""
    import numpy as np
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    s = gaussian(image.astype(np.float32), 1)
    mask = ndi.binary_fill_holes(s > threshold_otsu(s))
    dist = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(dist, min_distance=5, labels=ndi.label(mask)[0])
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=mask).astype(np.uint32)
