"""The files of a bioimage.io package, made from a napari-unet model (no bioimageio import).

Every weights file holds the network *with its sigmoid*: the package maps a normalised
grey image (B, 1, H, W) to probabilities (B, C_out, H, W) in [0, 1], as
:class:`~unet_core.inference.predict.Predictor` does, so a tool that runs no post-processing still
gets the maps napari-unet shows.
"""
from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
import torch

from ..data.synthetic import synthetic_nuclei
from ..errors import InputError
from ..inference.engines import _Probabilities, export_onnx
from ..inference.normalize import apply_range, percentile_range, percentiles
from . import model as model_module
from .modelio import Model, resolve_model_path

#: The callable a pytorch_state_dict consumer builds from ``ARCHITECTURE_FILE``.
ARCHITECTURE_CALLABLE = "UNetProbabilities"
ARCHITECTURE_FILE = "unet_architecture.py"
#: Pixel size of the packaged test image (a multiple of every depth's alignment).
TEST_SIZE = 256
# bioimage.io's scale_range divides by (high - low + eps); its default eps
SCALE_RANGE_EPS = 1e-6
_ARCHITECTURE_TAIL = f'''

class {ARCHITECTURE_CALLABLE}(UNet):
    """The U-Net followed by its sigmoid: probabilities, as napari-unet computes them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super().forward(x))
'''


def architecture_source() -> str:
    """Python source of the U-Net (only torch needed) plus :data:`ARCHITECTURE_CALLABLE`;
    its state dict is the same as :class:`~unet_core.models.model.UNet`'s."""
    return inspect.getsource(model_module) + _ARCHITECTURE_TAIL


def sample_image(model: Model, size: int = TEST_SIZE) -> np.ndarray:
    """A synthetic fluorescence image (uint16 (size, size)) with nuclei at the model's own
    diameter, so the packaged test shows the model at work."""
    radius = (model.diameter or 20.0) / 2
    image, _ = synthetic_nuclei((size, size), n=40, seed=0,
                                radius_range=(0.8 * radius, 1.2 * radius))
    return image


def package_input(image: np.ndarray, model: Model) -> np.ndarray:
    """The network input of a grey (H, W) image as the package normalises it: float32
    (1, 1, H, W), percentiles of the card to 0 and 1 with bioimage.io's ``eps``, then
    clipped to [-10, 10] as :func:`~unet_core.inference.normalize.apply_range` does."""
    plane = image[..., None].astype(np.float32)
    lo, hi = percentile_range(plane, *percentiles(model.normalization))
    x = apply_range(plane, lo, hi + SCALE_RANGE_EPS)
    return np.ascontiguousarray(np.moveaxis(x, -1, 0)[None])


def probabilities_module(model: Model) -> torch.nn.Module:
    """``sigmoid(net(x))`` on the CPU in float32, contiguous memory, eval mode."""
    net = copy.deepcopy(model.net).to("cpu", torch.float32).to(memory_format=torch.contiguous_format)
    return _Probabilities(net.eval()).eval()


def write_torchscript(model: Model, x: np.ndarray, path: Path) -> np.ndarray:
    """Trace the network with its sigmoid on ``x`` (1, C_in, H, W) into ``path``; return
    its output there, checked equal to the eager network's (a trace that took another
    branch would show here)."""
    module = probabilities_module(model)
    t = torch.from_numpy(x)
    with torch.no_grad():
        traced = torch.jit.trace(module, t, check_trace=False)
        eager, scripted = module(t).numpy(), traced(t).numpy()
    if not np.array_equal(eager, scripted):
        raise InputError("The traced network does not reproduce the model's output "
                         f"(max difference {np.abs(eager - scripted).max():.3g}); it cannot be "
                         "exported as TorchScript.")
    traced.save(str(path))
    return scripted


def write_state_dict(model: Model, path: Path) -> None:
    """The weights as a plain tensor dict (``torch.load(..., weights_only=True)`` reads it
    without running code), keys as in :data:`ARCHITECTURE_CALLABLE`."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.net.state_dict().items()}
    torch.save(state, str(path))


def write_onnx(model: Model, path: Path) -> bool:
    """ONNX weights when the ``onnx`` package is installed (else False)."""
    if importlib.util.find_spec("onnx") is None:
        return False
    export_onnx(model.net, path)
    return True


def write_cover(x: np.ndarray, prob: np.ndarray, path: Path) -> None:
    """A 2:1 PNG: the normalised input (grey) beside the output (boundary, foreground,
    centre as red, green, blue; the first map in grey for other models)."""
    left = np.clip(x[0, 0], 0, 1)
    left = np.repeat(left[..., None], 3, axis=-1)
    p = prob[0]
    right = np.stack([p[1], p[0], p[2]], -1) if len(p) == 3 else np.repeat(p[0][..., None], 3, -1)
    iio.imwrite(path, (np.concatenate([left, right], axis=1) * 255).round().astype(np.uint8))


# -- licence and training data -------------------------------------------------------

def lineage_cards(model: Model, limit: int = 10) -> list[dict]:
    """The model's card, then its parent's, and so on (as far as the parents are
    installed): fine-tuned weights carry their base's training data and licences."""
    cards, card = [], model.card
    while card and len(cards) < limit:
        cards.append(card)
        parent = (card.get("training") or {}).get("parent_path") or card.get("parent")
        card = None
        if parent:
            try:
                folder = resolve_model_path(parent)
                card = json.loads((folder / "model.json").read_text())
            except (OSError, ValueError):
                card = None
    return cards


def training_data(model: Model) -> list[dict]:
    """Rows (group, stain, pairs, nuclei, licence) of every data set in the lineage,
    plus one row per fine-tuning on a lab's own examples."""
    rows = []
    for card in lineage_cards(model):
        training = card.get("training") or {}
        rows += [dict(r, model=card.get("name")) for r in training.get("data") or []]
        if training.get("mode") == "finetune":
            rows.append({"model": card.get("name"), "group": "the lab's own corrected examples",
                         "pairs": len(training.get("examples") or []),
                         "licence": "as the lab decides"})
    return rows


def licence_notes(model: Model) -> list[str]:
    """Every licence statement of the lineage: cards' ``licence`` and data rows."""
    notes = [c["licence"] for c in lineage_cards(model) if c.get("licence")]
    return notes + [r["licence"] for r in training_data(model) if r.get("licence")]


def spdx_licence(notes: list[str]) -> str:
    """The SPDX id of the weights: non-commercial share-alike when any data set says so
    (MoNuSeg is CC BY-NC-SA 4.0), non-commercial when any says NC, else CC-BY-4.0."""
    text = " ".join(notes)
    if re.search(r"\bNC\b.*\bSA\b|BY-NC-SA", text):
        return "CC-BY-NC-SA-4.0"
    if re.search(r"BY-NC|\bNC\b|non-commercial", text, re.IGNORECASE):
        return "CC-BY-NC-4.0"
    return "CC-BY-4.0"


def validation_text(model: Model) -> str:
    """The held-back scores of the model card, in words."""
    metrics = model.card.get("metrics") or {}
    before, after = metrics.get("before") or {}, metrics.get("after") or {}
    names = {"dice": "Dice", "ap50": "AP50", "map": "mAP 0.5:0.95"}
    if after:
        scores = ", ".join(f"{names[k]} {before.get(k, float('nan')):.3f} -> {after[k]:.3f}"
                           for k in names if k in after)
        n = after.get("n", "?")
        return (f"On {n} held-back example(s) the fine-tuning never trained on (base -> this "
                f"model): {scores}.")
    return ("The model card records no held-back scores. napari-nuclei-unet's BENCHMARKS.md "
            "reports the bundled models' AP50 per data source, each source held out of "
            "training in turn.")


def documentation(model: Model, licence: str, diameter: float | None) -> str:
    """README.md of the package: what goes in, what comes out, training data, licences."""
    outputs = ", ".join(model.outputs) or "probability maps"
    rows = training_data(model)
    data = "\n".join(f"| {r.get('model', '')} | {r.get('group', '')} | {r.get('stain', '')} | "
                     f"{r.get('pairs', '')} | {r.get('licence', '')} |" for r in rows) or \
        "| | not recorded in the model card | | | |"
    size = (f"about **{diameter:.0f} px** across (the model card's median training diameter; "
            "resample images whose nuclei are larger or smaller)") if diameter else \
        "at the scale of the images the model was trained on"
    return f"""# {model.name} (napari-unet)

{model.card.get('description', '')}

## Input
One grey channel, nuclei bright on a dark background (fluorescence), with nuclei {size}.
The package normalises it itself: percentiles {percentiles(model.normalization)[0]} and
{percentiles(model.normalization)[1]} of each image to 0 and 1, clipped to [-10, 10].
Height and width must be multiples of {model.config.alignment}. Tiles need a halo of
{model.config.halo} px for seamless results.

napari-unet itself also converts brightfield and H&E images (inverted, hematoxylin
optical density) and resamples to the nucleus size before the network; this package holds
the network only, so give it fluorescence-like grey images at that scale.

## Output
Sigmoid probabilities in [0, 1], one channel each: {outputs}. napari-unet turns them into
instance labels with a seeded watershed (foreground minus boundary, seeds from the centres).

## Validation
{validation_text(model)}

## Training data
| model | data | stain | pairs | licence |
|---|---|---|---|---|
{data}

## Licence
The weights are released as **{licence}**, the most restrictive licence of their training
data. Notes from the model card: {"; ".join(dict.fromkeys(licence_notes(model))) or "none"}.

The package holds the original napari-unet model (`model.safetensors` and its card
`model.json`) as attachments: `napari-unet` can load that pair as a model folder.
"""


@dataclass
class Assets:
    """Paths of the package's files in a working folder."""

    folder: Path
    torchscript: Path
    state_dict: Path
    architecture: Path
    onnx: Path | None
    test_input: Path
    test_output: Path
    cover: Path
    readme: Path
    sample_input: Path
    sample_output: Path
    licence: str


def write_assets(model: Model, folder: Path, licence: str | None = None) -> Assets:
    """Write every file of the package into ``folder``."""
    folder = Path(folder)
    image = sample_image(model)
    x = package_input(image, model)
    paths = {k: folder / name for k, name in (
        ("torchscript", "weights_torchscript.pt"), ("state_dict", "weights_state_dict.pt"),
        ("architecture", ARCHITECTURE_FILE), ("onnx", "weights.onnx"),
        ("test_input", "test_input.npy"), ("test_output", "test_output.npy"),
        ("cover", "cover.png"), ("readme", "README.md"), ("sample_input", "sample_input.tif"),
        ("sample_output", "sample_output.tif"))}
    prob = write_torchscript(model, x, paths["torchscript"])
    write_state_dict(model, paths["state_dict"])
    paths["architecture"].write_text(architecture_source())
    if not write_onnx(model, paths["onnx"]):
        paths["onnx"] = None
    # the test input is the raw image: the package's own preprocessing normalises it
    np.save(paths["test_input"], image[None, None].astype(np.float32))
    np.save(paths["test_output"], prob)
    write_cover(x, prob, paths["cover"])
    # the same tensors as TIFF, for tools and people that read images, not .npy
    tifffile.imwrite(paths["sample_input"], image[None, None])
    tifffile.imwrite(paths["sample_output"], prob)
    licence = licence or spdx_licence(licence_notes(model))
    paths["readme"].write_text(documentation(model, licence, model.diameter))
    return Assets(folder=folder, licence=licence, **paths)
