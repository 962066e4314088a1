"""Speed and peak memory of tiled inference, side by side in one run.

Methods, all on the same depth-4, 32-filter U-Net (channels_last, fp32, CPU) and
the same 2048 x 2048 uint16 image, each timed from the raw image to float32
probabilities (normalization and sigmoid included):

- ``floor``:   one whole-image forward of the network (no padding, no tiling)
- ``default``: ``Predictor(net)``: exact halo from the network, cores sized for the device
- ``tiled1024``: the default with cores of at most 1024 px (2 x 2 tiles), as when memory is short
- ``reflect``: the default with ``border="reflect"`` (96 px of mirrored image beyond the edges)
- ``classic``: ``Predictor(net, preset="classic")``: 128 px cores in 256 px tiles
- ``monai``:   MONAI ``sliding_window_inference`` (roi 256, overlap 0.25, gaussian,
  sw_batch_size 8)

Each measurement runs in a fresh subprocess (so peak RSS is its own), methods are
interleaved in a shuffled order in every round, and medians are reported.

    python benchmarks/bench_tiling.py --size 2048 --reps 5 --json out.json
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time

METHODS = ("floor", "default", "tiled1024", "reflect", "classic", "monai")


def _net():
    import torch

    from unet_core import UNet, UNetConfig

    torch.manual_seed(0)
    return UNet(UNetConfig(depth=4, base_filters=32)).eval()


def _image(size):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.gamma(2.0, 500.0, (size, size)).astype(np.uint16)


def run_one(method: str, size: int, threads: int | None = None) -> dict:
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)
    from unet_core import Predictor
    from unet_core.inference.normalize import normalize

    net, img = _net(), _image(size)
    pred = Predictor(net, device="cpu")  # converts the net to channels_last, as every method uses
    with torch.inference_mode():  # warm-up of the kernels, not timed
        net(torch.zeros(1, 1, 256, 256).contiguous(memory_format=torch.channels_last))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    extra = {}
    t0 = time.perf_counter()
    if method == "floor":
        x = torch.from_numpy(normalize(img[..., None])[..., 0])[None, None]
        with torch.inference_mode():
            out = torch.sigmoid(net(x.contiguous(memory_format=torch.channels_last))).numpy()
    elif method == "default":
        out = pred.predict(img)
        g = pred.grid(img.shape)
        extra = {"tiles": len(g), "core": g.core[0], "halo": g.halo, "overhead": round(g.overhead, 3)}
    elif method in ("reflect", "tiled1024"):
        p = (Predictor(net, device="cpu", border="reflect") if method == "reflect"
             else Predictor(net, device="cpu", tile=1024))
        out = p.predict(img)
        g = p.grid(img.shape)
        extra = {"tiles": len(g), "core": g.core[0], "halo": g.halo, "overhead": round(g.overhead, 3)}
    elif method == "classic":
        p = Predictor(net, device="cpu", preset="classic")
        out = p.predict(img)
        g = p.grid(img.shape)
        extra = {"tiles": len(g), "core": g.core[0], "halo": g.halo, "overhead": round(g.overhead, 3)}
    elif method == "monai":
        from monai.inferers import sliding_window_inference

        x = torch.from_numpy(normalize(img[..., None])[..., 0])[None, None]
        with torch.inference_mode():
            out = torch.sigmoid(sliding_window_inference(
                x, roi_size=(256, 256), sw_batch_size=8, predictor=net, overlap=0.25,
                mode="gaussian")).numpy()
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - t0
    assert np.isfinite(out).all() and out.shape[-2:] == (size, size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "seconds": seconds, "peak_mb": peak / 1024, "delta_mb": (peak - base) / 1024,
            "mp_per_s": size * size / seconds / 1e6, "threads": torch.get_num_threads(), **extra}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", help="write all measurements here")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.size, args.threads)))
        return
    methods = args.methods.split(",")
    rows = []
    rnd = random.Random(0)
    for rep in range(args.reps):
        order = methods[:]
        rnd.shuffle(order)
        for m in order:
            extra = ["--threads", str(args.threads)] if args.threads else []
            out = subprocess.run([sys.executable, __file__, "--one", m, "--size", str(args.size), *extra],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["rep"] = rep
            rows.append(row)
            print(f"rep {rep} {m:8s} {row['seconds']:7.2f} s  peak {row['peak_mb']:7.0f} MB", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": args.size, "reps": args.reps, "threads": args.threads, "rows": rows}, f, indent=1)
    med = {m: {k: statistics.median(r[k] for r in rows if r["method"] == m)
               for k in ("seconds", "peak_mb", "delta_mb", "mp_per_s")} for m in methods}
    floor = med.get("floor", {}).get("seconds")
    print(f"\n{args.size} x {args.size}, medians of {args.reps} runs each\n")
    print("| method | median s | x floor | MP/s | peak RSS MB | peak over baseline MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for m in methods:
        r = med[m]
        ratio = f"{r['seconds'] / floor:.2f}" if floor else "-"
        print(f"| {m} | {r['seconds']:.2f} | {ratio} | {r['mp_per_s']:.2f} | {r['peak_mb']:.0f} | {r['delta_mb']:.0f} |")
    if "monai" in med and "default" in med:
        print(f"\ndefault is {med['monai']['seconds'] / med['default']['seconds']:.2f}x faster than MONAI, "
              f"{med['classic']['seconds'] / med['default']['seconds']:.2f}x faster than classic"
              if "classic" in med else "")


if __name__ == "__main__":
    main()
