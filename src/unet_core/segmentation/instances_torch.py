"""The instance step of :func:`unet_core.segmentation.instances.probs_to_labels` in torch, for a GPU.

The same steps as on the CPU, written as whole-image tensor operations so they run
where the probabilities are: the distance transform (exact, by a column pass and a
row pass over a bounded window), the Gaussian, the regional maxima, the basins by
steepest ascent and pointer jumping, and the connected components by label
propagation.  Only the merging of basins at their passes (a union-find over a few
thousand pairs, :func:`unet_core.segmentation.basins._dynamics`) runs on the CPU.  The labels
agree with the CPU path's (same objects; pixels may differ where two objects or a
drained basin share a flat or a tie, and in the growth over the boundary band).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from . import basins as cpu
from .instances import _sequential

#: The distance transform is exact up to this distance; beyond it the CPU's is used.
MAX_DISTANCE = 48
_BIG = 1 << 40
#: (dy, dx) of the eight neighbours, in the CPU path's order (ties go to the first).
_NEIGHBOURS = cpu._NEIGHBOURS
_CROSS = ((-1, 0), (0, -1), (0, 1), (1, 0))


def _shifted(x: torch.Tensor, dy: int, dx: int, fill) -> torch.Tensor:
    """``x[y + dy, x + dx]`` at every (y, x), ``fill`` outside the image."""
    h, w = x.shape
    pad = torch.full((h + 2, w + 2), fill, dtype=x.dtype, device=x.device)
    pad[1:-1, 1:-1] = x
    return pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def distance_transform(core: torch.Tensor) -> torch.Tensor | None:
    """float32 Euclidean distance of each pixel of ``core`` to the nearest pixel
    outside it (scipy's ``distance_transform_edt``), or None where some distance
    exceeds :data:`MAX_DISTANCE` or there is no such pixel."""
    h, w = core.shape
    rows = torch.arange(h, device=core.device, dtype=torch.int64)[:, None].expand(h, w)
    zero = ~core
    if not bool(zero.any()):
        return None
    above = torch.where(zero, rows, torch.full_like(rows, -_BIG)).cummax(0).values
    below = torch.where(zero, rows, torch.full_like(rows, _BIG)).flip(0).cummin(0).values.flip(0)
    g = torch.minimum(rows - above, below - rows).clamp(max=MAX_DISTANCE + 1)
    g2 = g * g
    best = g2.clone()
    for dx in range(1, MAX_DISTANCE + 1):
        cost = dx * dx
        best[:, dx:] = torch.minimum(best[:, dx:], g2[:, :-dx] + cost)
        best[:, :-dx] = torch.minimum(best[:, :-dx], g2[:, dx:] + cost)
    if int(best.max()) > MAX_DISTANCE * MAX_DISTANCE:
        return None
    return best.to(torch.float64).sqrt().to(torch.float32)


def gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """scipy's ``gaussian_filter(x, sigma)`` (truncate 4, mirrored edges) of float32."""
    if sigma <= 0:
        return x
    radius = int(4.0 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-0.5 / sigma ** 2 * t * t)
    kernel = kernel / kernel.sum()
    out = x
    for axis in (0, 1):
        y = out.to(torch.float64).movedim(axis, -1)
        n = y.shape[-1]
        idx = torch.arange(-radius, n + radius, device=x.device)
        idx = torch.where(idx < 0, -idx - 1, idx)              # d c b a | a b c d
        idx = torch.where(idx >= n, 2 * n - idx - 1, idx)
        idx = idx.remainder(2 * n).clamp(0, n - 1)
        padded = y[..., idx]
        acc = torch.zeros_like(y)
        for k in range(2 * radius + 1):
            acc += kernel[k] * padded[..., k:k + n]
        out = acc.to(torch.float32).movedim(-1, axis)
    return out.contiguous()


def components(member: torch.Tensor, eight: bool, value: torch.Tensor | None = None) -> torch.Tensor:
    """int64 labels 1..n of the connected components of ``member`` (8- or
    4-connected; with ``value``, only equal-valued neighbours connect), numbered in
    raster order of their first pixel as scipy's ``label`` does; 0 elsewhere."""
    h, w = member.shape
    n = h * w
    idx = torch.arange(n, device=member.device).view(h, w)
    lab = torch.where(member, idx, torch.full_like(idx, n))
    links = []
    for dy, dx in (_NEIGHBOURS if eight else _CROSS):
        link = member & _shifted(member, dy, dx, False)
        if value is not None:
            link &= value == _shifted(value, dy, dx, float("nan"))
        links.append((dy, dx, link))
    flat_member = member.view(-1)
    while True:
        low = lab
        for dy, dx, link in links:
            low = torch.where(link, torch.minimum(low, _shifted(lab, dy, dx, n)), low)
        flat = low.reshape(-1).clone()
        flat[flat_member] = flat[flat[flat_member]]                  # pointer jumping
        flat = flat.view(h, w)
        if torch.equal(flat, lab):
            break
        lab = flat
    roots = torch.unique(lab[member])
    out = torch.zeros(n + 1, dtype=torch.int64, device=member.device)
    out[roots] = torch.arange(1, roots.numel() + 1, device=member.device)
    return torch.where(member, out[lab.clamp(max=n)], torch.zeros_like(lab))


def regional_maxima(surface: torch.Tensor) -> torch.Tensor:
    """int64 labels (8-connected) of the regional maxima of ``surface`` above 0, as
    ``ndi.label(skimage local_maxima(surface, connectivity=2, allow_borders=True))``."""
    higher = torch.zeros_like(surface, dtype=torch.bool)
    for dy, dx in _NEIGHBOURS:
        higher |= _shifted(surface, dy, dx, float("-inf")) > surface
    candidate = ~higher & (surface > 0)
    plateau = components(candidate | (surface > 0), True, surface)
    # a flat is a maximum only if none of its equal-valued pixels has a higher neighbour
    spoilt = torch.zeros(int(plateau.max()) + 1, dtype=torch.bool, device=surface.device)
    spoilt[plateau[higher & (surface > 0)]] = True
    return components(candidate & ~spoilt[plateau], True)


def _uphill_targets(surface: torch.Tensor) -> torch.Tensor:
    """Flat index of each pixel's highest higher 8-neighbour, or its own."""
    h, w = surface.shape
    best = surface.clone()
    step = torch.zeros((h, w), dtype=torch.int64, device=surface.device)
    for dy, dx in _NEIGHBOURS:
        near = _shifted(surface, dy, dx, float("-inf"))
        up = near > best
        best = torch.where(up, near, best)
        step = torch.where(up, torch.full_like(step, dy * w + dx), step)
    return torch.arange(h * w, device=surface.device).view(h, w) + step


def _spread(labels: torch.Tensor, todo: torch.Tensor, surface: torch.Tensor, eight: bool):
    """Unlabelled ``todo`` pixels take the label of their highest labelled neighbour,
    repeatedly, until none is left that touches a label."""
    offsets = _NEIGHBOURS if eight else _CROSS
    while True:
        todo = todo & (labels == 0)
        best = torch.full_like(surface, float("-inf"))
        take = torch.zeros_like(labels)
        for dy, dx in offsets:
            lab = _shifted(labels, dy, dx, 0)
            near = torch.where(lab > 0, _shifted(surface, dy, dx, float("-inf")),
                               torch.full_like(surface, float("-inf")))
            better = todo & (lab > 0) & ((near > best) | (take == 0))
            best = torch.where(better, near, best)
            take = torch.where(better, lab, take)
        if not bool((take > 0).any()):
            return labels
        labels = torch.where(take > 0, take, labels)


def basins(surface: torch.Tensor, maxima: torch.Tensor, flood: torch.Tensor) -> torch.Tensor:
    """int64 basin (label of ``maxima``) of every ``flood`` pixel, by steepest ascent."""
    nxt = torch.where(flood, _uphill_targets(surface),
                      torch.arange(surface.numel(), device=surface.device).view(surface.shape))
    nxt = nxt.view(-1)
    while True:
        top = nxt[nxt]
        if torch.equal(top, nxt):
            break
        nxt = top
    out = torch.where(flood.view(-1), maxima.view(-1)[nxt], torch.zeros_like(nxt)).view(surface.shape)
    return _spread(out, flood, surface, eight=True)


def _passes(lab: torch.Tensor, surface: torch.Tensor, n: int):
    """(a, b, level) numpy arrays of the basin pairs, as :func:`unet_core.segmentation.basins._basin_passes`."""
    h, w = lab.shape
    keys, levels = [], []
    for dy, dx in cpu._PAIRS:
        src = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
        dst = (slice(dy, h), slice(max(0, dx), w + min(0, dx)))
        a, b = lab[src], lab[dst]
        touch = (a != b) & (a > 0) & (b > 0)
        a, b = a[touch], b[touch]
        keys.append(torch.minimum(a, b) * (n + 1) + torch.maximum(a, b))
        levels.append(torch.minimum(surface[src][touch], surface[dst][touch]))
    keys, levels = torch.cat(keys), torch.cat(levels)
    unique, inverse = torch.unique(keys, return_inverse=True)
    top = torch.full((unique.numel(),), float("-inf"), device=lab.device)
    top = top.scatter_reduce(0, inverse, levels, reduce="amax")
    unique, top = unique.cpu().numpy(), top.cpu().numpy().astype(np.float32)
    return unique // (n + 1), unique % (n + 1), top


def probs_to_labels(prob: torch.Tensor, fg_threshold: float = 0.5, boundary_threshold: float = 0.5,
                    h: float = 1.0, sigma: float = 1.0, min_size: int = 16) -> np.ndarray:
    """:func:`unet_core.segmentation.instances.probs_to_labels` of a (C, H, W) tensor on its device;
    returns uint32 (H, W) labels as a numpy array."""
    prob = prob.to(torch.float32)
    if prob.ndim != 3 or prob.shape[0] < 1:
        raise ValueError(f"prob must be (C, H, W), got shape {tuple(prob.shape)}")
    mask = prob[0] > fg_threshold
    if not bool(mask.any()):
        return np.zeros(tuple(mask.shape), np.uint32)
    core = mask & (prob[1] < boundary_threshold) if prob.shape[0] > 1 else mask
    dist = distance_transform(core)
    if dist is None:                                      # far from any edge: the CPU's
        dist = torch.from_numpy(ndi.distance_transform_edt(core.cpu().numpy())
                                .astype(np.float32)).to(prob.device)
    if prob.shape[0] >= 3:
        dist = dist * (0.5 + prob[2])
    surface = gaussian(dist, sigma)
    maxima = regional_maxima(surface)
    n = int(maxima.max())
    peaks = torch.zeros(n + 1, dtype=torch.float32, device=prob.device)
    peaks[maxima[maxima > 0]] = surface[maxima > 0]
    peaks = peaks.cpu().numpy()
    if n == 0 or h > float(surface.max() - surface.min()):
        owner = torch.zeros(n + 1, dtype=torch.int64, device=prob.device)
        lab = maxima
    else:
        lab = basins(surface, maxima, surface > 0)
        keep, drain = cpu._dynamics(peaks, *_passes(lab, surface, n), h)
        owner = torch.from_numpy(cpu._owners(peaks, keep, drain).astype(np.int64)).to(prob.device)
    labels = torch.where(mask, owner[lab], torch.zeros_like(lab))
    labels = _spread(labels, mask, surface, eight=False)
    rest = components(mask & (labels == 0), False)
    labels = torch.where(rest > 0, rest + int(owner.max()), labels)
    return _sequential(labels.cpu().numpy(), min_size)
