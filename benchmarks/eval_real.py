"""Quality on real annotated images, per source: what a user gets with the defaults.

    python benchmarks/eval_real.py [MODEL ...] [--pairs DIR] [--groups PATTERN ...]
        [--given] [--baseline] [--json OUT.json]

For every image/mask pair of ``--pairs`` (default ``../shared/data/nuclei-real``, see
its README) it runs ``Predictor(MODEL)`` with the defaults (``stain="auto"``,
``diameter="auto"``) and reports, per source data set: object-weighted AP50
(TP / (TP + FP + FN) at IoU 0.5 summed over the images), mean mAP (0.5:0.95) and mean
foreground Dice; how often the stain guess is right; and how far the size estimate is
from the true median diameter (per-nucleus masks only).  ``--given`` also segments
with the true stain and diameter (what the network can do when the settings are
right); ``--baseline`` adds Otsu + distance-transform watershed on the same images.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from unet_core import Predictor, load_model
from unet_core.inference.image_settings import overview
from unet_core.inference.stain import convert, guess_stain, white_level
from unet_core.segmentation.metrics import evaluate, match_counts
from unet_core.training.pairs import load_pairs

DEFAULT_PAIRS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nuclei-real"


def otsu_watershed(image, stain):
    from realdata import classical_baseline

    white = white_level(image) if stain == "he" else 1.0
    return classical_baseline(convert(image, stain, white)[..., 0])


def _row(labels, truth):
    r = evaluate(labels, truth)
    c = match_counts(labels, truth, thresholds=(0.5,))[0.5]
    return {"dice": r["dice"], "map": r["map"], "tp": c["tp"], "fp": c["fp"], "fn": c["fn"],
            "objects": int(len(np.unique(labels)) - (labels == 0).any())}


def summarise(rows):
    out = {}
    for group, rs in rows.items():
        tp, fp, fn = (sum(r[k] for r in rs) for k in ("tp", "fp", "fn"))
        out[group] = {"n": len(rs), "ap50": tp / max(tp + fp + fn, 1),
                      "map": float(np.mean([r["map"] for r in rs])),
                      "dice": float(np.mean([r["dice"] for r in rs]))}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["nuclei"])
    ap.add_argument("--pairs", default=str(DEFAULT_PAIRS))
    ap.add_argument("--groups", nargs="+", help="source data sets (names or glob patterns)")
    ap.add_argument("--names", nargs="+", help="only these pairs")
    ap.add_argument("--given", action="store_true", help="also segment with the true stain and size")
    ap.add_argument("--baseline", action="store_true", help="also Otsu + watershed")
    ap.add_argument("--size-only", action="store_true",
                    help="only the size estimate, on every per-nucleus pair (no segmentation)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--json", help="write every per-image row here")
    args = ap.parse_args(argv)
    pairs = load_pairs(args.pairs, groups=args.groups, names=args.names)
    if not pairs:
        sys.exit(f"no pairs in {args.pairs}")
    if args.size_only:
        return size_only(args, [p for p in pairs if not p.record["merged"]])
    result = {"images": {}}
    per = defaultdict(lambda: defaultdict(list))
    stain_ok, size_err = defaultdict(list), defaultdict(list)
    for name in args.models:
        model = load_model(name)
        pred = Predictor(model, device="cpu", backend=args.backend, precision=args.precision)
        t0 = time.perf_counter()
        for ex in pairs:
            g, truth = ex.record["group"], ex.labels
            guess = guess_stain(overview(ex.image))
            labels = pred.segment(ex.image)
            s = pred.last_settings
            row = {"model": name, "group": g, **_row(labels, truth), "stain": s.stain,
                   "stain_true": ex.record["stain"], "stain_confident": guess.confident,
                   "diameter": s.diameter, "diameter_true": ex.record["diameter"],
                   "merged_mask": ex.record["merged"], "scale": s.scale}
            per[name][g].append(row)
            stain_ok[name].append(s.stain == ex.record["stain"])
            if not ex.record["merged"] and s.diameter and ex.record["diameter"]:
                size_err[name].append((ex.id, s.diameter / ex.record["diameter"] - 1))
            if args.given:
                given = pred.with_options(diameter=ex.record["diameter"], stain=ex.record["stain"])
                per[name + " (true stain and size)"][g].append(_row(given.segment(ex.image), truth))
            result["images"].setdefault(ex.id, {})[name] = row
            print(f"{name} {ex.id:34s} AP50 {row['tp'] / max(row['tp'] + row['fp'] + row['fn'], 1):.3f} "
                  f"objects {row['objects']:5d}/{int(truth.max()):5d} stain {s.stain:12s} "
                  f"d {s.diameter or 0:6.1f} / {ex.record['diameter'] or 0:6.1f}", flush=True)
        result.setdefault("seconds", {})[name] = time.perf_counter() - t0
    if args.baseline:
        for ex in pairs:
            per["Otsu + watershed"][ex.record["group"]].append(
                _row(otsu_watershed(ex.image, ex.record["stain"]), ex.labels))
    result["summary"] = {m: summarise(rows) for m, rows in per.items()}
    stain_of = {ex.record["group"]: ex.record["stain"] for ex in pairs}
    by_stain = {}
    for m, rows in per.items():
        for stain in ("fluorescence", "he"):
            rs = [r for g, rr in rows.items() for r in rr if stain_of[g] == stain]
            if rs:
                by_stain.setdefault(m, {})[stain] = summarise({stain: rs})[stain]
    result["by_stain"] = by_stain
    for m in stain_ok:
        errs = np.array([abs(e) for _, e in size_err[m]])
        result.setdefault("stain_right", {})[m] = f"{sum(stain_ok[m])}/{len(stain_ok[m])}"
        result.setdefault("size_within_20", {})[m] = f"{int((errs <= 0.2).sum())}/{len(errs)}"
        result.setdefault("size_worst", {})[m] = sorted(size_err[m], key=lambda t: -abs(t[1]))[:5]
    print()
    print(f"{'model':40s} {'source':60s} {'n':>3s} {'AP50':>6s} {'mAP':>6s} {'Dice':>6s}")
    for m, groups in result["summary"].items():
        for g, r in groups.items():
            print(f"{m[:40]:40s} {g[:60]:60s} {r['n']:3d} {r['ap50']:6.3f} {r['map']:6.3f} {r['dice']:6.3f}")
        for stain, r in by_stain.get(m, {}).items():
            print(f"{m[:40]:40s} {'ALL ' + stain:60s} {r['n']:3d} {r['ap50']:6.3f} {r['map']:6.3f} {r['dice']:6.3f}")
    for m in stain_ok:
        print(f"{m}: stain right {result['stain_right'][m]}, size within 20% "
              f"{result['size_within_20'][m]}; worst {result['size_worst'][m]}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))


def size_only(args, pairs):
    """The size estimate against the true median diameter, per model; prints how many
    images are within 20% and the worst ones."""
    out = {}
    for name in args.models:
        pred = Predictor(load_model(name), device="cpu", backend=args.backend,
                         precision=args.precision)
        rows = []
        for ex in pairs:
            s = pred.settings_for(ex.image)
            est, truth = s.diameter, ex.record["diameter"]
            rows.append((ex.id, truth, est, None if est is None else est / truth - 1,
                         s.size_note is not None))
        errs = np.array([9.0 if r[3] is None else abs(r[3]) for r in rows])
        said = np.array([r[4] for r in rows])
        miss = errs > 0.2
        print(f"{name}: size within 20% on {int((~miss).sum())}/{len(rows)} per-nucleus "
              f"images, median error {np.median(errs):.3f}; said uncertain on "
              f"{int(said[miss].sum())}/{int(miss.sum())} misses and {int(said[~miss].sum())}/"
              f"{int((~miss).sum())} others")
        for r in sorted(rows, key=lambda r: -(9.0 if r[3] is None else abs(r[3])))[:int(miss.sum())]:
            print(f"  {r[0]:34s} true {r[1]:6.1f} px  estimate {r[2] or 0:6.1f} px"
                  + ("  (said uncertain)" if r[4] else ""))
        out[name] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
