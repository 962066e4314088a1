"""The instances as made now against the instances as made before, on real images.

    python benchmarks/compare_instances.py [--pairs DIR] [--json OUT.json]

Segments every pair of ``--pairs`` (default ``../shared/data/nuclei-real``) with the
bundled model and the defaults twice, once with today's ``probs_to_labels`` and once
with the former one (``bench_segment.old_labels``: skimage h-maxima seeds, seeded
watershed; the network's outputs of the first are reused), and reports the object-weighted AP50 against the true masks of both, per
stain, and the agreement of the two label images (AP50 of new against old).
"""
from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from bench_segment import old_labels
from eval_real import DEFAULT_PAIRS

import unet_core.inference.predict as predict_module
from unet_core import Predictor
from unet_core.segmentation.metrics import match_counts
from unet_core.training.pairs import load_pairs


def _ap50(counts):
    tp, fp, fn = (sum(c[k] for c in counts) for k in ("tp", "fp", "fn"))
    return tp / max(tp + fp + fn, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=str(DEFAULT_PAIRS))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    pred = Predictor("nuclei", device="cpu")
    new_fn = predict_module.probs_to_labels
    forward, seen = pred.network.forward, {}

    def forward_once(x):                 # the second segment of an image reuses the network's
        key = hashlib.sha1(x.tobytes()).hexdigest()
        if key not in seen:
            seen[key] = forward(x)
        return seen[key]
    pred.network.forward = forward_once
    rows = defaultdict(lambda: {"new": [], "old": [], "agree": []})
    worst = []
    for ex in load_pairs(args.pairs):
        seen.clear()
        s = pred.settings_for(ex.image)
        new = pred.segment(ex.image, settings=s)
        predict_module.probs_to_labels = old_labels
        try:
            old = pred.segment(ex.image, settings=s)
        finally:
            predict_module.probs_to_labels = new_fn
        r = rows[ex.record["stain"]]
        r["new"].append(match_counts(new, ex.labels, thresholds=(0.5,))[0.5])
        r["old"].append(match_counts(old, ex.labels, thresholds=(0.5,))[0.5])
        r["agree"].append(match_counts(new, old, thresholds=(0.5,))[0.5])
        worst.append((_ap50([r["agree"][-1]]), ex.id, bool(np.array_equal(new, old))))
    out = {stain: {"images": len(r["new"]), "ap50_new": _ap50(r["new"]),
                   "ap50_old": _ap50(r["old"]), "ap50_new_vs_old": _ap50(r["agree"])}
           for stain, r in rows.items()}
    out["identical_images"] = sum(w[2] for w in worst)
    out["least_agreeing"] = sorted(worst)[:5]
    for k, v in out.items():
        print(k, v)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
