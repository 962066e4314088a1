"""Fine-tuning from the command line on the left half of the real DSB2018 image, scored
on the right half that training never sees.

    python benchmarks/bench_finetune_halves.py [--base nuclei] [--seconds 300] [--json OUT]

Runs ``napari-unet finetune --images L --labels L --steps 5000 --max-seconds 300`` exactly
as a user would (the left half's expert labels stand in for corrections), then segments
the right half with the defaults, with the base model and with the new one: AP50, mAP
and Dice with both label images cut at the column line, and on whole objects (those
whose centre lies in the right half).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from realdata import dsb2018_sample
from scipy import ndimage as ndi

from unet_core import Predictor, load_model
from unet_core.segmentation.metrics import evaluate


def whole_objects(labels: np.ndarray, x0: int) -> np.ndarray:
    """Labels (H, W) keeping the objects whose centre lies at column >= x0."""
    ids = np.unique(labels[labels > 0])
    if ids.size == 0:
        return labels
    centres = ndi.center_of_mass(np.ones_like(labels), labels, ids)
    keep = ids[[c[1] >= x0 for c in centres]]
    return np.where(np.isin(labels, keep), labels, 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="nuclei")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--lr", type=float, help="learning rate (default: the fine-tune default)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    image, truth = dsb2018_sample()
    w = image.shape[1] // 2
    tmp = Path(tempfile.mkdtemp(prefix="ft-halves-"))
    (tmp / "images").mkdir()
    tifffile.imwrite(tmp / "images" / "left.tif", image[:, :w])
    tifffile.imwrite(tmp / "images" / "left_labels.tif", truth[:, :w].astype(np.uint32))
    cmd = [sys.executable, "-m", "unet_core.commands.cli", "finetune", "--base", args.base,
           "--images", str(tmp / "images"), "--labels", str(tmp / "images"),
           "--steps", str(args.steps), "--max-seconds", str(args.seconds), "--device", "cpu",
           "-o", str(tmp / "model"), "-q"] + (["--lr", str(args.lr)] if args.lr else [])
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    print(run.stdout, run.stderr[-2000:])
    if run.returncode not in (0, 1):
        sys.exit(run.returncode)
    card = load_model(tmp / "model").card
    rows = {}
    for name, model in (("base", args.base), ("fine-tuned", str(tmp / "model"))):
        labels = Predictor(load_model(model), device="cpu").segment(image)
        right_pred, right_true = labels[:, w:], truth[:, w:]
        rows[name] = {"cut": evaluate(right_pred, right_true),
                      "whole": evaluate(whole_objects(labels, w)[:, w:],
                                        whole_objects(truth, w)[:, w:])}
    out = {"seconds": seconds, "steps": card["training"]["steps"],
           "kept_step": card["training"].get("kept_step"), "rows": rows}
    for how in ("cut", "whole"):
        b, a = rows["base"][how], rows["fine-tuned"][how]
        print(f"{how:5s}: AP50 {b['ap50']:.3f} -> {a['ap50']:.3f}   mAP {b['map']:.3f} -> "
              f"{a['map']:.3f}   Dice {b['dice']:.3f} -> {a['dice']:.3f}")
    print(f"{out['steps']} steps in {seconds:.0f} s (kept step {out['kept_step']})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
