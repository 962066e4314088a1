"""Size, stain and border robustness of the defaults on the real DSB2018 image.

    python benchmarks/eval_scale_stain.py [--model nuclei] [--json FILE]

With the defaults (diameter="auto", stain="auto") and nothing set by hand:

- scale: the image resampled 0.5x, 1x, 2x, 3x and 4x (nuclei ~12-95 px), AP50 as the
  mean over the four 90-degree rotations, and the estimated diameter against the true
  median equivalent diameter of the expert labels;
- stain: the same image as brightfield (inverted grey) and as a synthetic H&E
  rendering (:func:`unet_core.data.synthetic.render_he`), with the stain "auto" picked;
- borders: inside a 64 px band of zeros and of a constant grey (the image's median);
- the same figures with ``diameter=None`` (the image as it is) for comparison.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from realdata import dsb2018_sample

from unet_core import Predictor, load_model
from unet_core.data.synthetic import render_he
from unet_core.inference.resample import nearest_labels, resample
from unet_core.segmentation.metrics import evaluate


def rotations(image, labels):
    return [(np.ascontiguousarray(np.rot90(image, k)), np.ascontiguousarray(np.rot90(labels, k)))
            for k in range(4)]


def score(pred, pairs):
    aps, diams, stains = [], [], []
    for img, lab in pairs:
        aps.append(evaluate(pred.segment(img), lab)["ap50"])
        s = pred.last_settings
        diams.append(s.diameter if s.diameter else float("nan"))
        stains.append(s.stain)
    return {"ap50": float(np.mean(aps)), "diameter": float(np.nanmedian(diams)) if any(
        d == d for d in diams) else None, "stains": sorted(set(stains))}


def true_diameter(labels):
    areas = np.bincount(labels.ravel())[1:]
    return float(np.median(2 * np.sqrt(areas[areas > 0] / np.pi)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="nuclei")
    ap.add_argument("--scales", default="0.5,1,2,3,4")
    ap.add_argument("--json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--no-plain", action="store_true",
                    help="skip the figures without resampling (quicker)")
    args = ap.parse_args(argv)
    img, lab = dsb2018_sample()
    img = img.astype(np.float32)
    model = load_model(args.model)
    auto = Predictor(model, device=args.device, precision=args.precision)
    plain = None if args.no_plain else Predictor(model, device=args.device, precision=args.precision,
                                                 diameter=None, stain="fluorescence")
    d0 = true_diameter(lab)
    rows = {}
    for f in [float(x) for x in args.scales.split(",")]:
        shape = (round(img.shape[0] * f), round(img.shape[1] * f))
        im, lb = resample(img, shape), nearest_labels(lab, shape)
        pairs = rotations(im, lb)
        r = score(auto, pairs)
        r["true_diameter"] = d0 * f
        r["diameter_error"] = r["diameter"] / (d0 * f) - 1
        if plain is not None:
            r["ap50_image_scale"] = score(plain, pairs)["ap50"]
        rows[f"scale {f:g}x"] = r
    bf = img.max() - img
    he = render_he(img, lab)
    rows["brightfield (inverted)"] = score(auto, rotations(bf, lab))
    rows["H&E (rendered)"] = score(auto, rotations(he, lab))
    for name, value in (("zeros", 0.0), ("grey", float(np.median(img)))):
        banded = np.pad(img, 64, constant_values=value)
        lb = np.pad(lab, 64)
        rows[f"64 px band of {name}"] = r = score(auto, rotations(banded, lb))
        if plain is not None:
            r["ap50_image_scale"] = score(plain, rotations(banded, lb))["ap50"]
    base = rows.get("scale 1x", {}).get("ap50", float("nan"))
    print(f"{'case':26s} {'AP50 (4 rot.)':>13s} {'vs 1x':>6s} {'diameter':>8s} {'true':>6s} "
          f"{'error':>6s} {'stain':>12s} {'AP50 no resampling':>18s}")
    for name, r in rows.items():
        err = r.get("diameter_error")
        print(f"{name:26s} {r['ap50']:13.3f} {r['ap50'] - base:+6.3f} "
              f"{(r['diameter'] or float('nan')):8.1f} {r.get('true_diameter', d0):6.1f} "
              f"{'' if err is None else f'{err:+.0%}':>6s} {','.join(r['stains']):>12s} "
              f"{r.get('ap50_image_scale', float('nan')):18.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
