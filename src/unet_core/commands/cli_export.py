"""``napari-unet export MODEL OUT.zip``: a model as a bioimage.io package."""
from __future__ import annotations

import sys

from ..errors import InputError
from ..models.export_bioimageio import DEFAULT_AUTHOR, INSTALL_HINT, export_bioimageio
from .cli_options import add_command


def cmd_export(args) -> int:
    author = DEFAULT_AUTHOR if args.author is None else args.author.strip()
    if not author:
        raise InputError("--author is empty: give a name, e.g. --author \"Ada Lovelace\".")
    result = export_bioimageio(args.model, args.output, licence=args.licence, test=not args.no_test,
                               author=author,
                               report=lambda line: print(f"{line} ...", file=sys.stderr))
    test = "skipped" if result.test is None else result.test
    print(f"wrote {result.path} (weights: {', '.join(result.weights)}; licence {result.licence}; "
          f"bioimageio.spec: {result.validation}; bioimageio.core test: {test})")
    return 0


def add_commands(sub) -> None:
    """Add ``export`` to the ``napari-unet`` sub-commands."""
    x = add_command(
        sub, "export", cmd_export,
        "write a model as a bioimage.io package (QuPath, deepImageJ, ilastik)",
        "Write a model as a bioimage.io model package (.zip): TorchScript, PyTorch "
        "and ONNX weights, a test image and its output, a cover, the training data "
        "and licences.  The package is validated with bioimageio.spec and test-run "
        f"with bioimageio.core before it is kept (install them: {INSTALL_HINT}).")
    x.add_argument("model", metavar="MODEL", help="bundled/user model name or folder")
    x.add_argument("output", metavar="OUT.zip", help="the package to write")
    x.add_argument("--licence", help="SPDX licence id of the weights (default: from the training "
                                     "data, e.g. CC-BY-NC-SA-4.0 when MoNuSeg is among them)")
    x.add_argument("--author", metavar="NAME",
                   help="who made the weights, the package's author (default: the "
                        "package's developers; give your name for a model you fine-tuned)")
    x.add_argument("--no-test", action="store_true",
                   help="validate only; skip bioimageio.core's test run")
