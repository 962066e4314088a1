"""Is a segmentation plausible for the nucleus size and stain it was made with?

A wrong stain or nucleus size does not fail: it gives thousands of fragments, or the
spaces between nuclei outlined as objects.  The signs are cheap to see in the labels
alone, so every result is checked and a warning names the settings to change.
"""
from __future__ import annotations

import numpy as np

from .image_settings import ImageSettings
from .stain import STAIN_NAMES

#: An object is a fragment when its equivalent diameter is below this share of the
#: nucleus size the image was segmented at.
FRAGMENT = 0.4
#: Share of fragments among the objects that makes a result implausible.
FRAGMENT_SHARE = 0.4
#: Objects the foreground holds at most: its area over that of a nucleus of this share
#: of the nucleus size (objects of half the size, packed without gaps, fill it 4x over).
PACKING = 0.5
#: Fewer objects than this say nothing either way.
MIN_OBJECTS = 20


def check_labels(labels: np.ndarray, settings: ImageSettings | None, model_diameter=None
                 ) -> str | None:
    """A warning (one paragraph for people) when ``labels`` (H, W) or (Z, H, W) are
    implausible for the nucleus size they were segmented at; None when they look right.

    The nucleus size is ``settings.diameter`` (given or estimated), else the model's
    diameter over the resampling factor.
    """
    lab = np.asarray(labels)
    d = settings.diameter if settings is not None and settings.diameter else None
    if d is None and model_diameter:
        d = float(model_diameter) / (settings.scale if settings is not None else 1.0)
    if not d:
        return None
    areas = np.bincount(lab.ravel().astype(np.int64))[1:]
    areas = areas[areas > 0]
    n = int(areas.size)
    if n < MIN_OBJECTS:
        return None
    eq = 2.0 * np.sqrt(areas / np.pi)
    fragments = float((eq < FRAGMENT * d).mean())
    capacity = float(areas.sum()) / (np.pi / 4 * (PACKING * d) ** 2)
    problems = []
    if fragments > FRAGMENT_SHARE:
        problems.append(f"{fragments:.0%} of the {n} objects are far smaller than a nucleus "
                        f"({d:.0f} px across)")
    if n > capacity:
        problems.append(f"{n} objects where the foreground holds about {capacity:.0f} nuclei of "
                        f"{d:.0f} px")
    if not problems:
        return None
    used = "" if settings is None else (
        f" (used: nucleus size {d:.0f} px{' estimated' if settings.estimated else ''}, stain "
        f"{STAIN_NAMES.get(settings.stain, settings.stain)})")
    return ("This result looks implausible: " + "; ".join(problems) + ". Check Nucleus size and "
            "Stain" + used + ": give the typical nucleus width in px and the stain by hand.")
