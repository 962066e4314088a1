"""Peak memory of ``napari-unet predict`` and ``batch`` as the image grows.

Writes a uint16 test image of N x N px (a mosaic of 1024 px synthetic nuclei fields)
as a tiled TIFF and as a chunked zarr, never holding it whole, then runs each command
in a fresh process under ``/usr/bin/time -v`` and reads its "Maximum resident set
size" (the whole process: Python, torch, the model, the blocks).

    python benchmarks/bench_memory.py --sizes 4096 16384 --runs predict-tif batch-zarr
    python benchmarks/bench_memory.py --sizes 4096 --model nuclei

``--model tiny`` uses a depth-2, 4-filter U-Net (saved to a temporary folder), so the
figure is the pipeline's own memory (reading, blocks, watershed, merge, writing,
measurements) at a small CPU cost; the network's share is bounded by the block's tile
cap (:data:`unet_core.inference.window.MAX_TILE`) and does not grow with the image.
Results go to benchmarks/results/memory.json (appended by size and run).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "memory.json"
PATCH = 1024


def patches(n: int = 6):
    from unet_core.data.synthetic import SAMPLE_PARAMS, synthetic_nuclei

    return [synthetic_nuclei((PATCH, PATCH), seed=100 + k, dtype="uint16", **SAMPLE_PARAMS)[0]
            for k in range(n)]


def _patch_at(tiles, i, j):
    return tiles[(i * 7 + j * 3) % len(tiles)]


def write_tiff(path: Path, size: int, tiles) -> None:
    import tifffile

    def gen():
        for i in range(size // 512):
            for j in range(size // 512):
                p = _patch_at(tiles, i * 512 // PATCH, j * 512 // PATCH)
                y, x = (i * 512) % PATCH, (j * 512) % PATCH
                yield p[y:y + 512, x:x + 512]

    tifffile.imwrite(path, gen(), shape=(size, size), dtype=np.uint16, tile=(512, 512),
                     compression="zlib", bigtiff=size * size * 2 > 3 << 30)


def write_zarr(path: Path, size: int, tiles) -> None:
    import zarr

    arr = zarr.create_array(str(path), shape=(size, size), dtype=np.uint16, chunks=(1024, 1024))
    for i in range(size // PATCH):
        arr[i * PATCH:(i + 1) * PATCH] = np.concatenate(
            [_patch_at(tiles, i, j) for j in range(size // PATCH)], axis=1)


def tiny_model(folder: Path) -> Path:
    """A depth-2, 4-filter U-Net with hand-set weights: foreground = a smoothed
    threshold of the normalised image, no boundary, centre 0.5.  The pipeline then sees
    realistic numbers of nuclei (thousands per MP) at a tiny network cost."""
    import torch

    from unet_core import UNet, UNetConfig, make_card, save_model

    cfg = UNetConfig(depth=2, base_filters=4, out_channels=3)
    net = UNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        box = torch.full((3, 3), 1 / 9)
        net.down[0][0].weight[0, 0] = box
        net.down[0][2].weight[0, 0] = box
        net.up_conv[-1][0].weight[0, 4] = box     # the skip's channel 0 (after the up path)
        net.up_conv[-1][2].weight[0, 0] = box
        net.head.weight[0, 0, 0, 0] = 12.0
        net.head.bias[:] = torch.tensor([-4.0, -6.0, 0.0])
    card = make_card(cfg, "threshold", instances={"boundary_threshold": 0.5})
    return save_model(net, folder / "tiny", card=card)


def measure(cmd: list[str]) -> dict:
    t0 = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode not in (0,):
        print(run.stdout[-2000:], run.stderr[-4000:], file=sys.stderr)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    return {"rc": run.returncode, "peak_rss_gb": round(rss_kb / 2**20, 3), "seconds": round(wall, 1),
            "tail": run.stdout.strip().splitlines()[-1:] if run.stdout.strip() else []}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--runs", nargs="+", default=["predict-tif", "batch-zarr"],
                    choices=["predict-tif", "predict-zarr", "batch-tif", "batch-zarr"])
    ap.add_argument("--model", default="tiny", help="'tiny' or a model name (e.g. nuclei)")
    ap.add_argument("--workdir", help="keep the images here (default: a temporary folder)")
    args = ap.parse_args(argv)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = str(tiny_model(work)) if args.model == "tiny" else args.model
        tiles = patches()
        exe = [sys.executable, "-m", "unet_core.commands.cli"]
        for size in args.sizes:
            for run in args.runs:
                cmd_name, fmt = run.split("-")
                src = work / f"in{size}_{fmt}" / f"mosaic{size}.{'tif' if fmt == 'tif' else 'zarr'}"
                if not src.exists():
                    src.parent.mkdir(parents=True, exist_ok=True)
                    (write_tiff if fmt == "tif" else write_zarr)(src, size, tiles)
                out = work / f"out_{size}_{run}"
                if cmd_name == "predict":
                    cmd = exe + ["predict", str(src), "-o", str(out), "--model", model,
                                 "--device", "cpu"]
                else:
                    cmd = exe + ["batch", str(src.parent), "-o", str(out), "--model", model,
                                 "--device", "cpu", "--no-resume"]
                r = measure(cmd)
                row = {"size": size, "run": run, "model": args.model, **r,
                       "date": time.strftime("%Y-%m-%d %H:%M")}
                print(json.dumps(row), flush=True)
                results.append(row)
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
