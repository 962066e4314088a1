"""The defaults on every shared real annotated image (``../shared/data/nuclei-real``):
the stain guessed right, and the nucleus size estimated within 20% of the truth where the
mask has one id per nucleus.  Skipped only when that folder is absent."""
from pathlib import Path

import numpy as np
import pytest

from unet_core import Predictor
from unet_core.inference.image_settings import overview
from unet_core.inference.stain import guess_stain
from unet_core.training.pairs import load_pairs

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "nuclei-real"

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"no real annotated images at {REAL}")


@pytest.fixture(scope="module")
def pairs():
    return load_pairs(REAL)


def test_the_stain_is_right_on_every_real_image(pairs):
    wrong = [(p.id, p.record["stain"], guess_stain(overview(p.image)).stain) for p in pairs
             if guess_stain(overview(p.image)).stain != p.record["stain"]]
    assert len(pairs) >= 50 and not wrong, wrong


def test_the_stain_survives_pale_and_dark_slides_and_rgb_fluorescence(pairs):
    """H&E washed out or dark stays H&E; fluorescence saved as RGB (one channel or a
    composite) stays fluorescence; an inverted fluorescence image reads as brightfield."""
    wrong = []
    for p in pairs[::4]:
        img = p.image.astype(np.float32)
        if p.record["stain"] == "he":
            cases = {"he": [img * 0.35 + 255 * 0.65, img * 0.7]}
        else:
            z = np.zeros_like(img)
            cases = {"fluorescence": [np.dstack([z, z, img]),
                                      np.dstack([0.3 * img, 0.6 * np.roll(img, 7, 0), img])],
                     "brightfield": [img.max() - img]}
        for want, imgs in cases.items():
            wrong += [(p.id, want) for im in imgs if guess_stain(overview(im)).stain != want]
    assert not wrong, wrong


@pytest.fixture(scope="module")
def predictor():
    # the default backend at f32: this test is about the estimate, not the precision
    return Predictor("nuclei", device="cpu", precision="f32")


def test_the_size_estimate_is_within_20_percent_on_most_per_nucleus_images(pairs, predictor):
    """The target is every image; the bundled model reaches 168 of 186 against the median
    of the whole nuclei (BENCHMARKS.md, "Models").  This guards that figure against going
    back, and that most misses say the estimate is uncertain."""
    off, said, n = [], 0, 0
    for p in pairs:
        if p.record["merged"]:
            continue  # touching nuclei merged in the mask: its own size is not the truth
        n += 1
        s = predictor.settings_for(p.image)
        est, truth = s.diameter, p.record["diameter"]
        if est is None or abs(est / truth - 1) > 0.2:
            off.append((p.id, round(truth, 1), est and round(est, 1)))
            said += s.size_note is not None
    assert said >= len(off) / 2, f"only {said} of {len(off)} misses said the size is uncertain"
    assert len(off) <= 0.1 * n, f"{len(off)} of {n} images off by more than 20%: {off}"
