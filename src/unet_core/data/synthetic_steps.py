"""The steps of :func:`unet_core.data.synthetic.synthetic_nuclei`, in the order it takes them.

Each step draws from the image's one random generator in a fixed order, so that the
same seed and parameters give the same arrays: the nuclei (size, shape, place,
brightness), their drawing (texture, outline, nucleoli; pressed or with their own
edges), unlabelled haze and debris, optics and illumination, and the camera.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


def loguniform(rng, lo, hi, size=None):
    """Draws between ``lo`` and ``hi``, uniform in log."""
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def place(rng, h, w, n_target, rad, spacing, clustering):
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


def clean_labels(labels, min_size):
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


@dataclass
class Nuclei:
    """The nuclei of one image, one entry each: centres (k, 2) px, mean radius px, minor /
    major axis ratio, orientation rad, brightness, and whether each is mitotic."""

    centres: np.ndarray
    rad: np.ndarray
    ratio: np.ndarray
    theta: np.ndarray
    bright: np.ndarray
    mitotic: np.ndarray


def sample_nuclei(rng, q, r0, rlo, rhi, h, w, n_target) -> Nuclei:
    """Geometry of the candidates (mean radius, axis ratio, orientation), their placement,
    and their brightness."""
    m = 3 * n_target + 50
    rad = np.clip(r0 * np.exp(rng.normal(0, q["size_spread"], m)), rlo, rhi)
    ratio = rng.uniform(q["elongation"], 1.0, m)
    idx, centres = place(rng, h, w, n_target, rad * (1 + ratio) / (2 * np.sqrt(ratio)),
                         q["spacing"], q["clustering"])
    k = idx.size
    rad, ratio, theta = rad[idx], ratio[idx], rng.uniform(0, np.pi, k)
    bright, mitotic = _brightness(rng, q, rad, ratio)
    return Nuclei(centres, rad, ratio, theta, bright, mitotic)


def _brightness(rng, q, rad, ratio):
    """Log-normal spread, some dim nuclei, a few small bright mitotic ones (their radius
    and axis ratio are changed in place)."""
    k = rad.size
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
    return bright, mitotic


@dataclass
class Canvas:
    """What the nuclei are drawn on: the image, the pressed nuclei's inner values, the
    labels, and the drawing's own draws (chromatin texture, dome, nucleoli)."""

    img: np.ndarray
    inner: np.ndarray | None
    labels: np.ndarray
    tex: np.ndarray
    dome: float
    nucleoli: float
    nucleoli_sign: float
    pressed: bool


def new_canvas(rng, q, h, w) -> Canvas:
    """An empty canvas (H, W) and the drawing's own draws."""
    tex = ndi.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), rng.uniform(0.7, 2.5))
    tex /= tex.std() + 1e-6
    dome = rng.uniform(-0.15, 0.4)
    nucleoli = rng.uniform(0, 2.5)
    nucleoli_sign = -1.0 if rng.random() < 0.7 else 1.0
    pressed = rng.random() < q["pressed"]
    inner = np.zeros((h, w), np.float32) if pressed else None
    return Canvas(np.zeros((h, w), np.float32), inner, np.zeros((h, w), np.uint32), tex, dome,
                  nucleoli, nucleoli_sign, pressed)


def draw_nuclei(rng, q, nuc: Nuclei, h, w):
    """The nuclei drawn in order (a later one on top); -> image, labels (H, W)."""
    cv = new_canvas(rng, q, h, w)
    for i in range(nuc.rad.size):
        draw_nucleus(rng, q, cv, nuc, i)
    if cv.pressed and cv.labels.any():
        press_edges(q, cv)
    return cv.img, cv.labels


def draw_nucleus(rng, q, cv: Canvas, nuc: Nuclei, i):
    """Nucleus ``i``: its irregular elliptic outline into the labels, its texture, dome
    and nucleoli into the image (or, when pressed, into the inner values)."""
    rad, ratio, theta, mitotic, bright = nuc.rad, nuc.ratio, nuc.theta, nuc.mitotic, nuc.bright
    h, w = cv.labels.shape
    img, inner, labels, tex, pressed = cv.img, cv.inner, cv.labels, cv.tex, cv.pressed
    dome, nucleoli, nucleoli_sign = cv.dome, cv.nucleoli, cv.nucleoli_sign
    a, b = rad[i] / np.sqrt(ratio[i]), rad[i] * np.sqrt(ratio[i])
    coef = q["irregularity"] * rng.normal(0, 1, 4) / np.arange(2, 6) ** 1.5 * 2.8
    phase = rng.uniform(0, 2 * np.pi, 4)
    edge = max(q["edge"], 0.2) * (0.5 if mitotic[i] else 1.0)
    ext = a * (1 + 2 * np.abs(coef).sum()) + 2 * edge + 2
    cy, cx = nuc.centres[i]
    y0, y1 = max(int(cy - ext), 0), min(int(cy + ext) + 2, h)
    x0, x1 = max(int(cx - ext), 0), min(int(cx + ext) + 2, w)
    if y0 >= y1 or x0 >= x1:
        return
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


def press_edges(q, cv: Canvas):
    """Nuclei pressed flat against each other: one edge falloff around their union, no
    dark seam or bright overlap where they touch."""
    img, inner, labels = cv.img, cv.inner, cv.labels
    fg = labels > 0
    d_in = ndi.distance_transform_edt(fg)
    d_out, near = ndi.distance_transform_edt(~fg, return_indices=True)
    signed = np.where(fg, d_in - 0.5, 0.5 - d_out).astype(np.float32)
    edge = max(q["edge"], 0.2)
    img += inner[tuple(near)] * 0.5 * (1 + np.tanh((signed - 0.3 * edge) / (0.5 * edge)))


def add_haze(rng, q, img, r0):
    """Out-of-focus nuclei (haze) and small debris, not labelled; added to ``img``."""
    h, w = img.shape
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


def illuminate(rng, q, img):
    """Optical blur, uneven illumination and background; -> the signal (H, W)."""
    h, w = img.shape
    img = ndi.gaussian_filter(img, q["blur"])
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    terms = (xx, yy, xx * yy, xx ** 2 - 0.33, yy ** 2 - 0.33)
    illum = 1 + q["illumination"] * sum(cf * t for cf, t in zip(rng.normal(0, 0.5, 5), terms))
    bg = q["background"] * (1 + 0.5 * sum(cf * t for cf, t in zip(rng.normal(0, 0.5, 5), terms)))
    signal = np.maximum(img * np.maximum(illum, 0.3) + np.maximum(bg, 0), 0)
    return signal


def camera(rng, q, signal, dtype):
    """Shot noise, read noise, gain and offset; -> image (H, W) of ``dtype``, top, offset."""
    h, w = signal.shape
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
        top = float(loguniform(rng, 500, 60000))
        offset = rng.uniform(0, 0.03) * top + (100 if rng.random() < 0.3 else 0)
    ref = counts.max() if rng.random() < 0.85 else np.percentile(counts, 99.9)
    image = offset + (top - offset) * counts / max(float(ref), 1e-6)
    image = np.clip(np.rint(image), 0, np.iinfo(dtype).max).astype(dtype)
    return image, top, offset
