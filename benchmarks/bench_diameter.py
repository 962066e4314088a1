"""What the automatic diameter costs: auto vs a given diameter at 2048 px.

    python benchmarks/bench_diameter.py [--reps 3] [--json FILE]

Two 2048 x 2048 images built from the real DSB2018 image: its nuclei at their own size
(~24 px: inside the model's range, no resampling) and the image upsampled 2x (~47 px:
resampled to the model's size), each mirrored out to 2048 px.  For each, ``predict`` and
``segment`` with ``diameter="auto"`` against the same call with the diameter given
(the scale the estimate leads to, so only the estimate differs), methods interleaved,
medians of ``--reps``.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from realdata import dsb2018_sample

from unet_core import Predictor, load_model
from unet_core.inference.resample import resample


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    img, _ = dsb2018_sample()
    img = img.astype(np.float32)
    # mirrored, not tiled: no nuclei cut in half where copies meet
    images = {"nuclei ~24 px (in range)": np.pad(img, 768, mode="symmetric"),
              "nuclei ~47 px (resampled)": np.pad(resample(img, (1024, 1024)), 512, mode="symmetric")}
    model = load_model("nuclei")
    auto = Predictor(model, device="cpu")
    rows = {}
    for name, image in images.items():
        settings = auto.settings_for(image)
        given = auto.with_options(diameter=settings.diameter if settings.scale != 1 else "none")
        times = {k: [] for k in ("predict given", "predict auto", "segment given", "segment auto")}
        for _ in range(args.reps):
            times["predict given"].append(timed(lambda g=given, im=image: g.predict(im)))
            times["predict auto"].append(timed(lambda im=image: auto.predict(im)))
            times["segment given"].append(timed(lambda g=given, im=image: g.segment(im)))
            times["segment auto"].append(timed(lambda im=image: auto.segment(im)))
        med = {k: float(np.median(v)) for k, v in times.items()}
        rows[name] = {"median_s": med, "settings": settings.as_record(),
                      "predict_ratio": med["predict auto"] / med["predict given"],
                      "segment_ratio": med["segment auto"] / med["segment given"]}
    print(f"{'image (2048 x 2048)':28s} {'estimate':>9s} {'predict given':>13s} {'auto':>6s} "
          f"{'ratio':>6s} {'segment given':>13s} {'auto':>6s} {'ratio':>6s}")
    for name, r in rows.items():
        m = r["median_s"]
        print(f"{name:28s} {r['settings']['diameter']:7.1f}px {m['predict given']:13.2f} "
              f"{m['predict auto']:6.2f} {r['predict_ratio']:6.2f} {m['segment given']:13.2f} "
              f"{m['segment auto']:6.2f} {r['segment_ratio']:6.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
