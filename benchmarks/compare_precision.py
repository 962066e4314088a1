"""The default CPU backend at bf16 against f32 on real images: does bf16 keep the labels?

    python benchmarks/compare_precision.py [--pairs DIR] [--json OUT.json]

Runs only where the CPU executes bf16 natively (OpenVINO says so).  For every pair of
``--pairs`` (default ``../shared/data/nuclei-real``) and the DSB2018 validation image,
the settings (stain, size) are decided once at f32, then the image is segmented with
OpenVINO at f32 and at bf16 and with PyTorch f32.  Reports the AP50 against the truth
per image for each, the largest per-image difference of bf16 from PyTorch f32, how many
images differ by more than 0.005, and the object-weighted AP50 over all images.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval_real import DEFAULT_PAIRS
from realdata import dsb2018_sample

from unet_core import Predictor, load_model
from unet_core.inference.backends import cpu_bf16
from unet_core.segmentation.metrics import match_counts
from unet_core.training.pairs import load_pairs

METHODS = {"torch-f32": ("torch", "f32"), "openvino-f32": ("openvino", "f32"),
           "openvino-bf16": ("openvino", "bf16")}


def _ap50(c):
    return c["tp"] / max(c["tp"] + c["fp"] + c["fn"], 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=str(DEFAULT_PAIRS))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if not cpu_bf16():
        print("this CPU does not execute bf16 natively: nothing to compare")
        return 0
    model = load_model("nuclei")
    preds = {m: Predictor(model, device="cpu", backend=b, precision=p) for m, (b, p) in METHODS.items()}
    image, truth = dsb2018_sample()
    items = [("dsb2018_validation", image, truth)]
    items += [(ex.id, ex.image, ex.labels) for ex in load_pairs(args.pairs)]
    rows, totals = [], {m: {"tp": 0, "fp": 0, "fn": 0} for m in METHODS}
    for name, img, lab in items:
        s = preds["torch-f32"].settings_for(img)
        row = {"image": name}
        for m, pred in preds.items():
            c = match_counts(pred.segment(img, settings=s), lab, thresholds=(0.5,))[0.5]
            row[m] = _ap50(c)
            for k in totals[m]:
                totals[m][k] += c[k]
        rows.append(row)
        print(name, {m: round(row[m], 4) for m in METHODS}, flush=True)
    diff = [abs(r["openvino-bf16"] - r["torch-f32"]) for r in rows]
    diff32 = [abs(r["openvino-f32"] - r["torch-f32"]) for r in rows]
    out = {"images": len(rows), "ap50_all": {m: _ap50(t) for m, t in totals.items()},
           "bf16_max_diff": max(diff), "bf16_over_0.005": sum(d > 0.005 for d in diff),
           "openvino_f32_max_diff": max(diff32), "openvino_f32_over_0.005": sum(d > 0.005 for d in diff32),
           "validation": rows[0], "rows": rows}
    print({k: v for k, v in out.items() if k != "rows"})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
