"""Throughput of ``batch`` on a dask LocalCluster: 1 worker vs 2 workers x 1 thread.

Eight synthetic images (``--size`` px) segmented with the bundled model through
:func:`unet_core.scaleout.batch.batch_iter` on a LocalCluster of 1 worker, then of 2 workers
(each with one torch thread), cluster start-up and each worker's model loading
excluded (``--cold`` includes the loading); files per second and the
speed-up.  A 2-core machine can give at most 2x, less when other work shares it.

    python benchmarks/bench_distributed.py --files 8 --size 512

Results go to benchmarks/results/distributed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "distributed.json"


def _warm_worker(spec, size):
    """Load the model and compile the backend for every window shape a file of
    ``size`` px asks for (one segment of another synthetic image)."""
    from unet_core.data.synthetic import SAMPLE_PARAMS, synthetic_nuclei
    from unet_core.scaleout.distributed import worker_predictor

    image = synthetic_nuclei((size, size), seed=1, dtype="uint16", **SAMPLE_PARAMS)[0]
    worker_predictor(spec).segment(image)


def main(argv=None) -> int:
    import tifffile

    from unet_core import Predictor, load_model, run_to_end
    from unet_core.data.synthetic import SAMPLE_PARAMS, synthetic_nuclei
    from unet_core.scaleout.batch import batch_iter
    from unet_core.scaleout.distributed import close_client, make_client, predictor_spec

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--model", default="nuclei")
    ap.add_argument("--cold", dest="warm", action="store_false",
                    help="time the workers' model loading too (default: warm them first)")
    args = ap.parse_args(argv)
    pred = Predictor(load_model(args.model), device="cpu")
    row = {"files": args.files, "size": args.size, "model": args.model, "warm": args.warm,
           "cpu_count": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for k in range(args.files):
            image = synthetic_nuclei((args.size, args.size), seed=300 + k, dtype="uint16",
                                     **SAMPLE_PARAMS)[0]
            tifffile.imwrite(src / f"img{k}.tif", image)
        for workers in (1, 2):
            client = make_client("local", workers=workers)
            client.run(lambda: __import__("torch").set_num_threads(1))
            if args.warm:
                # each worker loads the model and readies its backend once, as a long batch would
                t0 = time.perf_counter()
                client.run(_warm_worker, predictor_spec(pred), args.size)
                row[f"warm_seconds_{workers}w"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            report = run_to_end(batch_iter(pred, src, Path(tmp) / f"out{workers}", client=client))
            row[f"seconds_{workers}w"] = round(time.perf_counter() - t0, 1)
            row[f"files_per_s_{workers}w"] = round(len(report.done) / row[f"seconds_{workers}w"], 3)
            close_client(client)
    row["speedup"] = round(row["seconds_1w"] / row["seconds_2w"], 2)
    row["load_after"] = round(os.getloadavg()[0], 2)
    row["date"] = time.strftime("%Y-%m-%d %H:%M")
    print(json.dumps(row))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(results + [row], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
