"""``predict`` next to ``segment``: what making instances costs on top of the network.

    python benchmarks/bench_segment.py [--size 2048] [--reps 3] [--backends auto,torch]
        [--json OUT.json]
    python benchmarks/bench_segment.py --blocks 8192 [--reps 1] [--json OUT.json]

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

Medians over the rounds; the ratio segment / predict is the figure of merit.  Stage
shares of ``segment`` (in the same rounds, from timers wrapped around the pipeline's
functions): ``read+normalise`` (tiles cut from the image and scaled; in the prefetch
thread, so partly hidden behind the network), ``network`` (the engine's forward
passes), ``instances`` (``probs_to_labels`` on the probabilities, timed alone) and
``stitch+rest`` (what else ``segment`` spends: stitching, waiting for tiles, checks).  In memory: no reading or writing.

``--blocks N``: the block-wise path a large file takes (``unet_core.scaleout.large``), on an
N x N mosaic written as a tiled TIFF, each run in a fresh process (its peak RSS from
``wait4``): ``predict`` (the whole image's probabilities, read from the file in one
piece), ``segment`` (block-wise labels into a zarr store, today's instances) and
``segment-old`` (the same with the instances made as before).  Reports the medians,
segment / predict, the peak memory of both segments, and the agreement of their labels.
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
from unet_core.segmentation import instances as inst
from unet_core.segmentation.metrics import evaluate


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


class StageTimer:
    """Seconds spent in the pipeline's tile reading/normalising and network calls,
    from wrappers put around them (removed by :meth:`close`)."""

    def __init__(self, pred):
        import unet_core.inference.predict as predict_module

        self.seconds = {"read+normalise": 0.0, "network": 0.0}
        self._undo = []
        self._wrap(predict_module, "apply_range", "read+normalise")
        self._wrap(pred.network, "forward", "network")

    def _wrap(self, owner, name, key):
        fn = getattr(owner, name)

        def timed_call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - t0
        setattr(owner, name, timed_call)
        self._undo.append((owner, name, fn))

    def take(self) -> dict:
        out, self.seconds = self.seconds, dict.fromkeys(self.seconds, 0.0)
        return out

    def close(self):
        import types

        for owner, name, fn in reversed(self._undo):
            if isinstance(owner, types.ModuleType):
                setattr(owner, name, fn)
            else:
                delattr(owner, name)               # the class's method again
        self._undo.clear()


def mosaic(size: int) -> np.ndarray:
    tile, _ = dsb2018_sample()
    n = -(-size // tile.shape[0])
    return np.ascontiguousarray(np.tile(tile, (n, n))[:size, :size])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--backends", default="auto,torch")
    ap.add_argument("--blocks", type=int, metavar="N", help="the block-wise path at N px")
    ap.add_argument("--child", nargs=3, metavar=("RUN", "TIFF", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.child:
        return child(*args.child)
    if args.blocks:
        return blocks_main(args)
    image = mosaic(args.size)
    model = load_model("nuclei")
    out = {"size": args.size, "reps": args.reps, "backends": {}}
    for backend in args.backends.split(","):
        pred = Predictor(model, device="cpu", backend=backend, diameter="none")
        settings = pred.settings_for(image)
        pred.predict(image[:256, :256], settings=settings)          # warm-up (compile)
        params = pred.instance_params
        rows = {"predict": [], "segment": [], "instances": [], "instances_old": []}
        stages = {"read+normalise": [], "network": [], "stitch+rest": [], "instances": []}
        timer = StageTimer(pred)
        for _ in range(args.reps):
            t, prob = timed(pred.predict, image, settings=settings)
            rows["predict"].append(t)
            timer.take()
            t, labels = timed(pred.segment, image, settings=settings)
            rows["segment"].append(t)
            inner = timer.take()
            for key, value in inner.items():
                stages[key].append(value)
            t, new = timed(inst.probs_to_labels, prob, **params)
            rows["instances"].append(t)
            stages["instances"].append(t)
            stages["stitch+rest"].append(rows["segment"][-1] - inner["network"] - t)
            t, old = timed(old_labels, prob, **params)
            rows["instances_old"].append(t)
        timer.close()
        med = {k: statistics.median(v) for k, v in rows.items()}
        share = {k: statistics.median(v) / med["segment"] for k, v in stages.items()}
        agree = evaluate(new, old)
        res = {"engine": {k: v for k, v in pred.engine_info.items() if isinstance(v, (str, int, float))},
               "median_s": med, "runs_s": rows, "segment_shares": share,
               "segment_over_predict": med["segment"] / med["predict"],
               "instances_speedup": med["instances_old"] / med["instances"],
               "ap50_new_vs_old": agree["ap50"], "identical": bool(np.array_equal(new, old)),
               "objects": int(labels.max())}
        out["backends"][backend] = res
        print(f"{backend:6s} predict {med['predict']:.2f} s  segment {med['segment']:.2f} s "
              f"(x{res['segment_over_predict']:.2f})  instances {med['instances']:.2f} s "
              f"(before {med['instances_old']:.2f} s, x{res['instances_speedup']:.1f} faster; "
              f"AP50 new vs old {agree['ap50']:.4f}, identical {res['identical']})", flush=True)
        print("       shares of segment: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()),
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


# -- the block-wise path of a large file ----------------------------------------------

def child(run: str, tiff: str, out: str) -> int:
    """One timed run in this (fresh) process; prints its seconds as JSON."""
    import unet_core.inference.predict as predict_module
    from unet_core.files.lazyio import open_image
    from unet_core.progress import run_to_end
    from unet_core.scaleout.large import segment_file_iter

    pred = Predictor(load_model("nuclei"), device="cpu", diameter="none")
    image = open_image(tiff)
    pred.predict(np.asarray(image.data[:256, :256]))              # warm-up (compile)
    if run == "segment-old":
        predict_module.probs_to_labels = old_labels
    t0 = time.perf_counter()
    if run == "predict":
        whole = np.asarray(image.data)
        pred.predict(whole, settings=pred.settings_for(whole))
    else:
        run_to_end(segment_file_iter(pred, image, {"labels": out}, source_id=run))
    print(json.dumps({"seconds": time.perf_counter() - t0}))
    return 0


def _run_child(run: str, tiff: Path, out: Path) -> dict:
    import os
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, __file__, "--child", run, str(tiff), str(out)],
                            stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    text = proc.stdout.read()
    proc.stdout.close()
    if status != 0:
        raise SystemExit(f"{run} failed (status {status})")
    return {"seconds": json.loads(text.strip().splitlines()[-1])["seconds"],
            "peak_rss_gib": usage.ru_maxrss / 2 ** 20}


def blocks_main(args) -> int:
    import tempfile

    import tifffile
    import zarr

    size = args.blocks
    runs = ("predict", "segment", "segment-old")
    rows = {run: [] for run in runs}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiff = tmp / f"mosaic_{size}.tif"
        tifffile.imwrite(tiff, mosaic(size), tile=(512, 512))
        for rep in range(args.reps):
            for run in runs:
                out = tmp / f"{run}_{rep}_labels.zarr"
                rows[run].append(_run_child(run, tiff, out))
                print(f"{run:11s} {rows[run][-1]['seconds']:7.1f} s  "
                      f"peak {rows[run][-1]['peak_rss_gib']:.2f} GiB", flush=True)
        new = np.asarray(zarr.open(str(tmp / "segment_0_labels.zarr"), mode="r"))
        old = np.asarray(zarr.open(str(tmp / "segment-old_0_labels.zarr"), mode="r"))
    med = {run: statistics.median(r["seconds"] for r in rows[run]) for run in runs}
    peak = {run: statistics.median(r["peak_rss_gib"] for r in rows[run]) for run in runs}
    agree = evaluate(new, old)
    out = {"size": size, "reps": args.reps, "runs": rows, "median_s": med, "peak_rss_gib": peak,
           "segment_over_predict": med["segment"] / med["predict"],
           "segment_old_over_predict": med["segment-old"] / med["predict"],
           "peak_segment_over_old": peak["segment"] / peak["segment-old"],
           "ap50_new_vs_old": agree["ap50"], "objects": [int(new.max()), int(old.max())]}
    print(f"block-wise {size} px: predict {med['predict']:.1f} s, segment {med['segment']:.1f} s "
          f"(x{out['segment_over_predict']:.2f}; before x{out['segment_old_over_predict']:.2f}), "
          f"peak {peak['segment']:.2f} vs {peak['segment-old']:.2f} GiB, AP50 new vs old "
          f"{agree['ap50']:.4f}, objects {out['objects']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
