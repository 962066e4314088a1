"""Two source trees side by side: the same commands, their time and their outputs.

    python benchmarks/bench_trees.py OLD_TREE NEW_TREE [--reps 3] [--jobs A,B] [--json OUT.json]

For a change that should alter neither speed nor results (a restructuring), each
round runs, for tree A then tree B (alternating, so a slow spell of a shared
machine hits both), the ``napari-unet`` command from that tree's sources
(``PYTHONPATH=<tree>/src:<tree>``):

- ``start``: ``napari-unet --help``, what starting the command costs (imports);
- ``predict``: a 2048 px mosaic of the real DSB2018 validation image (the default
  backend and precision, ``--diameter none``) and, again, on PyTorch f32;
- ``batch``: a folder holding that image and a 3072 px one (above the whole-image
  size, so it goes block by block with ``--block 1024``), labels and CSVs.

Times are wall-clock seconds of the whole command (process start included);
medians over the rounds and B / A.  Outputs: the SHA-256 of every file written
(labels TIFFs, zarr chunks, CSVs) must be the same for A and B in every round.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from realdata import dsb2018_sample


def mosaic(tile: np.ndarray, size: int) -> np.ndarray:
    reps = (size // tile.shape[0] + 1, size // tile.shape[1] + 1)
    return np.tile(tile, reps)[:size, :size]


def digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every output file (status files with times left out)."""
    out = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and not f.name.startswith(".") and "status" not in f.name:
            out[str(f.relative_to(folder))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def run(tree: Path, args: list[str], env_extra: dict[str, str]) -> float:
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}:{tree}", **env_extra)
    # the command's module: unet_core/commands/cli.py in a tree with sub-packages,
    # unet_core/cli.py in one without
    nested = (tree / "src" / "unet_core" / "commands").is_dir()
    module = "unet_core." + ("commands." if nested else "") + "cli"
    code = f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


JOBS = {
    "start (--help)": (["--help"], {}),
    "predict default": (["predict", "{small}", "-o", "{out}", "--diameter", "none"], {}),
    "predict torch f32": (
        [
            "predict",
            "{small}",
            "-o",
            "{out}",
            "--diameter",
            "none",
            "--backend",
            "torch",
            "--precision",
            "f32",
        ],
        {},
    ),
    "batch (whole + block-wise)": (
        ["batch", "{folder}", "-o", "{out}", "--diameter", "none", "--block", "1024"],
        {},
    ),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--jobs", default=",".join(JOBS),
                        help=f"comma-separated, of: {', '.join(JOBS)}")
    args = parser.parse_args(argv)
    jobs = {name: JOBS[name] for name in args.jobs.split(",")}
    image, _ = dsb2018_sample()
    work = Path(tempfile.mkdtemp(prefix="bench_trees_"))
    folder = work / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "small.tif", mosaic(image, 2048))
    tifffile.imwrite(folder / "large.tif", mosaic(image, 3072), tile=(512, 512))
    names = {"small": str(folder / "small.tif"), "folder": str(folder)}
    times = {job: {"a": [], "b": []} for job in jobs}
    same = dict.fromkeys(jobs, True)
    for rep in range(args.reps):
        for job, (cmd, env) in jobs.items():
            digests = {}
            for side in ("a", "b"):
                out = work / f"out_{side}"
                shutil.rmtree(out, ignore_errors=True)
                filled = [c.format(out=out, **names) for c in cmd]
                times[job][side].append(run(getattr(args, side), filled, env))
                digests[side] = digest(out)
            same[job] &= digests["a"] == digests["b"] and (bool(digests["a"]) or "-o" not in cmd)
            print(
                f"round {rep + 1} {job}: A {times[job]['a'][-1]:.2f} s, "
                f"B {times[job]['b'][-1]:.2f} s, outputs identical: {digests['a'] == digests['b']}"
                f" ({len(digests['a'])} files)",
                flush=True,
            )
    result = {
        "a": str(args.a),
        "b": str(args.b),
        "reps": args.reps,
        "load_average": os.getloadavg(),
        "jobs": {},
    }
    print(f"\n{'job':30s} {'A s':>8s} {'B s':>8s} {'B/A':>6s}  identical")
    for job in jobs:
        a, b = (statistics.median(times[job][s]) for s in ("a", "b"))
        result["jobs"][job] = {
            "a_s": times[job]["a"],
            "b_s": times[job]["b"],
            "median_a_s": a,
            "median_b_s": b,
            "ratio": b / a,
            "outputs_identical": same[job],
        }
        print(f"{job:30s} {a:8.2f} {b:8.2f} {b / a:6.3f}  {same[job]}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
