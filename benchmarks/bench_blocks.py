"""Block-merged labels against whole-image labels, with the bundled model.

For each image size and block size: segment a synthetic nuclei mosaic whole
(``Predictor.segment``) and block by block (:func:`unet_core.scaleout.large.segment_file_iter`),
then match the nuclei one-to-one (best IoU both ways) and count nuclei split or merged
at block borders (an object of one side overlapping two of the other by >= 10 px).

    python benchmarks/bench_blocks.py --sizes 2048 4096 --blocks 512 1024

Results go to benchmarks/results/blocks.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "blocks.json"


def overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel counts (na + 1, nb + 1) of every pair of ids."""
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    inter = np.bincount(a.astype(np.int64).ravel() * nb + b.ravel(), minlength=na * nb)
    return inter.reshape(na, nb)


def compare(whole: np.ndarray, blocks: np.ndarray) -> dict:
    inter = overlaps(whole, blocks).astype(np.float64)
    sa, sb = inter.sum(1), inter.sum(0)
    iou = inter / (sa[:, None] + sb[None, :] - inter + 1e-9)
    iou[0, :] = iou[:, 0] = 0
    best_a, best_b = iou.max(1)[1:][sa[1:] > 0], iou.max(0)[1:][sb[1:] > 0]
    big = inter[1:, 1:] >= 10
    return {"objects_whole": int(len(best_a)), "objects_blocks": int(len(best_b)),
            "matched_iou95": int((best_a >= 0.95).sum()),
            "min_iou": round(float(min(best_a.min(), best_b.min())), 4),
            "split": int((big.sum(1) > 1).sum()), "merged": int((big.sum(0) > 1).sum()),
            "identical_pixels": bool((iou.max(1)[1:] == 1).all())}


def mosaic(size: int) -> np.ndarray:
    from unet_core.data.synthetic import SAMPLE_PARAMS, synthetic_nuclei

    rows = []
    for i in range(size // 1024):
        rows.append(np.concatenate([synthetic_nuclei((1024, 1024), seed=200 + 7 * i + j,
                                                     dtype="uint16", **SAMPLE_PARAMS)[0]
                                    for j in range(size // 1024)], axis=1))
    return np.concatenate(rows, axis=0)


def main(argv=None) -> int:
    import zarr

    from unet_core import Predictor, load_model, run_to_end
    from unet_core.files.lazyio import LazyImage
    from unet_core.scaleout.large import segment_file_iter

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048])
    ap.add_argument("--blocks", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--model", default="nuclei")
    args = ap.parse_args(argv)
    pred = Predictor(load_model(args.model), device="cpu")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    for size in args.sizes:
        image = mosaic(size)
        t0 = time.perf_counter()
        whole = pred.segment(image)
        t_whole = time.perf_counter() - t0
        for block in args.blocks:
            with tempfile.TemporaryDirectory() as tmp:
                out = {"labels": Path(tmp) / "l.zarr"}
                t0 = time.perf_counter()
                res = run_to_end(segment_file_iter(pred, LazyImage(image), out, block=block))
                t_blocks = time.perf_counter() - t0
                labels = zarr.open_array(str(out["labels"]), mode="r")[:]
            row = {"size": size, "block": block, "model": args.model, **compare(whole, labels),
                   "clipped": res["clipped"], "seconds_whole": round(t_whole, 1),
                   "seconds_blocks": round(t_blocks, 1), "date": time.strftime("%Y-%m-%d %H:%M")}
            print(json.dumps(row), flush=True)
            results.append(row)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
