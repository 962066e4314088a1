"""The ``napari-unet`` command: predict, evaluate and list models without a screen.

Exit codes: 0 success, 1 some inputs failed (each reported), 2 bad arguments or model.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.synthetic import SAMPLE_PARAMS, SAMPLE_SEED, synthetic_nuclei
from ..errors import InputError, UNetError, explain
from ..files.fileio import IMAGE_SUFFIXES, read_image, write_tiff
from ..files.inputs import check_image_size
from ..files.lazyio import open_image
from ..files.outputs import output_stems
from ..inference.backends import describe
from ..inference.predict import Predictor
from ..models.modelio import list_models, load_model, user_model_dir
from ..progress import Stage, run_to_end
from ..scaleout.batch_run import FILE_ERRORS
from ..segmentation.metrics import evaluate
from ..training.config import at_least, positive_int
from . import cli_batch, cli_export, cli_train
from .cli_batch import predict_large, read_whole
from .cli_options import add_command, add_predict_options, predict_options

log = logging.getLogger("napari-unet")

#: Smallest side of a sample image: room for a few nuclei of the model's size.
SAMPLE_MIN_SIZE = 64


def _tqdm(**kw):
    return tqdm(**kw, file=sys.stderr, dynamic_ncols=True)


def _drive(gen, bar):
    """Run a progress generator, moving a tqdm bar; return the generator's value."""
    def show(p):
        if p.stage == Stage.PREDICT:
            bar.total, bar.n = p.total, p.done
            bar.refresh()
        elif p.stage == Stage.COMPILE and p.done:
            info = p.info
            bar.write(f"network on {describe(info.backend, info.precision)}, ready in "
                      f"{info.seconds:.1f} s ({'export + ' if info.exported else ''}compile, once per model)",
                      file=sys.stderr)

    return run_to_end(gen, show)


def output_dir(path) -> Path:
    """The output folder ``path``, made if needed; a clear error if it cannot be one."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"The output {out} is a file, not a folder; give a folder with -o.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"Cannot make the output folder {out}: {err.strerror or err}.") from None
    return out


def cmd_predict(args) -> int:
    options = predict_options(args)         # checked before the model loads
    pred = Predictor(load_model(args.model), options)
    out = output_dir(args.output)
    stems, notes = output_stems(args.images)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    failed = 0
    for path, stem in stems.items():
        written = []
        try:
            lazy = open_image(path)
            check_image_size(lazy.shape)     # before anything is read or segmented
            if predict_large(pred, lazy, out, args, stem):   # images larger than memory
                continue
            image = read_whole(lazy)
            with _tqdm(desc=path.name, unit="batch", leave=False) as bar:
                labels, prob = _drive(pred.segment_iter(image, return_prob=True), bar)
            written.append(write_tiff(out / f"{stem}_labels.tif", labels))
            if args.prob:
                written.append(write_tiff(out / f"{stem}_prob.tif", prob.astype(np.float32)))
            print(f"{path}: {int(labels.max())} objects ({pred.last_settings.describe()}) "
                  f"-> {written[0]}")
            for note in pred.last_settings.notes + [pred.last_warning]:
                if note:
                    print(f"{path}: WARNING: {note}", file=sys.stderr)
        except FILE_ERRORS as err:       # this input only: the others are still done
            failed += 1
            for done in written:      # no half result: labels without their probabilities
                done.unlink(missing_ok=True)
            print(f"{path}: FAILED: {explain(err)}", file=sys.stderr)
    return 1 if failed else 0


def _pairs(labels_dir: Path, truth_dir: Path) -> list[tuple[str, Path, Path]]:
    def stem(p: Path) -> str:
        s = p.stem
        return s[: -len("_labels")] if s.endswith("_labels") else s

    truth = {stem(p): p for p in sorted(truth_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    pred = {stem(p): p for p in sorted(labels_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    return [(k, pred.get(k), truth[k]) for k in sorted(truth)]


def cmd_evaluate(args) -> int:
    labels_dir, truth_dir = Path(args.labels), Path(args.truth)
    for d in (labels_dir, truth_dir):
        if not d.is_dir():
            print(f"error: {d} is not a folder", file=sys.stderr)
            return 2
    rows, failed = [], 0
    for name, p, t in _pairs(labels_dir, truth_dir):
        try:
            if p is None:
                raise UNetError(f"no predicted labels for {name} in {labels_dir}")
            pl, tl = read_image(p), read_image(t)
            if pl.shape != tl.shape:
                raise UNetError(f"shape {pl.shape} of {p.name} differs from {tl.shape} of {t.name}")
            rows.append({"image": name, **evaluate(pl, tl)})
        except (UNetError, MemoryError, OSError) as err:     # this pair only: the others go on
            failed += 1
            print(f"{name}: FAILED: {explain(err)}", file=sys.stderr)
    if not rows:
        print("error: no image pairs to evaluate (names pair by stem, '_labels' ignored)", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'image':30s} {'dice':>6s} {'AP50':>6s} {'mAP':>6s} {'true':>5s} {'pred':>5s}")
        for r in rows:
            print(f"{r['image'][:30]:30s} {r['dice']:6.3f} {r['ap50']:6.3f} {r['map']:6.3f} "
                  f"{r['n_true']:5d} {r['n_pred']:5d}")
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("dice", "ap50", "map")}
        print(f"{'overall (mean of images)':30s} {mean['dice']:6.3f} {mean['ap50']:6.3f} {mean['map']:6.3f}")
    return 1 if failed else 0


def cmd_models(args) -> int:
    models = list_models()
    for m in models:
        print(f"{m['name']:20s} {m['source']:8s} {m['path']}  {m['description']}")
    if not models:
        print("no models installed")
    print(f"(user models go in {user_model_dir()})")
    return 0


def cmd_sample(args) -> int:
    out = output_dir(args.output)
    for i in range(args.count):
        image, labels = synthetic_nuclei((args.size, args.size), seed=SAMPLE_SEED + i, dtype="uint16",
                                         **SAMPLE_PARAMS)
        stem = "nuclei" if args.count == 1 else f"nuclei_{i + 1:02d}"
        write_tiff(out / f"{stem}.tif", image)
        write_tiff(out / "truth" / f"{stem}.tif", labels)
        print(f"{out / (stem + '.tif')}: {int(labels.max())} synthetic nuclei (truth in {out / 'truth'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="napari-unet", description="Segment nuclei with an exactly "
                                "tiled U-Net, fine-tune it, and batch folders, without a screen.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    q = add_command(sub, "predict", cmd_predict, "segment images into <stem>_labels.tif",
                    "Segment images; writes OUTDIR/<stem>_labels.tif (uint32 instance ids) and, "
                    "with --prob, <stem>_prob.tif (float32 C x H x W).")
    q.add_argument("images", nargs="+", metavar="IMAGE", help="TIFF/PNG/JPEG images")
    q.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    add_predict_options(q)
    q.add_argument("--prob", action="store_true", help="also write probabilities")
    q.add_argument("--zarr", action="store_true", help="write large images' outputs as zarr stores")

    e = add_command(sub, "evaluate", cmd_evaluate, "compare label images with ground truth",
                    "Dice, AP50 and mAP(0.5:0.95) per image and overall; files pair by stem (a "
                    "'_labels' suffix is ignored).")
    e.add_argument("--labels", required=True, metavar="DIR", help="predicted label images")
    e.add_argument("--truth", required=True, metavar="DIR", help="ground-truth label images")
    e.add_argument("--json", action="store_true", help="print JSON rows instead of a table")

    add_command(sub, "models", cmd_models, "list installed models", "List bundled and user models.")

    s = add_command(sub, "sample", cmd_sample, "write synthetic nuclei images to try things on",
                    "Write synthetic fluorescence nuclei images (uint16 TIFF) and their true "
                    "instance labels (in DIR/truth) to try predict/evaluate on.")
    s.add_argument("-o", "--output", required=True, metavar="DIR")
    s.add_argument("--size", type=at_least(SAMPLE_MIN_SIZE), default=512,
                   help=f"image side in px, at least {SAMPLE_MIN_SIZE} (default 512)")
    s.add_argument("--count", type=positive_int, default=1, help="number of images (default 1)")
    for module in (cli_train, cli_batch, cli_export):
        module.add_commands(sub)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings (e.g. a backend falling back to torch) as one line for the user."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except UNetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (MemoryError, OSError) as err:   # the machine, not the arguments: say so, no traceback
        print(f"error: {explain(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
