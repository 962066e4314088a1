"""Quality of a model: real DSB2018 sample (held out) and fresh synthetic images.

    python benchmarks/eval_model.py [MODEL ...] [--synthetic 20]

Prints Dice, AP50 and mAP(0.5:0.95) per model, beside the classical baseline
(Otsu + distance-transform watershed), and the CPU speed of each model.  The real image
is scored as given and as the mean over its four 90-degree rotations (one image is a
noisy judge: a network is not rotation invariant, and the spread shows how noisy), and
with test-time augmentation (``Predictor(tta=True)``).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from realdata import classical_baseline, dsb2018_sample

from unet_core import Predictor, load_model
from unet_core.data.synthetic import synthetic_dataset
from unet_core.segmentation.metrics import evaluate


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
    rotated = [(np.ascontiguousarray(np.rot90(img, k)), np.ascontiguousarray(np.rot90(lab, k)))
               for img, lab in real for k in range(4)]
    for name in args.models:
        model = load_model(name)
        pred, tta = Predictor(model, device="cpu"), Predictor(model, device="cpu", tta=True)
        speed = []
        for p in (pred, tta):
            t = time.perf_counter()
            p.predict(np.zeros((1024, 1024), np.uint16))
            speed.append(1.048576 / (time.perf_counter() - t))
        mps, tta_mps = speed
        results[name] = {"real": score(pred.segment, real),
                         "real_4_rotations": score(pred.segment, rotated),
                         "real_tta": score(tta.segment, real),
                         "real_tta_4_rotations": score(tta.segment, rotated),
                         "synthetic": score(pred.segment, synth) if synth else {},
                         "cpu_mp_per_s": mps, "cpu_mp_per_s_tta": tta_mps}
    results["baseline (Otsu + watershed)"]["real_4_rotations"] = score(classical_baseline, rotated)
    print(f"{'model':34s} {'real dice':>9s} {'real AP50':>9s} {'real mAP':>8s} {'4-rot AP50':>10s} "
          f"{'TTA AP50':>8s} {'TTA dice':>8s} {'syn AP50':>8s} {'MP/s':>6s}")
    for name, r in results.items():
        s, rot, t = r.get("synthetic") or {}, r.get("real_4_rotations", {}), r.get("real_tta_4_rotations", {})
        print(f"{name[-34:]:34s} {r['real']['dice']:9.3f} {r['real']['ap50']:9.3f} {r['real']['map']:8.3f} "
              f"{rot.get('ap50', float('nan')):10.3f} {t.get('ap50', float('nan')):8.3f} "
              f"{t.get('dice', float('nan')):8.3f} {s.get('ap50', float('nan')):8.3f} "
              f"{r.get('cpu_mp_per_s', float('nan')):6.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
