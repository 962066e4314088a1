"""The ``napari-unet finetune`` and ``napari-unet train`` commands.

Exit codes: 0 success, 1 trained but some examples could not be read (each
reported), 2 bad arguments, model or data (nothing trained).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from ..data.synthetic import synthetic_dataset
from ..errors import InputError
from ..models.modelio import DEFAULT_MODEL
from ..progress import Stage, run_to_end
from ..training.config import FinetuneConfig, TrainConfig, positive_int
from ..training.dataset import Example, TrainingSet, examples_from_folders
from ..training.finetune import finetune_iter
from ..training.pairs import load_pairs
from ..training.scratch import parse_config, train_from_scratch_iter
from .cli_options import add_command, add_config_options, add_device_option


def _drive(gen, steps: int, quiet: bool = False):
    """Run a training generator with a tqdm bar on stderr; return its value."""
    with tqdm(total=steps, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True,
              disable=quiet or None) as bar:
        def show(p):
            if p.stage == Stage.TRAIN:
                bar.n = p.done
                info = p.info
                post = {"loss": f"{info.loss:.4f}", "lr": f"{info.lr:.2g}"}
                if info.val:
                    post["val_dice"] = f"{info.val['dice']:.3f}"
                    post["val_ap50"] = f"{info.val['ap50']:.3f}"
                bar.set_postfix(post, refresh=False)
                bar.refresh()
            else:
                bar.set_description(f"{p.stage} {p.done}/{p.total}" if p.done < p.total else str(Stage.TRAIN))

        return run_to_end(gen, show)


def _load_examples(args):
    """(examples, problems) from --training-set or --images/--labels[/--regions]."""
    if getattr(args, "pairs", None):
        spec = getattr(args, "pairs_spec", None) or {}
        return load_pairs(args.pairs, groups=args.groups or spec.get("groups"),
                          exclude_groups=args.exclude_groups or spec.get("exclude_groups"),
                          stains=spec.get("stains"),
                          per_nucleus_only=args.per_nucleus_only or spec.get("per_nucleus_only", False),
                          names=spec.get("names")), []
    if getattr(args, "training_set", None):
        folder = Path(args.training_set)
        if not folder.is_dir():
            raise InputError(f"The training set {folder} is not a folder.")
        return TrainingSet(folder).load()
    if not (args.images and args.labels):
        raise InputError("Give --images DIR and --labels DIR (or --training-set DIR).")
    for d in (args.images, args.labels, args.regions):
        if d is not None and not Path(d).is_dir():
            raise InputError(f"{d} is not a folder.")
    return examples_from_folders(args.images, args.labels, args.regions)


def _report_problems(problems) -> None:
    for name, message in problems:
        print(f"{name}: SKIPPED: {message}", file=sys.stderr)


def _fmt(metrics: dict) -> str:
    if not metrics:
        return "n/a"
    return f"dice {metrics['dice']:.3f}  AP50 {metrics['ap50']:.3f}  mAP {metrics['map']:.3f}"


def _print_saved(result) -> None:
    t = result.train
    loss = "n/a" if t.loss is None else f"{t.loss:.4f}"
    print(f"model saved to {result.model_dir} ({t.step} steps, stopped by {t.stopped_by}, "
          f"final loss {loss})")


def cmd_finetune(args) -> int:
    examples, problems = _load_examples(args)
    _report_problems(problems)
    if not examples:
        print("error: no usable training examples", file=sys.stderr)
        return 2
    config = FinetuneConfig(**{k: getattr(args, k) for k in FinetuneConfig.names()})
    gen = finetune_iter(args.base, examples, args.output, config, resume=args.resume,
                        overwrite=args.overwrite, name=args.name)
    result = _drive(gen, config.steps, args.quiet)
    _print_saved(result)
    if result.held_back_band:
        print("held back: a band at the end of the one example (never trained on)")
    else:
        label = "held-back" if result.held_back else "training (none held back)"
        print(f"{label} examples: {result.card['metrics']['before'].get('n', 0)}")
    print(f"  base ({args.base}): {_fmt(result.before)}")
    print(f"  new:  {_fmt(result.after)}")
    if result.outcome():
        print(f"note: {result.outcome()}")
    return 1 if problems else 0


def cmd_train(args) -> int:
    try:
        config = json.loads(Path(args.config).read_text())
    except OSError as err:
        raise InputError(f"Cannot read the config {args.config}: {err}") from None
    except ValueError as err:
        raise InputError(f"The config {args.config} is not valid JSON: {err}") from None
    data = config.get("data") or {}
    val_examples = None
    if (data.get("pairs") or args.pairs) and not (args.images or args.training_set or args.synthetic):
        # the recipe names its data; --pairs DIR says where that folder is here
        args.pairs = args.pairs or data["pairs"]
        args.pairs_spec = data
        val_groups = getattr(args, "val_groups", None) or data.get("val_groups")
        if val_groups:
            val_examples = load_pairs(args.pairs, groups=val_groups,
                                      per_nucleus_only=data.get("per_nucleus_only", False))
    if args.synthetic:
        if args.images or args.labels or getattr(args, "training_set", None) or args.pairs:
            raise InputError("Give either --synthetic N or training data, not both.")
        pairs = synthetic_dataset(args.synthetic, shape=(args.synthetic_size,) * 2, seed=args.seed or 0,
                                  workers=os.cpu_count() or 1)
        examples = [Example(f"synthetic-{i}", img, lab, lab >= 0, {"source": "synthetic"})
                    for i, (img, lab) in enumerate(pairs)]
        problems = []
    else:
        examples, problems = _load_examples(args)
        _report_problems(problems)
    if not examples:
        print("error: no usable training examples", file=sys.stderr)
        return 2
    overrides = {"steps": args.steps, "max_seconds": args.max_seconds, "seed": args.seed}
    steps = args.steps or TrainConfig.from_dict(parse_config(config)[1]).steps
    gen = train_from_scratch_iter(config, examples, args.output, val_examples=val_examples,
                                  resume=args.resume,
                                  overwrite=args.overwrite, device=args.device, init=args.init,
                                  **overrides)
    result = _drive(gen, steps, args.quiet)
    _print_saved(result)
    print(f"validation: {_fmt(result.val)}")
    return 1 if problems else 0


def _data_args(q) -> None:
    q.add_argument("--images", metavar="DIR", help="folder of training images")
    q.add_argument("--labels", metavar="DIR", help="folder of instance label images (paired by stem; "
                                                  "a '_labels' suffix is ignored)")
    q.add_argument("--regions", metavar="DIR", help="folder of reviewed-region masks (nonzero = "
                                                   "reviewed; default: every pixel)")
    q.add_argument("--training-set", metavar="DIR", help="a napari-unet training-set folder instead "
                                                        "of --images/--labels")
    q.add_argument("--pairs", metavar="DIR", help="a folder of annotated pairs NAME_img.tif + "
                   "NAME_mask.tif (with an optional MANIFEST.csv naming each pair's modality and "
                   "source data set) instead of --images/--labels")
    q.add_argument("--groups", nargs="+", metavar="SOURCE",
                   help="with --pairs: only these source data sets (names or glob patterns)")
    q.add_argument("--exclude-groups", nargs="+", metavar="SOURCE",
                   help="with --pairs: leave out these source data sets (held back)")
    q.add_argument("--per-nucleus-only", action="store_true",
                   help="with --pairs: leave out masks made from binary masks (touching nuclei "
                        "merged)")
    q.add_argument("-o", "--output", required=True, metavar="MODELDIR", help="new model folder")
    add_device_option(q)
    q.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoint in MODELDIR")
    q.add_argument("--overwrite", action="store_true", help="replace a finished model in MODELDIR")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_commands(subparsers) -> None:
    """Add the ``finetune`` and ``train`` commands to the ``napari-unet`` parser."""
    f = add_command(subparsers, "finetune", cmd_finetune, "fine-tune a model on corrected images",
                    "Fine-tune a model on images with corrected instance labels; writes a new "
                    "model folder and compares the base and new model on held-back examples. "
                    "The base model is never changed.")
    _data_args(f)
    f.add_argument("--base", default=DEFAULT_MODEL, metavar="NAME|PATH",
                   help=f"model to start from (default {DEFAULT_MODEL})")
    add_config_options(f, FinetuneConfig, [k for k in FinetuneConfig.names() if k != "device"])
    f.add_argument("--name", help="model name for the card (default: the folder name)")

    t = add_command(subparsers, "train", cmd_train, "train a new model from a config",
                    "Train a U-Net from scratch. CONFIG.json holds the architecture "
                    '({"model": {"depth": 4, "base_filters": 32, ...}}) and optionally training '
                    'parameters ({"training": {"steps": 2000, "lr": 0.001, "crop": 256, ...}}).')
    t.add_argument("--config", required=True, metavar="CONFIG.json")
    _data_args(t)
    t.add_argument("--val-groups", nargs="+", metavar="SOURCE",
                   help="with --pairs: validate on these source data sets (typically the ones "
                        "--exclude-groups holds back)")
    t.add_argument("--synthetic", type=positive_int, metavar="N",
                   help="train on N synthetic nuclei images instead of folders")
    t.add_argument("--synthetic-size", type=positive_int, default=256, metavar="PX",
                   help="side of the synthetic images (default 256)")
    add_config_options(t, TrainConfig, ("steps", "seed", "max_seconds"), overrides=True)
    t.add_argument("--init", metavar="NAME|PATH",
                   help="start from this model's weights (same architecture) instead of random ones")
