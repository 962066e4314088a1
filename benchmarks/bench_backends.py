"""CPU inference backends side by side: PyTorch, ONNX Runtime, OpenVINO f32 and bf16.

Every measurement runs in a fresh process on the bundled ``nuclei`` model and the same
uint16 image (a synthetic DAPI-like field, so the watershed has real nuclei to split):

- ``predict``: ``Predictor(model, backend=..., precision=...).predict(image)``, from the
  raw image to float32 probabilities (tiling, normalisation and sigmoid included),
  after the backend is ready; what readying cost (export + compile) is reported as
  ``first_s`` (export only in the first run: the export cache is shared by the runs),
  then a 256 px warm-up (untimed) for every method;
- ``segment``: ``Predictor.segment`` end to end, split into the network part and the
  post-processing (seeded watershed), to show where the time goes next.

Methods are interleaved in a shuffled order in every round; medians are reported, with
the speed-up over PyTorch and the largest difference from PyTorch's probabilities.  Wall
time and the process's CPU time (all its threads) are both reported: on a machine shared
with other work, the CPU time of one-thread runs (``--threads 1``) is the steadier measure
of the work each backend does.
bf16 runs only where OpenVINO says this CPU executes it natively.

    python benchmarks/bench_backends.py --sizes 2048,8192 --reps 3 [--threads 1] --json out.json
    python benchmarks/bench_backends.py --quality    # AP50 on the real validation image
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = {"torch": ("torch", "f32"), "onnxruntime": ("onnxruntime", "f32"),
           "openvino-f32": ("openvino", "f32"), "openvino-bf16": ("openvino", "bf16"),
           "default": ("auto", "auto")}


def _image(size: int):
    import numpy as np

    from unet_core.data.synthetic import SAMPLE_PARAMS, synthetic_nuclei

    tile, _ = synthetic_nuclei((min(size, 1024),) * 2, seed=1, dtype="uint16", **SAMPLE_PARAMS)
    reps = -(-size // tile.shape[0])
    return np.ascontiguousarray(np.tile(tile, (reps, reps))[:size, :size])


def run_one(method: str, size: int, task: str, save: str | None, threads: int = 0) -> dict:
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)    # every backend follows torch's thread count

    from unet_core import Predictor, load_model
    from unet_core.inference.backends import describe
    from unet_core.progress import run_to_end

    backend, precision = METHODS[method]
    image = _image(size)
    # diameter=None: the network on the image as it is (no size estimate or resampling),
    # so every method does the same work
    pred = Predictor(load_model("nuclei"), device="cpu", backend=backend, precision=precision,
                     diameter=None)
    grid = pred.grid(image.shape)
    shape = (pred.batch_size_for(grid), 1) + grid.tile_shape
    t0 = time.perf_counter()
    info = run_to_end(pred.prepare_iter(shape))
    first = time.perf_counter() - t0
    pred.predict(image[:256, :256])   # warm-up of the kernels (as bench_tiling), not timed
    row = {"method": method, "size": size, "task": task, "engine": describe(pred.backend, pred.precision),
           "first_s": first, "exported": bool(info.get("exported")), "tiles": len(grid),
           "tile": grid.tile_shape[0]}
    t0, cpu0 = time.perf_counter(), time.process_time()
    if task == "predict":
        prob = pred.predict(image)
        row["seconds"] = time.perf_counter() - t0
        if save:
            np.save(save, prob)
    else:
        net_done = None
        gen = pred.segment_iter(image)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                labels = stop.value
                break
            if p.stage == "predict" and p.done == p.total:
                net_done = time.perf_counter() - t0
        row["seconds"] = time.perf_counter() - t0
        row["network_s"] = net_done
        row["post_s"] = row["seconds"] - net_done
        row["objects"] = int(labels.max())
    row["cpu_s"] = time.process_time() - cpu0     # all threads of the process
    row["mp_per_s"] = size * size / row["seconds"] / 1e6
    row["threads"] = torch.get_num_threads()
    return row


def quality() -> dict:
    """AP50 of each backend on the real validation image, and how its labels agree
    with PyTorch's (AP50 of one against the other)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from realdata import dsb2018_sample

    from unet_core import Predictor, load_model
    from unet_core.inference.backends import cpu_bf16
    from unet_core.segmentation.metrics import evaluate

    image, truth = dsb2018_sample()
    model = load_model("nuclei")
    out, ref_labels, ref_prob = {}, None, None
    for method, (backend, precision) in METHODS.items():
        if method == "default" or (precision == "bf16" and not cpu_bf16()):
            continue
        pred = Predictor(model, device="cpu", backend=backend, precision=precision)
        labels, prob = pred.segment(image, return_prob=True)
        out.setdefault("settings", pred.last_settings.describe())
        if ref_labels is None:
            ref_labels, ref_prob = labels, prob
        score = evaluate(labels, truth)
        out[method] = {"ap50": round(score["ap50"], 4), "map": round(score["map"], 4),
                       "dice": round(score["dice"], 4),
                       "ap50_vs_torch_labels": round(evaluate(labels, ref_labels)["ap50"], 4),
                       "labels_identical": bool((labels == ref_labels).all()),
                       "max_prob_diff": float(abs(prob - ref_prob).max())}
        print(method, out[method], file=sys.stderr)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2048,8192")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--segment", default="torch,default",
                    help="methods also timed end to end (segment), at every size")
    ap.add_argument("--json", help="write all measurements here")
    ap.add_argument("--quality", action="store_true", help="AP50 on the real validation image")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for every backend (default: torch's own choice)")
    ap.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        method, size, task, save, threads = args.one
        print(json.dumps(run_one(method, int(size), task, None if save == "-" else save, int(threads))))
        return
    if args.quality:
        res = quality()
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
        return
    from unet_core.inference.backends import cpu_bf16, installed

    methods = [m for m in args.methods.split(",")
               if METHODS[m][0] in installed() + ["auto"] and (METHODS[m][1] != "bf16" or cpu_bf16())]
    skipped = sorted(set(args.methods.split(",")) - set(methods))
    sizes = [int(s) for s in args.sizes.split(",")]
    jobs = [(m, s, "predict") for s in sizes for m in methods]
    jobs += [(m, s, "segment") for s in sizes for m in args.segment.split(",") if m in methods]
    rows, rnd = [], random.Random(0)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        env["NAPARI_UNET_CACHE"] = str(Path(tmp) / "cache")   # first run of each pays the export
        for rep in range(args.reps):
            order = jobs[:]
            rnd.shuffle(order)
            for m, s, task in order:
                keep = rep == 0 and task == "predict" and s <= 2048   # for the differences
                save = str(Path(tmp) / f"{m}-{s}.npy") if keep else "-"
                out = subprocess.run([sys.executable, __file__, "--one", m, str(s), task, save,
                                      str(args.threads)],
                                     capture_output=True, text=True, env=env)
                if out.returncode:
                    raise SystemExit(f"{m} {s} {task} failed:\n{out.stderr[-3000:]}")
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["rep"] = rep
                rows.append(row)
                print(f"rep {rep} {task:7s} {s:5d} {m:14s} {row['seconds']:7.2f} s "
                      f"(first call {row['first_s']:.2f} s)", file=sys.stderr)
        diffs = _diffs(tmp, methods, sizes)
    _report(rows, methods, sizes, args.reps, diffs, skipped)
    if args.json:
        Path(args.json).write_text(json.dumps({"reps": args.reps, "threads": args.threads,
                                               "cpu_bf16": cpu_bf16(),
                                               "cpu_count": os.cpu_count(), "skipped": skipped,
                                               "max_abs_diff_vs_torch": diffs, "rows": rows},
                                              indent=1) + "\n")


def _diffs(tmp, methods, sizes) -> dict:
    import numpy as np

    out = {}
    for s in sizes:
        ref = Path(tmp) / f"torch-{s}.npy"
        if not ref.exists():
            continue
        torch_prob = np.load(ref)
        for m in methods:
            p = Path(tmp) / f"{m}-{s}.npy"
            if m != "torch" and p.exists():
                out[f"{m}-{s}"] = float(np.abs(np.load(p) - torch_prob).max())
    return out


def _report(rows, methods, sizes, reps, diffs, skipped):
    def med(m, s, task, key="seconds"):
        vals = [r[key] for r in rows if (r["method"], r["size"], r["task"]) == (m, s, task)
                and r.get(key) is not None]
        return statistics.median(vals) if vals else None

    print(f"\nmedians of {reps} runs, fresh processes"
          + (f"; not run here: {', '.join(skipped)}" if skipped else "") + "\n")
    print("| size | method | engine | predict s | x torch | CPU s | x torch (CPU) | MP/s | "
          "first call s | max abs diff vs torch |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        base, base_cpu = med("torch", s, "predict"), med("torch", s, "predict", "cpu_s")
        for m in methods:
            sec, cpu = med(m, s, "predict"), med(m, s, "predict", "cpu_s")
            if sec is None:
                continue
            engine = next(r["engine"] for r in rows if r["method"] == m)
            ratio = f"{base / sec:.2f}" if base else "-"
            cpu_ratio = f"{base_cpu / cpu:.2f}" if base_cpu else "-"
            diff = diffs.get(f"{m}-{s}")
            print(f"| {s} | {m} | {engine} | {sec:.2f} | {ratio} | {cpu:.2f} | {cpu_ratio} | "
                  f"{s * s / sec / 1e6:.2f} | {med(m, s, 'predict', 'first_s'):.2f} | "
                  f"{'-' if diff is None else f'{diff:.1e}'} |")
    seg = [(s, m) for s in sizes for m in methods if med(m, s, "segment") is not None]
    if seg:
        print("\n| size | method | segment s | network s | watershed s | watershed share | objects |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for s, m in seg:
            total, post = med(m, s, "segment"), med(m, s, "segment", "post_s")
            print(f"| {s} | {m} | {total:.2f} | {med(m, s, 'segment', 'network_s'):.2f} | {post:.2f} | "
                  f"{post / total:.0%} | {int(med(m, s, 'segment', 'objects'))} |")


if __name__ == "__main__":
    main()
