"""``predict`` next to ``segment``: what making instances costs on top of the network.

    python benchmarks/bench_segment.py [--size 2048] [--reps 3] [--backends auto,torch]
        [--json OUT.json]

The image is a mosaic of the real DSB2018 validation image (512 px, tiled to
``--size``).  For each backend (at its default precision) and each round, side by
side in one process, with the image's settings decided once beforehand
(``diameter="none"``, as in the issue's figures):

- ``predict``: ``Predictor.predict`` (tiles, normalisation, network, stitching);
- ``segment``: ``Predictor.segment`` end to end;
- ``instances``: ``probs_to_labels`` on the probabilities alone, and the instances as
  they were made before (seeds from ``skimage.morphology.h_maxima``, a grey-level
  reconstruction, then a seeded watershed), with the agreement of the two label images
  (AP50 of new against old, and whether they are identical).

Medians over the rounds; the ratio segment / predict is the figure of merit.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from realdata import dsb2018_sample
from scipy import ndimage as ndi

from unet_core import Predictor, load_model
from unet_core import instances as inst
from unet_core.metrics import evaluate


def old_labels(prob, fg_threshold=0.5, boundary_threshold=0.5, h=1.0, sigma=1.0, min_size=16):
    """``probs_to_labels`` as it was: seeds from skimage's h-maxima (a grey-level
    reconstruction of the whole image), then a seeded watershed."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import relabel_sequential, watershed

    mask = prob[0] > fg_threshold
    core = mask & (prob[1] < boundary_threshold)
    surface = ndi.distance_transform_edt(core).astype(np.float32)
    surface *= 0.5 + prob[2]
    surface = ndi.gaussian_filter(surface, sigma)
    seeds, _ = ndi.label(h_maxima(surface, h) > 0)
    labels = watershed(-surface, seeds, mask=mask)
    rest, n = ndi.label(mask & (labels == 0))
    if n:
        labels = np.where(rest > 0, rest + labels.max(), labels)
    labels = inst._drop_small(labels, min_size)
    return relabel_sequential(labels)[0].astype(np.uint32)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--backends", default="auto,torch")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    tile, _ = dsb2018_sample()
    n = -(-args.size // tile.shape[0])
    image = np.ascontiguousarray(np.tile(tile, (n, n))[:args.size, :args.size])
    model = load_model("nuclei")
    out = {"size": args.size, "reps": args.reps, "backends": {}}
    for backend in args.backends.split(","):
        pred = Predictor(model, device="cpu", backend=backend, diameter="none")
        settings = pred.settings_for(image)
        pred.predict(image[:256, :256], settings=settings)          # warm-up (compile)
        params = pred.instance_params
        rows = {"predict": [], "segment": [], "instances": [], "instances_old": []}
        for _ in range(args.reps):
            t, prob = timed(pred.predict, image, settings=settings)
            rows["predict"].append(t)
            t, labels = timed(pred.segment, image, settings=settings)
            rows["segment"].append(t)
            t, new = timed(inst.probs_to_labels, prob, **params)
            rows["instances"].append(t)
            t, old = timed(old_labels, prob, **params)
            rows["instances_old"].append(t)
        med = {k: statistics.median(v) for k, v in rows.items()}
        agree = evaluate(new, old)
        res = {"engine": {k: v for k, v in pred.engine_info.items() if isinstance(v, (str, int, float))},
               "median_s": med, "runs_s": rows,
               "segment_over_predict": med["segment"] / med["predict"],
               "instances_speedup": med["instances_old"] / med["instances"],
               "ap50_new_vs_old": agree["ap50"], "identical": bool(np.array_equal(new, old)),
               "objects": int(labels.max())}
        out["backends"][backend] = res
        print(f"{backend:6s} predict {med['predict']:.2f} s  segment {med['segment']:.2f} s "
              f"(x{res['segment_over_predict']:.2f})  instances {med['instances']:.2f} s "
              f"(before {med['instances_old']:.2f} s, x{res['instances_speedup']:.1f} faster; "
              f"AP50 new vs old {agree['ap50']:.4f}, identical {res['identical']})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
