"""Throughput of the bundled network on a CUDA GPU: predict and segment a 16384 px image.

    python benchmarks/bench_gpu.py [--size 16384] [--device cuda] [--json FILE]

- **predict**: ``Predictor.predict`` of a uint16 image held in memory, in MP/s, in f32
  and in bf16 (autocast), channels_last (always on CUDA), with the prefetch thread that
  reads and normalises the next tiles while the network runs (the default) and without
  it; the copies to and from the GPU go through page-locked memory.
- **segment**: instance labels block by block from a zarr store into a zarr store
  (``unet_core.scaleout.large.segment_file_iter``, 2048 px blocks), with the blocks' watersheds
  in 1 thread and in one thread per CPU core (up to 16): the threads take turns on the
  network and run their watersheds side by side, so the GPU does not wait for one core.

- **instances**: the instance step of one 4096 px image's probabilities on the device
  (``unet_core.segmentation.instances_torch``, what ``segment`` uses on CUDA) against the CPU's
  (``unet_core.segmentation.instances.probs_to_labels``), with the agreement of the two (AP50 of
  one against the other, and the share of identical pixels).

Every figure is one timed run after a warm-up on the same shapes; MP = 2^20 px.  Runs
on the CPU too (``--device cpu --size 2048``) to check the script.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_memory import patches, write_zarr  # noqa: E402

import unet_core.inference.predict as predict_mod  # noqa: E402
from unet_core import Predictor, load_model, run_to_end  # noqa: E402
from unet_core.files.lazyio import open_image  # noqa: E402
from unet_core.inference.window import block_predictor  # noqa: E402
from unet_core.scaleout.large import segment_file_iter  # noqa: E402


def mosaic(size: int, tiles) -> np.ndarray:
    out = np.empty((size, size), np.uint16)
    n = tiles[0].shape[0]
    for i in range(0, size, n):
        for j in range(0, size, n):
            t = tiles[((i // n) * 7 + (j // n) * 3) % len(tiles)]
            out[i:i + n, j:j + n] = t[: size - i, : size - j]
    return out


def serial(fn, items):
    for item in items:
        yield item, fn(item)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def predictor(model, device, precision):
    """A predictor warmed up on the tile shapes of a whole image and of a block."""
    pred = Predictor(model, device=device, precision=precision, diameter=None,
                     stain="fluorescence")
    warm = np.zeros((2400, 2400), np.uint16)
    warm[::37, ::41] = 1000
    pred.predict(warm)
    block_predictor(pred).predict(warm)
    return pred


def time_predict(pred, image, prefetch=True):
    original = predict_mod.prefetched
    if not prefetch:
        predict_mod.prefetched = serial
    try:
        sync(pred.device)
        t = time.perf_counter()
        pred.predict(image)
        sync(pred.device)
        took = time.perf_counter() - t
    finally:
        predict_mod.prefetched = original
    mp = image.size / 2**20
    return {"precision": pred.precision, "backend": pred.backend, "prefetch": prefetch,
            "tile": pred.tile, "seconds": round(took, 2), "mp_per_s": round(mp / took, 2)}


def time_segment(pred, src: Path, work: Path, threads: int):
    image = open_image(src)
    out = work / f"labels_{image.shape[0]}_{threads}.zarr"
    t = time.perf_counter()
    res = run_to_end(segment_file_iter(pred, image, {"labels": out}, threads=threads))
    took = time.perf_counter() - t
    mp = image.shape[0] * image.shape[1] / 2**20
    return {"size": image.shape[0], "threads": threads, "precision": pred.precision,
            "objects": res["objects"], "seconds": round(took, 2), "mp_per_s": round(mp / took, 3)}


def time_instances(pred, image) -> dict:
    """The instance step on the device against the CPU's, on the same probabilities."""
    from unet_core.segmentation import instances, instances_torch
    from unet_core.segmentation.metrics import evaluate

    prob = pred.predict(image)
    params = pred.instance_params
    on_device = torch.from_numpy(prob).to(pred.device)
    instances_torch.probs_to_labels(on_device[:, :512, :512], **params)     # warm-up
    sync(pred.device)
    t = time.perf_counter()
    labels = instances_torch.probs_to_labels(on_device, **params)
    sync(pred.device)
    took = time.perf_counter() - t
    t = time.perf_counter()
    expected = instances.probs_to_labels(prob, **params)
    cpu_took = time.perf_counter() - t
    mp = image.size / 2**20
    return {"size": image.shape[0], "device_s": round(took, 3), "cpu_s": round(cpu_took, 3),
            "device_mp_per_s": round(mp / took, 2), "cpu_mp_per_s": round(mp / cpu_took, 2),
            "objects": [int(labels.max()), int(expected.max())],
            "ap50_device_vs_cpu": round(evaluate(labels, expected)["ap50"], 4),
            "identical_pixels": float(np.mean(labels == expected))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--small", type=int, default=6144,
                    help="side of the image for the 1-thread vs N-thread segment comparison")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="nuclei")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    model = load_model(args.model)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
              platform.processor() or "cpu", "cpus": os.cpu_count(), "torch": torch.__version__,
              "size": args.size, "predict": [], "segment": []}

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))

    tiles = patches()
    image = mosaic(args.size, tiles)
    precisions = ["f32", "bf16"] if device.type == "cuda" else ["f32"]
    preds = {p: predictor(model, args.device, p) for p in precisions}
    for precision in precisions:
        for prefetch in (True, False):
            r = time_predict(preds[precision], image, prefetch)
            result["predict"].append(r)
            print("predict", r, flush=True)
            save()
    r = time_instances(preds[precisions[0]], image[:4096, :4096])
    result["instances"] = r
    print("instances", r, flush=True)
    save()
    if device.type == "cuda":
        result["predict_peak_gpu_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del image
    many = min(16, os.cpu_count() or 1)
    fast = "bf16" if device.type == "cuda" else "f32"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        small, big = work / "small.zarr", work / "big.zarr"
        write_zarr(small, args.small, tiles)
        for threads in (1, many):
            r = time_segment(preds[fast], small, work, threads)
            result["segment"].append(r)
            print("segment", r, flush=True)
            save()
        write_zarr(big, args.size, tiles)
        r = time_segment(preds[fast], big, work, many)
        result["segment"].append(r)
        print("segment", r, flush=True)
    save()


if __name__ == "__main__":
    main()
