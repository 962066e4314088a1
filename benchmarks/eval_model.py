"""Quality of a model: real DSB2018 sample (held out) and fresh synthetic images.

    python benchmarks/eval_model.py [MODEL ...] [--synthetic 20]

Prints Dice, AP50 and mAP(0.5:0.95) per model, beside the classical baseline
(Otsu + distance-transform watershed), and the CPU speed of each model.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from realdata import classical_baseline, dsb2018_sample
from unet_core import Predictor, load_model
from unet_core.metrics import evaluate
from unet_core.synthetic import synthetic_dataset


def score(segment, pairs):
    rows = [evaluate(segment(img), lab) for img, lab in pairs]
    return {k: float(np.mean([r[k] for r in rows])) for k in ("dice", "ap50", "map")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["nuclei"])
    ap.add_argument("--synthetic", type=int, default=20, help="fresh synthetic images (seed 10_000+)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    real = [dsb2018_sample()]
    synth = synthetic_dataset(args.synthetic, shape=(384, 384), seed=10_000) if args.synthetic else []
    results = {"baseline (Otsu + watershed)": {"real": score(classical_baseline, real),
                                               "synthetic": score(classical_baseline, synth) if synth else {}}}
    for name in args.models:
        pred = Predictor(load_model(name), device="cpu")
        t = time.perf_counter()
        pred.predict(np.zeros((1024, 1024), np.uint16))
        mps = 1.048576 / (time.perf_counter() - t)
        results[name] = {"real": score(pred.segment, real),
                         "synthetic": score(pred.segment, synth) if synth else {},
                         "cpu_mp_per_s": mps}
    print(f"{'model':40s} {'real dice':>9s} {'real AP50':>9s} {'real mAP':>8s} {'syn AP50':>8s} {'MP/s':>6s}")
    for name, r in results.items():
        s = r.get("synthetic") or {}
        print(f"{name[-40:]:40s} {r['real']['dice']:9.3f} {r['real']['ap50']:9.3f} {r['real']['map']:8.3f} "
              f"{s.get('ap50', float('nan')):8.3f} {r.get('cpu_mp_per_s', float('nan')):6.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
