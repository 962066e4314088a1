"""Synthetic fluorescence-nuclei images with exact instance labels.

Used to train the bundled ``nuclei`` U-Net, in tests and as napari sample data.
Every image draws its own "sample and acquisition": typical nucleus size, density,
clustering, outline irregularity, brightness spread, chromatin texture, nucleoli,
optical blur, uneven illumination, background, out-of-focus haze and debris, photon
count, read noise, gain and offset; so that a data set spans the variety of real
nuclear stains (DAPI, Hoechst; widefield and confocal) as in DSB2018 stage 1.
Images are grey, bright nuclei on a dark background, never inverted.

>>> image, labels = synthetic_nuclei((256, 256), seed=1)
>>> image.dtype, labels.dtype, image.shape
(dtype('uint16'), dtype('uint32'), (256, 256))
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb_from_hed

from .synthetic_steps import (
    add_haze,
    camera,
    clean_labels,
    draw_nuclei,
    illuminate,
    loguniform,
    sample_nuclei,
)

#: Defaults of ``**params``.  A ``(lo, hi)`` pair is sampled per image (log-uniformly
#: for the quantities in ``_LOG``); a scalar is used as is.
DEFAULTS = {
    "radius_range": (4.0, 40.0),   # px, hard limits of a nucleus' mean radius
    "density": (0.04, 0.55),       # target fraction of the image covered by nuclei
    "noise": (0.015, 0.35),        # shot noise at median nucleus brightness, 1/sqrt(photons)
    "read_noise": (0.0, 3.0),      # Gaussian read noise, photo-electrons
    "blur": (0.3, 2.2),            # px, Gaussian sigma of the optics
    "edge": (0.5, 2.5),            # px, width of each nucleus' own edge falloff
    "clustering": (0.0, 0.9),      # chance a nucleus is put next to another (clumps)
    "spacing": (0.8, 1.02),        # min centre distance / sum of radii (< 1: slight overlap)
    "irregularity": (0.0, 0.12),   # amplitude of the low-order Fourier outline terms
    "elongation": (0.45, 0.9),     # smallest minor/major axis ratio in the image
    "size_spread": (0.08, 0.35),   # std of log radius within an image
    "brightness_spread": (0.1, 0.5),  # std of log brightness between nuclei
    "texture": (0.05, 0.3),        # std of internal chromatin texture, relative
    "background": (0.005, 0.5),    # background level relative to median nucleus brightness
    "illumination": (0.0, 0.35),   # amplitude of the low-frequency illumination field
    "dim_fraction": (0.0, 0.12),   # fraction of dim nuclei (~2-4x background noise)
    "haze": 0.4,                   # probability of out-of-focus haze and debris (unlabelled)
    "mitotic": 0.5,                # probability of a few small, very bright mitotic nuclei
    "pressed": 0.4,                # probability that nuclei press flat against each other: no
                                   # dark seam or bright overlap where they touch, only the labels
}
_LOG = {"density", "noise", "background", "blur"}
_MAX_NUCLEI = 3000


SAMPLE_SEED = 2025
"""Seed of the sample image (napari sample data and ``napari-unet sample``)."""

SAMPLE_PARAMS = {"radius_range": (9.0, 16.0), "density": (0.3, 0.4), "mitotic": 1.0, "haze": 0.0}
"""Parameters of the sample image: a DAPI-like field of mid-sized nuclei, a few mitotic."""


def _param(rng, p, key):
    """One value of ``p[key]``; always consumes one draw so the stream stays aligned."""
    u, v = rng.random(), p[key]
    if np.ndim(v) == 0:
        return float(v)
    lo, hi = float(v[0]), float(v[1])
    if key in _LOG and lo > 0:
        return float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))
    return lo + u * (hi - lo)


def synthetic_nuclei(shape=(512, 512), *, n=None, seed=0, dtype="uint16", return_info=False, **params):
    """A synthetic fluorescence image of nuclei and its instance labels.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the image in pixels.
    n : int, optional
        Number of nuclei to try to place; by default it follows from a random density.
    seed : int or numpy.random.SeedSequence or numpy.random.Generator
        Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed and
        parameters give the same arrays.
    dtype : {"uint16", "uint8"}
        Output dtype of the image.  uint16 images use a random part of the range (the
        brightest pixel lands between about 500 and 60000); uint8 ones 100..255.
    return_info : bool
        Also return a dict of the parameters drawn for this image.
    **params
        Overrides of :data:`DEFAULTS`, e.g. ``radius_range=(6, 12)``, ``density=0.3``,
        ``noise=0.05``; a ``(lo, hi)`` pair is sampled per image, a scalar is fixed.

    Returns
    -------
    image : ndarray, (H, W) uint8 or uint16
        Bright nuclei on a dark, uneven background with shot and read noise.
    labels : ndarray, (H, W) uint32
        Instance ids ``1..N`` (0 is background); each id is one 4-connected region of
        at least 10 px.  Where nuclei overlap, the one drawn later is on top.  Haze
        and debris are not labelled.
    info : dict
        Only with ``return_info=True``.
    """
    dtype = _checked(params, dtype)
    p = {**DEFAULTS, **params}
    h, w = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(seed)
    q, r0, (rlo, rhi), n_target = _image_params(rng, p, h, w, n)
    nuc = sample_nuclei(rng, q, r0, rlo, rhi, h, w, n_target)
    img, labels = draw_nuclei(rng, q, nuc, h, w)
    add_haze(rng, q, img, r0)
    signal = illuminate(rng, q, img)
    image, top, offset = camera(rng, q, signal, dtype)
    labels = clean_labels(labels, 10)
    if not return_info:
        return image, labels
    info = dict(q, radius=r0, n_target=n_target, n=int(labels.max()), mitotic=int(nuc.mitotic.sum()),
                top=float(top), offset=float(offset))
    return image, labels, info


def _checked(params, dtype) -> np.dtype:
    """The output dtype; unknown parameters or dtypes are refused."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"dtype must be uint8 or uint16, got {dtype}")
    return dtype


def _image_params(rng, p, h, w, n):
    """This image's draw of every parameter, its typical radius, the radius limits and
    the number of nuclei to place."""
    q = {k: _param(rng, p, k) for k in DEFAULTS if k != "radius_range"}
    rlo, rhi = (float(v) for v in p["radius_range"])
    r0 = float(loguniform(rng, rlo, rhi))
    mean_area = np.pi * r0 ** 2 * np.exp(2 * q["size_spread"] ** 2)
    n_target = int(n) if n is not None else int(round(q["density"] * h * w / mean_area))
    n_target = int(np.clip(n_target, 1, _MAX_NUCLEI))
    return q, r0, (rlo, rhi), n_target


def _one_synthetic(args):
    shape, child, params = args
    return synthetic_nuclei(shape, seed=child, **params)


def synthetic_dataset(count, shape=(256, 256), seed=0, workers=1, **params):
    """``count`` independent synthetic images, each with its own random acquisition.

    Parameters
    ----------
    count : int
    shape : (int, int)
        ``(H, W)`` of every image.
    seed : int
        Seeds the children (``numpy.random.SeedSequence(seed).spawn``) of the images.
    workers : int
        Processes that make them (the same images whatever the number).
    **params
        Passed to :func:`synthetic_nuclei` (``dtype``, ``n``, overrides of :data:`DEFAULTS`).

    Returns
    -------
    list of (image, labels)
        image (H, W) uint16 (or ``dtype``), labels (H, W) uint32.
    """
    children = np.random.SeedSequence(seed).spawn(int(count))
    jobs = [(tuple(shape), child, params) for child in children]
    workers = max(1, min(int(workers), len(jobs) // 16))
    if workers == 1:
        return [_one_synthetic(job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_one_synthetic, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def render_he(image: np.ndarray, labels: np.ndarray, seed=0) -> np.ndarray:
    """An H&E-looking RGB rendering (uint8 (H, W, 3)) of a nuclear fluorescence image.

    Beer-Lambert with the H&E vectors of :func:`skimage.color.rgb_from_hed`: the
    hematoxylin optical density follows the nuclear stain (its 1st-99.8th percentile
    range mapped to 0-1.2), eosin is a smooth pink field everywhere (0.1-0.8, weaker
    inside nuclei), under a white light of 245 with a little camera noise.  Dark purple
    nuclei on pink: what colour deconvolution has to undo.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(image, np.float32)
    lo, hi = np.percentile(x, [1, 99.8])
    hem = np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1) * 1.2
    field = ndi.gaussian_filter(rng.normal(size=x.shape), 8)
    eosin = 0.35 + 0.15 * field / max(float(field.std()), 1e-6)
    eosin = np.clip(eosin, 0.1, 0.8) * np.where(np.asarray(labels) > 0, 0.6, 1.0)
    od = hem[..., None] * rgb_from_hed[0] + eosin[..., None] * rgb_from_hed[1]
    rgb = 245 * np.exp(-od) + rng.normal(0, 2, od.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)
