"""Export a model as a bioimage.io model package (a .zip) for QuPath, Fiji/deepImageJ,
ilastik and BiaPy.

The package holds the network with its sigmoid as TorchScript, as a PyTorch state dict
with the U-Net's source (and as ONNX where the ``onnx`` package is installed), a raw
test image with the probabilities the weights give for it, a cover image, a README with
the training data and licences, and the original napari-unet model (safetensors and
card).  It is described in the bioimage.io format 0.5 with ``bioimageio.spec`` and, with
``bioimageio.core``, test-run before it is kept.  Both come with the optional extra
``pip install "napari-nuclei-unet[bioimageio]"``.

Validation works offline: the description names no web address (citations are DOIs,
which are checked by form only), so nothing is fetched.
"""
from __future__ import annotations

import importlib.util
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import InputError
from ..progress import ExportStep, Progress, run_to_end
from .export_assets import ARCHITECTURE_CALLABLE, Assets, write_assets
from .modelio import CARD_NAME, WEIGHTS_NAME, Model, load_model

INSTALL_HINT = 'pip install "napari-nuclei-unet[bioimageio]"'
#: Citations of the package: the U-Net, and the annotated data sets of the bundled model.
CITATIONS = (
    ("Ronneberger, Fischer & Brox (2015). U-Net: Convolutional networks for biomedical image "
     "segmentation. MICCAI.", "10.1007/978-3-319-24574-4_28"),
    ("Caicedo et al. (2019). Nucleus segmentation across imaging experiments: the 2018 Data "
     "Science Bowl. Nature Methods (BBBC038).", "10.1038/s41592-019-0612-7"),
    ("Kumar et al. (2017). A dataset and a technique for generalized nuclear segmentation for "
     "computational pathology. IEEE TMI (MoNuSeg).", "10.1109/TMI.2017.2677499"),
)
DEFAULT_AUTHOR = "napari-nuclei-unet developers"


class MissingExtraError(InputError):
    """bioimageio.spec / bioimageio.core are not installed."""


@dataclass
class ExportResult:
    """What :func:`export_bioimageio` wrote and how it was checked.

    ``validation`` is bioimageio.spec's status of the written zip ("valid-format" or
    "passed"), ``test`` bioimageio.core's status of its test run ("passed", "failed" or
    None when not run); ``details`` the failing checks' messages.
    """

    path: Path
    licence: str
    weights: list[str]
    validation: str
    test: str | None
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.validation in ("valid-format", "passed") and self.test in (None, "passed")


def bioimageio_installed() -> bool:
    """Whether bioimageio.spec and bioimageio.core are installed (found, not imported:
    importing them takes seconds)."""
    try:
        return all(importlib.util.find_spec(n) is not None
                   for n in ("bioimageio.spec", "bioimageio.core"))
    except (ImportError, ValueError):
        return False


def require_bioimageio() -> None:
    """Raise :class:`MissingExtraError` (with the pip command) unless bioimageio.spec and
    bioimageio.core are installed."""
    if not bioimageio_installed():
        raise MissingExtraError("Exporting for bioimage.io needs bioimageio.spec and "
                                f"bioimageio.core, which are not installed. Install them with: "
                                f"{INSTALL_HINT}")


def check_output(out) -> Path:
    """The output .zip path; a clear error for a folder or a missing parent folder."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"The output {out} is a folder; give the path of a .zip file to write, "
                         f"e.g. {out / 'model.zip'}.")
    if out.suffix.lower() != ".zip":
        raise InputError(f"The output {out} must end in .zip (a bioimage.io package is a zip).")
    if not out.parent.is_dir():
        raise InputError(f"The folder {out.parent} does not exist; make it first or write the "
                         "package elsewhere.")
    return out


def check_licence(licence: str) -> None:
    """Raise :class:`InputError` unless ``licence`` is an SPDX id bioimage.io knows."""
    from bioimageio.spec.model import v0_5 as v

    try:
        v.LicenseId(licence)
    except ValueError:  # pydantic's ValidationError is a ValueError
        raise InputError(f"{licence!r} is not an SPDX licence id bioimage.io accepts; give one "
                         "such as CC-BY-4.0, CC-BY-NC-SA-4.0 or MIT.") from None


def _axes(model: Model, v):
    """(input axes, output axes) of the network: batch, channel, y, x; sizes a multiple
    of the alignment; the output the size of the input, with the exact halo."""
    cfg = model.config
    step = cfg.alignment
    size = v.ParameterizedSize(min=2 * cfg.halo + step, step=step)
    in_names = ["grey"] if cfg.in_channels == 1 else [f"channel{i}" for i in range(cfg.in_channels)]
    out_names = (model.outputs + [f"map{i}" for i in range(cfg.out_channels)])[: cfg.out_channels]
    inputs = [v.BatchAxis(), v.ChannelAxis(channel_names=[v.Identifier(n) for n in in_names]),
              v.SpaceInputAxis(id=v.AxisId("y"), size=size),
              v.SpaceInputAxis(id=v.AxisId("x"), size=size)]
    ref = {a: v.SizeReference(tensor_id=v.TensorId("raw"), axis_id=v.AxisId(a)) for a in "yx"}
    outputs = [v.BatchAxis(), v.ChannelAxis(channel_names=[v.Identifier(n) for n in out_names]),
               v.SpaceOutputAxisWithHalo(id=v.AxisId("y"), size=ref["y"], halo=cfg.halo),
               v.SpaceOutputAxisWithHalo(id=v.AxisId("x"), size=ref["x"], halo=cfg.halo)]
    return inputs, outputs


def _tensors(model: Model, a: Assets, v):
    in_axes, out_axes = _axes(model, v)
    low, high = model.normalization.get("low", 1.0), model.normalization.get("high", 99.8)
    pre = [v.EnsureDtypeDescr(kwargs=v.EnsureDtypeKwargs(dtype="float32")),
           v.ScaleRangeDescr(kwargs=v.ScaleRangeKwargs(axes=[v.AxisId("y"), v.AxisId("x")],
                                                        min_percentile=low, max_percentile=high)),
           v.ClipDescr(kwargs=v.ClipKwargs(min=-10.0, max=10.0))]
    raw = v.InputTensorDescr(
        id=v.TensorId("raw"), axes=in_axes, preprocessing=pre,
        description="grey image, nuclei bright on dark, at the model's nucleus size",
        test_tensor=v.FileDescr(source=a.test_input),
        sample_tensor=v.FileDescr(source=a.sample_input),
        data=v.IntervalOrRatioDataDescr(type="float32"))
    prob = v.OutputTensorDescr(
        id=v.TensorId("prob"), axes=out_axes,
        description="sigmoid probabilities, one channel per map: " + ", ".join(model.outputs),
        test_tensor=v.FileDescr(source=a.test_output),
        sample_tensor=v.FileDescr(source=a.sample_output),
        data=v.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)))
    assert np.load(a.test_output).shape[1] == model.config.out_channels
    return [raw], [prob]


def _weights(model: Model, a: Assets, v):
    torch_version = v.Version(torch.__version__.split("+")[0])
    arch = v.ArchitectureFromFileDescr(source=a.architecture, callable=ARCHITECTURE_CALLABLE,
                                       kwargs=model.config.to_dict())
    # the state dict is the original; TorchScript and ONNX are made from it
    entries = {
        "torchscript": v.TorchscriptWeightsDescr(source=a.torchscript, pytorch_version=torch_version,
                                                 parent="pytorch_state_dict"),
        "pytorch_state_dict": v.PytorchStateDictWeightsDescr(
            source=a.state_dict, architecture=arch, pytorch_version=torch_version),
    }
    if a.onnx is not None:
        entries["onnx"] = v.OnnxWeightsDescr(source=a.onnx, opset_version=17,
                                             parent="pytorch_state_dict")
    return v.WeightsDescr(**entries)


def describe(model: Model, a: Assets, author: str = DEFAULT_AUTHOR):
    """The bioimage.io (format 0.5) description of ``model`` with the files in ``a``."""
    from bioimageio.spec.model import v0_5 as v

    inputs, outputs = _tensors(model, a, v)
    card_copy = a.folder / CARD_NAME
    weights_copy = a.folder / WEIGHTS_NAME
    shutil.copyfile(model.path / CARD_NAME, card_copy)
    shutil.copyfile(model.path / WEIGHTS_NAME, weights_copy)
    name = f"napari-unet {model.name}"[:128]
    return v.ModelDescr(
        name=name,
        description=(model.card.get("description") or f"napari-unet model {model.name}")[:1024],
        authors=[v.Author(name=author)],
        cite=[v.CiteEntry(text=text, doi=v.Doi(doi)) for text, doi in CITATIONS],
        license=v.LicenseId(a.licence),
        documentation=v.FileDescr(source=a.readme),
        covers=[v.FileDescr(source=a.cover)],
        tags=["nuclei", "instance-segmentation", "unet", "2d", "fluorescence", "pytorch",
              "napari-unet"],
        inputs=inputs, outputs=outputs, weights=_weights(model, a, v),
        attachments=[v.FileDescr(source=card_copy), v.FileDescr(source=weights_copy)],
        config=v.Config(**{"napari-unet": {"version": __version__, "model": model.name,
                                           "sha256": model.card.get("sha256"),
                                           "diameter": model.diameter,
                                           "outputs": model.outputs}}),
    )


def validate(path: Path) -> tuple[str, list[str]]:
    """bioimageio.spec's status of a package (with its io checks: the files' hashes) and
    the messages of its errors."""
    from bioimageio.spec import load_description

    descr = load_description(path, perform_io_checks=True)
    summary = descr.validation_summary
    return summary.status, _failures(summary)


def test_package(path: Path) -> tuple[str, list[str]]:
    """bioimageio.core's test run of every weights format of a package."""
    from bioimageio.core import test_model

    summary = test_model(path)
    return summary.status, _failures(summary)


def _failures(summary) -> list[str]:
    return [f"{d.name}: {e.msg}" for d in summary.details for e in d.errors]


#: The steps of an export, as :func:`export_iter` yields them (``info["step"]``).
STEPS = ("writing weights (TorchScript, state dict, ONNX), test image and cover",
         "validating with bioimageio.spec", "test run with bioimageio.core")


def export_iter(model, out, *, licence: str | None = None, author: str = DEFAULT_AUTHOR,
                test: bool = True):
    """Generator form of :func:`export_bioimageio`: yields ``Progress(k, 3, "export",
    ExportStep(STEPS[k]))`` before each step and returns the :class:`ExportResult`.
    Closing it mid-way leaves nothing behind (the temporary files go with it)."""
    out = check_output(out)
    model = model if isinstance(model, Model) else load_model(model)
    require_bioimageio()
    if model.path is None:
        raise InputError("Only a saved model (a folder with model.safetensors and model.json) "
                         "can be exported; save it first with unet_core.save_model.")
    from bioimageio.spec import save_bioimageio_package

    if licence is not None:
        check_licence(licence)
    with tempfile.TemporaryDirectory(prefix="bioimageio-") as work, \
            tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as staging:
        yield Progress(0, len(STEPS), "export", ExportStep(STEPS[0]))
        assets = write_assets(model, Path(work), licence)
        descr = describe(model, assets, author)
        if descr.validation_summary.status == "failed":
            raise InputError("The package description is not valid: "
                             + "; ".join(_failures(descr.validation_summary)))
        tmp = Path(staging) / out.name
        save_bioimageio_package(descr, output_path=tmp)
        yield Progress(1, len(STEPS), "export", ExportStep(STEPS[1]))
        status, details = validate(tmp)
        tested = None
        if test and status != "failed":
            yield Progress(2, len(STEPS), "export", ExportStep(STEPS[2]))
            tested, more = test_package(tmp)
            details += more
        result = ExportResult(out, assets.licence, list(descr.weights.available_formats),
                              status, tested, details)
        if not result.ok:
            raise InputError(f"The exported package did not pass its checks (validation "
                             f"{status}, test {tested}): " + "; ".join(details[:5]))
        tmp.replace(out)
    return result


def export_bioimageio(model, out, *, report=None, **kwargs) -> ExportResult:
    """Write ``model`` (a :class:`Model`, name or folder) as a bioimage.io package ``out``.

    The zip is written under a temporary name beside ``out``, validated (and with
    ``test``, test-run with bioimageio.core), and only then renamed to ``out``: a package
    that fails its checks is not kept (:class:`InputError` with the failing checks).
    ``licence`` (an SPDX id) overrides the one derived from the training data;
    ``author`` names who made the weights.  ``report``, when given, is called with a
    short line before each step.
    """
    say = report or (lambda line: None)
    return run_to_end(export_iter(model, out, **kwargs), lambda p: say(p.info.step))
