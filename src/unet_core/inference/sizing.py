"""Estimating the nucleus size of an image, so it can be brought to the model's.

A U-Net sees nuclei at one scale: trained on ~20 px nuclei it cuts 50 px nuclei into
pieces, although it still finds their foreground.  So the estimate works in two passes
on a few probe windows (never the whole of a large image):

1. at the image's own scale, the foreground's distance-transform peaks give the size
   (:func:`~unet_core.inference.scale.distance_diameter`: robust to touching nuclei and to the
   wrong partition of a mis-scaled image); where that size is already close to the
   model's, the labels' median equivalent diameter is used directly;
2. otherwise the probe windows are resampled to that first guess and segmented again;
   at the right scale the partition holds, and the labels' median equivalent diameter
   (back in the image's px) is the estimate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..progress import Progress, SizeGuess, Stage, run_to_end
from ..segmentation.instances import probs_to_labels
from .normalize import apply_range
from .resample import Resampled, resampled_shape
from .scale import (
    MAX_DIAMETER,
    MAX_SCALE,
    MIN_DIAMETER,
    MIN_SCALE,
    distance_diameter,
    equivalent_diameters,
    probe_windows,
)
from .tiling import run_tiles

#: Side (px, at the network's scale) and number of the probe windows.
PROBE_SIDE, PROBE_COUNT = 512, 1
#: Scales of the first look (1/4 sees 100 px nuclei at 25 px).
FIRST_SCALES = (1.0, 0.5, 0.25)
#: A first guess within this factor of the model's size is used at the image's scale.
_CLOSE = 1.25
#: The second look brings the first guess to this fraction of the model's size.  The
#: network partitions nuclei smaller than its own size well (down to about half) but
#: cuts larger ones into pieces of about its size, and the distance transform's guess
#: runs low for elongated nuclei: aimed at the model's size, an underestimated guess
#: gives fragments that confirm it; aimed lower, the nuclei stay whole.
_SECOND_LOOK = 0.8


def parse_diameter(value):
    """"auto" (also "", "estimate"), None / "none" (image scale) or a float in px."""
    if value is None:
        return None
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("auto", "", "estimate"):
            return "auto"
        if v in ("none", "off"):
            return None
        try:
            value = float(v)
        except ValueError:
            raise InputError(f"diameter must be 'auto', 'none' or a number of px, got {value!r}") from None
    value = float(value)
    if not (MIN_DIAMETER <= value <= MAX_DIAMETER):
        raise InputError(f"diameter {value:g} px is outside {MIN_DIAMETER:g}-{MAX_DIAMETER:g} px; "
                         "give the typical nucleus width in the image's pixels, 'auto' to "
                         "estimate it, or 'none' to use the image at its own scale.")
    return value


def _probe(pred, base, lo, hi, scale: float, side: int):
    """Probabilities of the probe windows (``side`` px of the image) of ``base``
    (H, W, C_in) at ``scale``: list of prob (C, h, w)."""
    h, w = base.shape[:2]

    def score(win):
        sample = np.asarray(base[win[0].start:win[0].stop:8, win[1].start:win[1].stop:8])
        return float((apply_range(sample, lo, hi) > 0.5).mean())

    out = []
    for win in probe_windows((h, w), min(side, max(h, w)), PROBE_COUNT, score):
        crop = np.asarray(base[win])
        if scale != 1.0:
            crop = Resampled(crop, resampled_shape(crop.shape[:2], scale))[:, :]
        x = apply_range(crop, lo, hi)
        prob = np.empty((pred.model.config.out_channels,) + x.shape[:2], np.float32)
        run_to_end(run_tiles(pred.grid(x.shape[:2]), x, pred.network.probe, prob))
        out.append(prob)
    return out


def _labels(pred, probes):
    """Instance labels of probe probabilities (only for the look that is measured: the
    watershed costs as much as the network on these windows)."""
    return [probs_to_labels(prob, **pred.instance_params) for prob in probes]


#: Two looks "agree" when their guesses (in the image's px) are within this factor.
_AGREE = 1.3


def _trusted(looks):
    """The looks whose guess agrees with the next look's (half the scale), and True;
    all looks and False when none do.

    A look errs in one of two directions: nuclei larger than the network's size are cut,
    and their foreground's distance peaks read too small; nuclei shrunk below what the
    network resolves merge, and read too large.  Two neighbouring looks that agree are
    neither; a look nearest the model's size that no other look confirms may be either
    (a network trained with scale augmentation saw 71 px nuclei at their own scale as
    18 px pieces, while its 2x and 4x shrunk looks agreed on ~67 px).
    """
    agree = set()
    for a, b in zip(looks, looks[1:]):
        if max(a[2], b[2]) <= _AGREE * min(a[2], b[2]):
            agree.update((a[1], b[1]))
    agreeing = [t for t in looks if t[1] in agree]
    return (agreeing, True) if agreeing else (looks, False)


#: See :func:`_full_look_can_win`: 1 / sqrt(2 / _AGREE) = 0.806, with a margin.
_HALF_SEES = 0.82


def _full_look_can_win(shrunk, model_d) -> bool:
    """Whether the look at the image's own scale could be the one chosen, given the
    looks ``shrunk`` 2x and 4x (score, scale, guess, probes).

    Not when those two agree and the 2x look sees nuclei of at least ``_HALF_SEES``
    times the model's size: the full look then either disagrees with the 2x look (and
    is not trusted), or agrees with it and so sees nuclei at least 2 / ``_AGREE`` =
    1.54x the 2x look's size, i.e. above 1.26x the model's, farther from the model's
    size than the 2x look.  Skipping it changes nothing but the time (a 512 px probe,
    the largest of the three).
    """
    by_scale = {t[1]: t for t in shrunk}
    half, quarter = by_scale.get(FIRST_SCALES[1]), by_scale.get(FIRST_SCALES[2])
    if half is None or quarter is None \
            or max(half[2], quarter[2]) > _AGREE * min(half[2], quarter[2]):
        return True
    return half[2] * half[1] < _HALF_SEES * model_d


@dataclass(frozen=True)
class SizeEstimate:
    """What :func:`estimate_diameter_iter` found.

    Attributes
    ----------
    diameter : float
        Nucleus diameter in the image's px.
    guesses : tuple of float
        The first pass's guesses (image px), one per look (scale 1, 1/2, 1/4).
    agreed : bool
        Whether two neighbouring looks agreed on the size; when none did, the looks
        contradict each other (objects far outside the sizes the network reads, or few
        of them) and the estimate cannot be trusted.
    """

    diameter: float
    guesses: tuple = ()
    agreed: bool = True

    def note(self) -> str | None:
        """A line for people when the estimate cannot be trusted, else None."""
        if self.agreed:
            return None
        return (f"The nucleus size estimate ({self.diameter:.0f} px) is uncertain: looks at "
                "different scales disagree. Measure a typical nucleus and set Nucleus size "
                "(--diameter) by hand.")


def estimate_diameter_iter(pred, base, lo, hi):
    """Nucleus size of the image ``base`` (H, W, C_in, stain-converted, any array-like)
    for the Predictor ``pred``; yields Progress, returns a :class:`SizeEstimate`, or
    None when no nucleus was found.

    The first pass looks at the probe windows at the image's scale and shrunk 2x and
    4x (a network that cuts a 70 px nucleus into pieces still sees it whole at 1/4);
    it keeps the look whose foreground size is nearest the model's own.
    """
    model_d = float(pred.model.diameter)
    fg_thr = pred.instance_params.get("fg_threshold", 0.5)
    total = len(FIRST_SCALES) + 1

    def look(s):
        probes = _probe(pred, base, lo, hi, s, PROBE_SIDE)
        seen = [d for d in (distance_diameter(p[0] > fg_thr) for p in probes) if d]
        if not seen:
            return None
        m = float(np.median(seen))
        return abs(np.log(m / model_d)), s, m / s, probes

    # the shrunk looks first: the look at the image's scale (the costliest) is taken
    # only when it could be the one chosen
    looks = []
    for i, s in enumerate(FIRST_SCALES[1:]):
        yield Progress(i, total, Stage.ESTIMATE)
        if PROBE_SIDE * s >= 64:
            looks.append(look(s))
    looks = [t for t in looks if t is not None]
    yield Progress(len(FIRST_SCALES) - 1, total, Stage.ESTIMATE)
    if _full_look_can_win(looks, model_d):
        looks.insert(0, look(FIRST_SCALES[0]))
        looks = [t for t in looks if t is not None]
    if not looks:
        return None
    trusted, agreed = _trusted(looks)
    _, first_scale, guess, probes = min(trusted, key=lambda t: t[0])
    scale = float(np.clip(_SECOND_LOOK * model_d / guess, MIN_SCALE, MAX_SCALE))
    yield Progress(len(FIRST_SCALES), total, Stage.ESTIMATE, SizeGuess(guess))
    if 1 / _CLOSE <= scale / first_scale <= _CLOSE:
        scale = first_scale
    else:
        probes = _probe(pred, base, lo, hi, scale, int(PROBE_SIDE / scale))
    diams = np.concatenate([equivalent_diameters(lab) for lab in _labels(pred, probes)])
    yield Progress(total, total, Stage.ESTIMATE)
    found = np.median(diams) / scale if diams.size else guess
    return SizeEstimate(float(np.clip(found, MIN_DIAMETER, MAX_DIAMETER)),
                        tuple(float(t[2]) for t in looks),
                        agreed=agreed or len(looks) < 2)
