"""Model files: safetensors weights plus a JSON model card.

A model is a folder holding ``model.safetensors`` (weights only: loading it can
never run code, unlike a pickle) and ``model.json`` (the model card: architecture,
input normalization, output meaning, provenance, metrics and the SHA-256 of the
weights).  Bundled models live in the installed ``unet_core.weights`` package;
user models in :func:`user_model_dir` or any folder.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import platformdirs
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import ModelFileError
from ..files.fileio import save_tensors
from ..files.safefiles import atomic_write
from ..inference.normalize import DEFAULT_NORMALIZATION
from .card import (
    CARD_VERSIONS,
    KNOWN_OUTPUTS,
    check_card,
    check_regular_file,
    check_weights_fit,
    read_card,
    read_weights_header,
)
from .model import UNet, UNetConfig

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model.json"
CARD_VERSION = CARD_VERSIONS[-1]
DEFAULT_MODEL = "nuclei"

# Output maps of the instance models (see unet_core.segmentation.instances).
DEFAULT_OUTPUTS = KNOWN_OUTPUTS


@dataclass
class Model:
    """A loaded model: the network in eval mode and its card.

    Attributes
    ----------
    net : UNet
        The network (CPU, float32, eval mode).
    card : dict
        The model card (see :func:`make_card`).
    path : Path or None
        Folder the model was loaded from.
    """

    net: UNet
    card: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def config(self) -> UNetConfig:
        return self.net.config

    @property
    def name(self) -> str:
        return self.card.get("name") or (self.path.name if self.path else "unnamed")

    @property
    def normalization(self) -> dict:
        return self.card.get("normalization", dict(DEFAULT_NORMALIZATION))

    @property
    def diameter(self) -> float | None:
        """Median equivalent diameter (px) of the nuclei the model was trained on, or
        None when the card does not say (then images are used at their own scale)."""
        d = self.card.get("diameter")
        return float(d) if d else None

    @property
    def diameter_range(self) -> tuple[float, float]:
        """Nucleus diameters (px) the model segments as well as its own (card
        ``diameter_range``; default half to 1.15 times ``diameter``, see
        :func:`diameter_range`).  An estimated size in this range is used without
        resampling."""
        lo, hi = self.card.get("diameter_range") or diameter_range(self.diameter or 0.0)
        return float(lo), float(hi)

    @property
    def outputs(self) -> list[str]:
        return list(self.card.get("outputs", DEFAULT_OUTPUTS))


def diameter_range(diameter: float) -> tuple[float, float]:
    """Nucleus diameters a model trained at ``diameter`` segments as well as its own:
    half to 1.15 times it.  Measured on the bundled model with the real DSB2018 image
    resampled 0.5x-1.5x (AP50 over four rotations 0.74 at 0.5x and 0.76 at 1x, 0.69 at
    1.1x-1.25x: a U-Net's reach limits large nuclei more than pixels limit small ones)."""
    return diameter / 2.0, diameter * 1.15


def make_card(
    config: UNetConfig,
    name: str,
    *,
    normalization: dict | None = None,
    outputs=DEFAULT_OUTPUTS,
    instances: dict | None = None,
    parent: str | None = None,
    training: dict | None = None,
    metrics: dict | None = None,
    description: str = "",
    diameter: float | None = None,
) -> dict:
    """A model card with every field the loader and the plugin read.

    ``diameter`` is the median equivalent diameter (px) of the nuclei the model was
    trained on (the median over training images of each image's median); images are
    resampled to it (see :class:`~unet_core.inference.predict.Predictor`).
    """
    size = {}
    if diameter:
        size = {"diameter": round(float(diameter), 2),
                "diameter_range": [round(v, 2) for v in diameter_range(float(diameter))]}
    return {
        "format_version": CARD_VERSION,
        "name": name,
        "description": description,
        "architecture": "unet",
        "config": config.to_dict(),
        "normalization": normalization or dict(DEFAULT_NORMALIZATION, per_channel=True),
        "outputs": list(outputs)[: config.out_channels],
        "instances": instances or {},
        **size,
        "parent": parent,
        "training": training or {},
        "metrics": metrics or {},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(net: UNet, folder, card: dict | None = None, *, name: str | None = None) -> Path:
    """Write ``net`` and its card into ``folder`` atomically (weights first, card last).

    Returns the folder.  A crash at any moment leaves either the previous model or
    the new one, never a card that points at half-written weights.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card = dict(card or make_card(net.config, name or folder.name))
    card["config"] = net.config.to_dict()
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()
             if v.is_floating_point()}
    state.update({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()
                  if not v.is_floating_point()})
    weights = folder / WEIGHTS_NAME
    save_tensors(state, weights, metadata={"format": "pt", "name": str(card.get("name", ""))})
    card["sha256"] = _sha256(weights)
    with atomic_write(folder / CARD_NAME) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return folder


def bundled_model_dir() -> Path:
    """Folder of the models installed with the package."""
    return Path(str(resources.files("unet_core.weights")))


def user_model_dir() -> Path:
    """Per-user folder for fine-tuned models (``$NAPARI_UNET_MODELS`` overrides it)."""
    env = os.environ.get("NAPARI_UNET_MODELS")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("napari-unet")) / "models"


def list_models() -> list[dict]:
    """Installed models: bundled first, then the user's.  Each a dict with
    ``name``, ``path``, ``source`` ("bundled" | "user") and the card's ``description``."""
    found = []
    for source, root in (("bundled", bundled_model_dir()), ("user", user_model_dir())):
        if not root.is_dir():
            continue
        for card_path in sorted(root.glob(f"*/{CARD_NAME}")):
            try:
                card = read_card(card_path)
            except ModelFileError as err:
                card = {"description": f"(unreadable model card: {err})"}
            card = card if isinstance(card, dict) else {"description": "(unreadable model card)"}
            found.append({"name": card_path.parent.name, "path": card_path.parent, "source": source,
                          "description": card.get("description", ""), "parent": card.get("parent")})
    return found


def resolve_model_path(name_or_path) -> Path:
    """Folder of a model given by name (bundled, then user) or by path."""
    p = Path(name_or_path)
    if p.exists():
        if not p.is_file():
            return p
        if p.name in (WEIGHTS_NAME, CARD_NAME):      # a file of a model folder: that folder
            return p.parent
        check_regular_file(p)
        _check_not_pickle(p)
        raise ModelFileError(f"{p} is a file, not a model folder. A model folder holds "
                             f"{WEIGHTS_NAME} (the weights) and {CARD_NAME} (the model card); give "
                             "its path, or the name of an installed model (`napari-unet models`).")
    if isinstance(name_or_path, str) and os.sep not in name_or_path and "/" not in name_or_path:
        for root in (bundled_model_dir(), user_model_dir()):
            if (root / name_or_path).is_dir():
                return root / name_or_path
        names = ", ".join(sorted({m["name"] for m in list_models()})) or "none"
        raise ModelFileError(
            f"No model named {name_or_path!r}. Installed models: {names}. "
            "Give one of these names or the path of a model folder.")
    raise ModelFileError(f"Model not found: {p}. Check the path, or run `napari-unet models` "
                         "to list the installed models.")


def _check_not_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise ModelFileError(
            f"{path} is a pickle / torch.save file. Loading a pickle can run arbitrary code, so "
            "napari-unet refuses it. Convert it once, in a Python you trust, with "
            "`unet_core.models.modelio.save_model(net, folder)`, which writes safetensors.")


def load_model(name_or_path=DEFAULT_MODEL) -> Model:
    """Load a model by bundled/user name or by folder / file path.

    Raises
    ------
    ModelFileError
        With a message that says what is wrong: missing folder or file, a pickle,
        corrupt weights, a card that does not match the weights, or a weights hash
        that does not match the card.
    """
    folder = resolve_model_path(name_or_path)
    weights, card_path = folder / WEIGHTS_NAME, folder / CARD_NAME
    if not weights.exists():
        others = [p for p in folder.iterdir() if p.suffix in (".pt", ".pth", ".pkl", ".ckpt")]
        for p in others:
            check_regular_file(p)
            _check_not_pickle(p)
        raise ModelFileError(f"{folder} has no {WEIGHTS_NAME}; a model folder holds "
                             f"{WEIGHTS_NAME} and {CARD_NAME}.")
    check_regular_file(weights)
    _check_not_pickle(weights)
    if not card_path.exists():
        raise ModelFileError(f"{folder} has no model card {CARD_NAME}; it says how the weights were "
                             "built and must sit next to them.")
    card = read_card(card_path)
    # everything is checked before anything is built: the card against its schema, the
    # weights' header against the architecture (no allocation), then the hash
    check_card(card, card_path)
    config = UNetConfig.from_dict(card["config"])
    check_weights_fit(read_weights_header(weights), config, folder)
    if card["sha256"] != _sha256(weights):
        raise ModelFileError(f"The weights in {folder} do not match the hash in the model card: "
                             "the file was changed or damaged. Copy the model folder again.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ModelFileError(f"{weights} is not a readable safetensors file ({err}). The file is "
                             "damaged or not a napari-unet model; copy it again.") from None
    net = UNet(config)
    net.load_state_dict(state)
    net.eval()
    return Model(net=net, card=card, path=folder)
