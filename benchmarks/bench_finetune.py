"""Fine-tuning on one corrected region: does it help on the rest of the image?

The user corrects one 256 x 512 px region (here: the top half of a real DSB2018
fluorescence image, its expert labels standing in for the corrections) and fine-tunes
for at most ``--seconds`` on the CPU.  Scored on the other half of the same image,
which training never sees, before (base model) and after (new model): once with both
label images cut at the row line (the nuclei crossing it leave slivers of a few px that
count as objects), and once on whole objects (those whose centre lies in that half).

    python benchmarks/bench_finetune.py [--base nuclei] [--seconds 300] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from realdata import dsb2018_sample
from scipy import ndimage as ndi

from unet_core import Predictor, load_model
from unet_core.data.synthetic import synthetic_nuclei
from unet_core.progress import run_to_end
from unet_core.segmentation.metrics import evaluate
from unet_core.training.dataset import Example
from unet_core.training.finetune import finetune_iter


def whole_objects(labels, rows):
    """Labels with only the objects whose centroid row lies in ``rows`` (a slice)."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not ids.size:
        return labels
    cy = ndi.mean(np.indices(labels.shape)[0], labels, ids)
    keep = np.zeros(int(labels.max()) + 1, bool)
    keep[ids[(cy >= rows.start) & (cy < rows.stop)]] = True
    return np.where(keep[labels], labels, 0)


def rest_score(model, image, truth, rows):
    """Scores on the unseen rows: the labels cut at the row line (slivers of the nuclei
    crossing it count as objects), and whole objects (those centred in the rows)."""
    labels = Predictor(model, device="cpu").segment(image)
    return {**evaluate(labels[rows], truth[rows]),
            "whole": evaluate(whole_objects(labels, rows), whole_objects(truth, rows))}


def one_case(name, image, truth, base, seconds, lr, steps):
    h = image.shape[0]
    region, val_rows, rest = slice(0, h // 2 - 48), slice(h // 2 - 48, h // 2), slice(h // 2, h)
    train_mask = np.zeros(image.shape, bool)
    train_mask[region] = True
    val_mask = np.zeros(image.shape, bool)
    val_mask[val_rows] = True
    train = [Example("region", image, truth, train_mask, {"source": name})]
    val = [Example("region-val", image, truth, val_mask, {"source": name})]
    before = rest_score(load_model(base), image, truth, rest)
    out = Path(tempfile.mkdtemp()) / "ft"
    t = time.perf_counter()
    res = run_to_end(finetune_iter(base, train, out, steps=steps, max_seconds=seconds, lr=lr,
                                   val_examples=val, batch_size=4, crop=192, val_every=100))
    took = time.perf_counter() - t
    after = rest_score(load_model(res.model_dir), image, truth, rest)
    return {"case": name, "seconds": round(took, 1), "steps": res.train.step,
            "before": before, "after": after, "val_before": res.before, "val_after": res.after}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="nuclei")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--real-only", action="store_true", help="skip the synthetic case")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}")
    img, lab = dsb2018_sample()
    syn_img, syn_lab = synthetic_nuclei((512, 512), seed=777, dtype="uint16", radius_range=(14, 20))
    rows = [one_case("DSB2018 fluorescence (real)", img, lab, args.base, args.seconds, args.lr, args.steps)]
    if not args.real_only:
        rows.append(one_case("synthetic, large nuclei", syn_img, syn_lab, args.base, args.seconds,
                             args.lr, args.steps))
    print("| image | scored on | steps | s | AP50 before | AP50 after | Dice before | Dice after | mAP before | mAP after |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for what, b, a in (("cut at the row line", r["before"], r["after"]),
                           ("whole objects", r["before"]["whole"], r["after"]["whole"])):
            print(f"| {r['case']} | {what} | {r['steps']} | {r['seconds']:.0f} | {b['ap50']:.3f} | "
                  f"{a['ap50']:.3f} | {b['dice']:.3f} | {a['dice']:.3f} | {b['map']:.3f} | {a['map']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
