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

import numpy as np
from scipy import ndimage as ndi

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


def _loguniform(rng, lo, hi, size=None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _place(rng, h, w, n_target, rad, spacing, clustering):
    """Random sequential placement without (much) overlap; -> accepted indices, centres.

    A candidate is rejected when its centre is closer than ``spacing * (r_i + r_j)`` to an
    accepted one.  With probability ``clustering`` it is put next to a random accepted
    nucleus (at 1.0-1.15 times that distance), which grows touching clumps.
    """
    m = rad.size
    pad = 0.5 * float(np.median(rad))
    cell = 2 * spacing * float(rad.max()) + 1e-6
    grid, pos, out = {}, np.zeros((m, 2)), []
    for i in range(m):
        if out and rng.random() < clustering:
            j = out[rng.integers(len(out))]
            ang, dist = rng.uniform(0, 2 * np.pi), spacing * (rad[i] + rad[j]) * rng.uniform(1.0, 1.15)
            p = pos[j] + dist * np.array([np.cos(ang), np.sin(ang)])
            if not (-pad <= p[0] <= h + pad and -pad <= p[1] <= w + pad):
                continue
        else:
            p = np.array([rng.uniform(-pad, h + pad), rng.uniform(-pad, w + pad)])
        gy, gx = int(p[0] // cell), int(p[1] // cell)
        near = [k for dy in (-1, 0, 1) for dx in (-1, 0, 1) for k in grid.get((gy + dy, gx + dx), ())]
        if near:
            near = np.asarray(near)
            if np.any(np.hypot(*(pos[near] - p).T) < spacing * (rad[near] + rad[i])):
                continue
        pos[i] = p
        out.append(i)
        grid.setdefault((gy, gx), []).append(i)
        if len(out) >= n_target:
            break
    out = np.asarray(out, dtype=np.intp)
    return out, pos[out]


def _clean_labels(labels, min_size):
    """Keep the largest 4-connected part of every id if >= min_size px; relabel 1..N."""
    for i, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is None:
            continue
        sub = labels[sl]
        mask = sub == i
        cc, k = ndi.label(mask)
        sizes = np.bincount(cc.ravel())[1:]
        if sizes.max() < min_size:
            sub[mask] = 0
        elif k > 1:
            sub[mask & (cc != np.argmax(sizes) + 1)] = 0
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    lut = np.zeros(present.size, np.uint32)
    lut[present] = np.arange(1, present.sum() + 1, dtype=np.uint32)
    return lut[labels]


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
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"dtype must be uint8 or uint16, got {dtype}")
    p = {**DEFAULTS, **params}
    h, w = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(seed)
    q = {k: _param(rng, p, k) for k in DEFAULTS if k != "radius_range"}
    rlo, rhi = (float(v) for v in p["radius_range"])
    r0 = float(_loguniform(rng, rlo, rhi))
    mean_area = np.pi * r0 ** 2 * np.exp(2 * q["size_spread"] ** 2)
    n_target = int(n) if n is not None else int(round(q["density"] * h * w / mean_area))
    n_target = int(np.clip(n_target, 1, _MAX_NUCLEI))

    # geometry of the candidates: mean radius, axis ratio, orientation
    m = 3 * n_target + 50
    rad = np.clip(r0 * np.exp(rng.normal(0, q["size_spread"], m)), rlo, rhi)
    ratio = rng.uniform(q["elongation"], 1.0, m)
    idx, centres = _place(rng, h, w, n_target, rad * (1 + ratio) / (2 * np.sqrt(ratio)),
                          q["spacing"], q["clustering"])
    k = idx.size
    rad, ratio, theta = rad[idx], ratio[idx], rng.uniform(0, np.pi, k)

    # brightness: log-normal spread, some dim nuclei, a few small bright mitotic ones
    noise_bg = np.sqrt(q["background"] / q["noise"] ** 2 + q["read_noise"] ** 2) * q["noise"] ** 2 \
        if q["noise"] > 0 else 0.01
    bright = np.exp(rng.normal(0, q["brightness_spread"], k))
    dim = rng.random(k) < q["dim_fraction"]
    bright[dim] = np.maximum(rng.uniform(2, 4, dim.sum()) * noise_bg, rng.uniform(0.08, 0.2, dim.sum()))
    mitotic = np.zeros(k, bool)
    if rng.random() < q["mitotic"] and k > 3:
        mitotic[rng.choice(k, min(k // 3, int(rng.integers(1, 5))), replace=False)] = True
    rad[mitotic] = np.maximum(rad[mitotic] * rng.uniform(0.35, 0.6, mitotic.sum()), 3.0)
    ratio[mitotic] = rng.uniform(0.35, 0.8, mitotic.sum())
    bright[mitotic] = rng.uniform(2.5, 5.0, mitotic.sum())

    tex = ndi.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), rng.uniform(0.7, 2.5))
    tex /= tex.std() + 1e-6
    dome = rng.uniform(-0.15, 0.4)
    nucleoli = rng.uniform(0, 2.5)
    nucleoli_sign = -1.0 if rng.random() < 0.7 else 1.0
    pressed = rng.random() < q["pressed"]
    img = np.zeros((h, w), np.float32)
    inner = np.zeros((h, w), np.float32) if pressed else None
    labels = np.zeros((h, w), np.uint32)
    for i in range(k):
        a, b = rad[i] / np.sqrt(ratio[i]), rad[i] * np.sqrt(ratio[i])
        coef = q["irregularity"] * rng.normal(0, 1, 4) / np.arange(2, 6) ** 1.5 * 2.8
        phase = rng.uniform(0, 2 * np.pi, 4)
        edge = max(q["edge"], 0.2) * (0.5 if mitotic[i] else 1.0)
        ext = a * (1 + 2 * np.abs(coef).sum()) + 2 * edge + 2
        cy, cx = centres[i]
        y0, y1 = max(int(cy - ext), 0), min(int(cy + ext) + 2, h)
        x0, x1 = max(int(cx - ext), 0), min(int(cx + ext) + 2, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = (np.arange(y0, y1, dtype=np.float32) - cy)[:, None]
        xx = (np.arange(x0, x1, dtype=np.float32) - cx)[None, :]
        c, s = np.cos(theta[i]), np.sin(theta[i])
        u, v = xx * c + yy * s, yy * c - xx * s
        un, vn = u / a, v / b
        rho, phi = np.hypot(un, vn), np.arctan2(vn, un)
        outline = 1 + sum(coef[j] * np.cos((j + 2) * phi + phase[j]) for j in range(4))
        dist = (np.maximum(outline, 0.5) - rho) * np.hypot(a * np.cos(phi), b * np.sin(phi))
        sl = (slice(y0, y1), slice(x0, x1))
        labels[sl][dist > 0] = i + 1
        val = np.clip(1 - dome * rho ** 2, 0.3, None)
        if not pressed:
            val = val * 0.5 * (1 + np.tanh((dist - 0.3 * edge) / (0.5 * edge)))
        val *= 1 + q["texture"] * (0.4 if mitotic[i] else 1.0) * tex[sl]
        if rad[i] >= 7 and not mitotic[i]:
            for _ in range(rng.poisson(nucleoli)):
                r_s, a_s = 0.55 * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
                sig = rng.uniform(0.1, 0.22) * rad[i]
                d2 = (u - a * r_s * np.cos(a_s)) ** 2 + (v - b * r_s * np.sin(a_s)) ** 2
                val *= 1 + nucleoli_sign * rng.uniform(0.2, 0.5) * np.exp(-d2 / (2 * sig ** 2))
        if pressed:  # the top nucleus owns its pixels; edges come from the union below
            inner[sl] = np.where(dist > 0, bright[i] * np.maximum(val, 0), inner[sl])
        else:
            img[sl] += bright[i] * np.maximum(val, 0)
    if pressed and labels.any():
        fg = labels > 0
        d_in = ndi.distance_transform_edt(fg)
        d_out, near = ndi.distance_transform_edt(~fg, return_indices=True)
        signed = np.where(fg, d_in - 0.5, 0.5 - d_out).astype(np.float32)
        edge = max(q["edge"], 0.2)
        img += inner[tuple(near)] * 0.5 * (1 + np.tanh((signed - 0.3 * edge) / (0.5 * edge)))

    # out-of-focus nuclei (haze) and small debris, not labelled
    if rng.random() < q["haze"]:
        for _ in range(int(rng.integers(1, 8))):
            sig, amp = r0 * rng.uniform(1.2, 2.5), rng.uniform(0.05, 0.3)
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            y0, y1 = max(int(cy - 4 * sig), 0), min(int(cy + 4 * sig) + 1, h)
            x0, x1 = max(int(cx - 4 * sig), 0), min(int(cx + 4 * sig) + 1, w)
            d2 = (np.arange(y0, y1)[:, None] - cy) ** 2 + (np.arange(x0, x1)[None, :] - cx) ** 2
            img[y0:y1, x0:x1] += amp * np.exp(-d2 / (2 * sig ** 2))
        specks = np.zeros((h, w), np.float32)
        nd = int(rng.integers(0, 25))
        specks[rng.integers(0, h, nd), rng.integers(0, w, nd)] = rng.uniform(0.3, 2.0, nd) * 2 * np.pi
        img += ndi.gaussian_filter(specks, 0.8)

    img = ndi.gaussian_filter(img, q["blur"])
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    terms = (xx, yy, xx * yy, xx ** 2 - 0.33, yy ** 2 - 0.33)
    illum = 1 + q["illumination"] * sum(cf * t for cf, t in zip(rng.normal(0, 0.5, 5), terms))
    bg = q["background"] * (1 + 0.5 * sum(cf * t for cf, t in zip(rng.normal(0, 0.5, 5), terms)))
    signal = np.maximum(img * np.maximum(illum, 0.3) + np.maximum(bg, 0), 0)

    # camera: shot noise, read noise, gain, offset
    if q["noise"] > 0:
        photons = 1.0 / q["noise"] ** 2
        counts = rng.poisson(signal * photons).astype(np.float32)
        counts += rng.normal(0, q["read_noise"], (h, w)).astype(np.float32)
        counts /= photons
    else:
        counts = signal
    if dtype == np.uint8:
        top, offset = rng.uniform(100, 255), rng.uniform(0, 12)
    else:
        top = float(_loguniform(rng, 500, 60000))
        offset = rng.uniform(0, 0.03) * top + (100 if rng.random() < 0.3 else 0)
    ref = counts.max() if rng.random() < 0.85 else np.percentile(counts, 99.9)
    image = offset + (top - offset) * counts / max(float(ref), 1e-6)
    image = np.clip(np.rint(image), 0, np.iinfo(dtype).max).astype(dtype)
    labels = _clean_labels(labels, 10)
    if not return_info:
        return image, labels
    info = dict(q, radius=r0, n_target=n_target, n=int(labels.max()), mitotic=int(mitotic.sum()),
                top=float(top), offset=float(offset))
    return image, labels, info


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
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

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
    from skimage.color import rgb_from_hed

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
