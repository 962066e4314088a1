"""``napari-unet batch``: a folder of images, on this machine or a dask cluster.

Exit codes: 0 all files done or skipped, 1 some files failed (each listed),
2 bad arguments, model or output folder.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..files.fileio import check_fits
from ..files.outputs import output_paths, output_stems
from ..inference.predict import Predictor
from ..models.modelio import load_model
from ..progress import Stage, run_to_end
from ..scaleout.batch import batch_iter
from ..scaleout.distributed import close_client, make_client
from ..scaleout.large import segment_file_iter
from ..scaleout.route import route
from ..training.config import positive_int
from .cli_options import add_command, add_predict_options, predict_options


def _predictor(args):
    options = predict_options(args)         # checked before the model loads
    return Predictor(load_model(args.model), options)


def cmd_batch(args) -> int:
    outputs = ["labels"] + (["prob"] if args.prob else []) + ([] if args.no_csv else ["csv"])
    pred = _predictor(args)
    client = None
    if args.scheduler:
        client = make_client(args.scheduler, args.workers)
    gen = batch_iter(pred, args.input, args.output, pattern=args.pattern, outputs=outputs,
                     resume=not args.no_resume, zarr=args.zarr, client=client, block=args.block,
                     ome_labels=not args.no_ome_labels)
    bar = tqdm(desc="batch", unit="file", file=sys.stderr, dynamic_ncols=True)
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                report = stop.value
                break
            bar.total = p.total
            if p.stage == Stage.BATCH:
                bar.n = p.done
                line = f"{p.info.file}: {p.info.status}"
                if p.info.status == "failed":
                    line += f": {p.info.error}"
                bar.write(line, file=sys.stdout)
            elif p.info:
                bar.set_postfix_str(f"{p.info.file} {p.info.stage} {100 * p.info.fraction:.0f}%")
            bar.refresh()
    finally:
        bar.close()
        gen.close()
        if client is not None:
            close_client(client)
    done, skipped, failed = len(report.done), len(report.skipped), len(report.failed)
    print(f"{done} done, {skipped} skipped (up to date), {failed} failed -> {args.output}")
    if report.flagged:
        print("results that look implausible (check the nucleus size and stain):", file=sys.stderr)
        for name, msg in report.flagged:
            print(f"  {name}: {msg}", file=sys.stderr)
    if failed:
        print("failed files:", file=sys.stderr)
        for name, msg in report.failed:
            print(f"  {name}: {msg}", file=sys.stderr)
    return 1 if failed else 0


def predict_large(pred, image, out: Path, args, stem: str | None = None) -> bool:
    """``napari-unet predict`` on an image larger than memory (a LazyImage,
    :func:`~unet_core.files.lazyio.open_image`): block by block, written as it goes, to
    ``<stem>_labels`` (``stem``: the input's output stem, distinct among the inputs of
    one run; see :func:`~unet_core.files.outputs.output_stems`); returns False for images
    that fit (the caller reads them whole, :func:`read_whole`)."""
    way = route(image, getattr(args, "zarr", False))
    if not way.blocks:
        return False
    path = image.path
    stem = stem or output_stems([path])[0][path]
    wanted = ("labels", "prob") if getattr(args, "prob", False) else ("labels",)
    outputs = output_paths(stem, out, wanted, way.zarr)
    result = run_to_end(segment_file_iter(pred, image, outputs))
    print(f"{path.name}: {result['objects']} objects -> {outputs['labels']}")
    return True


def read_whole(image):
    """The pixels of an opened image (a LazyImage) that fits in memory, as numpy; its
    shape is checked by :func:`~unet_core.files.inputs.check_image_size` first."""
    if isinstance(image.data, np.ndarray):
        return image.data
    check_fits(image.path, image.shape, image.nbytes)
    return np.asarray(image.data[...])


def add_commands(sub) -> None:
    """Add ``batch`` to the ``napari-unet`` sub-commands."""
    b = add_command(
        sub, "batch", cmd_batch, "segment every image of a folder (resumable, CSV, dask cluster)",
        "Segment every image of INDIR into OUTDIR: <stem>_labels.tif (or .zarr for images larger "
        "than memory), <stem>_objects.csv per-object measurements, and a status file. A re-run "
        "skips files already done with the same content, model and settings. Exit code 1 when "
        "some files failed.")
    b.add_argument("input", metavar="INDIR", help="folder of images (TIFF, PNG, JPEG, BMP, .zarr)")
    b.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    b.add_argument("--pattern", help="glob of the inputs, e.g. '*.tif' or '**/*.png' "
                                     "(default: every image file and .zarr folder)")
    add_predict_options(b)
    b.add_argument("--prob", action="store_true", help="also write probabilities")
    b.add_argument("--no-csv", action="store_true", help="do not measure objects")
    b.add_argument("--zarr", action="store_true",
                   help="write large images' outputs as zarr stores at any size")
    b.add_argument("--no-resume", action="store_true", help="redo files already done")
    b.add_argument("--no-ome-labels", action="store_true",
                   help="do not write the labels of OME-Zarr inputs into their own labels/nuclei "
                        "(OME-NGFF label image, as OME-Zarr viewers expect)")
    b.add_argument("--block", type=int, help="block side in px for images larger than memory "
                                             "(default 2048; smaller blocks use less memory)")
    b.add_argument("--scheduler", metavar="local|ADDRESS",
                   help="run on dask.distributed: 'local' starts a LocalCluster, or the address "
                        "of a running scheduler (tcp://host:8786)")
    b.add_argument("--workers", type=positive_int,
                   help="worker processes of --scheduler local (default 2)")
