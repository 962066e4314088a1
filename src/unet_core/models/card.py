"""Checks of a model folder before anything is built from it.

A model card is data from elsewhere: a value out of range (``base_filters: 100000``)
would ask for hundreds of GB, a wrong type would end in a traceback deep in the
network or the watershed, and weights that are not a regular file of the size their
header declares (a link to ``/dev/zero``, a FIFO) would hang the reader.  So the card
is checked against a schema, the weights' header against the shapes the card's
architecture implies (worked out on torch's "meta" device, which allocates nothing),
and only then is anything loaded.
"""
from __future__ import annotations

import json
import re
import stat
import struct
from pathlib import Path

import torch

from ..errors import ModelFileError
from .model import UNet

# (type, low, high) of every architecture field; bool is not an int here.
CONFIG_SCHEMA = {
    "in_channels": (int, 1, 4), "out_channels": (int, 1, 16), "depth": (int, 1, 7),
    "base_filters": (int, 1, 512), "batch_norm": (bool, None, None), "dropout": (float, 0.0, 0.99),
}
NORMALIZATION_SCHEMA = {"low": (float, 0.0, 100.0), "high": (float, 0.0, 100.0),
                        "per_channel": (bool, None, None)}
# the keyword arguments of unet_core.segmentation.instances.probs_to_labels, with sane ranges
INSTANCES_SCHEMA = {"fg_threshold": (float, 0.0, 1.0), "boundary_threshold": (float, 0.0, 1.0),
                    "h": (float, 0.0, 100.0), "sigma": (float, 0.0, 20.0),
                    "min_size": (int, 0, 100_000)}
MAX_HEADER = 100 << 20     # a safetensors header of a U-Net is a few kB
MAX_CARD = 1 << 20         # a model card is a few kB (its training examples included)
#: Card versions this napari-unet reads, and the only architecture it builds.
CARD_VERSIONS = (1,)
ARCHITECTURE = "unet"
#: Output maps, in the channel order the instance step reads them (a model has a prefix).
KNOWN_OUTPUTS = ("foreground", "boundary", "centre")
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1}


def check_fields(where: str, values, schema: dict, problems: list, required=()) -> None:
    """Append to ``problems`` every field of ``values`` (a dict) that ``schema`` does not
    know, misses from ``required``, or has of the wrong type or out of range."""
    if not isinstance(values, dict):
        problems.append(f"{where} must be an object, got {type(values).__name__}")
        return
    for key in sorted(set(values) - set(schema)):
        problems.append(f"{where}.{key} is not a known field (known: {', '.join(schema)})")
    for key in required:
        if key not in values:
            problems.append(f"{where}.{key} is missing")
    for key, (kind, low, high) in schema.items():
        if key not in values:
            continue
        v = values[key]
        ok = isinstance(v, bool) if kind is bool else not isinstance(v, bool) and (
            isinstance(v, int) if kind is int else isinstance(v, (int, float)))
        if not ok:
            problems.append(f"{where}.{key} must be {'an integer' if kind is int else 'a number' if kind is float else 'true or false'}, got {v!r}")
        elif low is not None and not low <= v <= high:
            problems.append(f"{where}.{key} must be between {low} and {high}, got {v!r}")


def check_card(card, card_path) -> None:
    """Raise :class:`ModelFileError` listing every problem of a model card (parsed JSON).

    Fields other code does not read (training, metrics, ...) may hold anything.
    """
    problems: list[str] = []
    if not isinstance(card, dict):
        raise ModelFileError(f"The model card {card_path} is not a JSON object. Restore it from the "
                             "folder the model came from.")
    check_fields("config", card.get("config"), CONFIG_SCHEMA, problems, required=CONFIG_SCHEMA)
    if "normalization" in card:
        check_fields("normalization", card["normalization"], NORMALIZATION_SCHEMA, problems,
                      required=("low", "high"))
        n = card["normalization"]
        if not problems and isinstance(n, dict) and not n["low"] < n["high"]:
            problems.append(f"normalization.low ({n['low']}) must be below normalization.high ({n['high']})")
    if card.get("instances") is not None:
        check_fields("instances", card["instances"], INSTANCES_SCHEMA, problems)
    _check_diameter(card, problems)
    _check_kind(card, problems)
    sha = card.get("sha256")
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        problems.append("sha256 (the SHA-256 of model.safetensors) is missing or malformed: without "
                        "it any weights would be accepted")
    if problems:
        raise ModelFileError(f"The model card {card_path} is not valid: " + "; ".join(problems)
                             + ". Restore the model folder from where it came from.")


def _check_kind(card: dict, problems: list) -> None:
    """``format_version``, ``architecture`` and ``outputs``: what this version can build
    and read (a newer card, another network or other maps would be misread silently)."""
    version = card.get("format_version", CARD_VERSIONS[0])
    if version not in CARD_VERSIONS or isinstance(version, bool):
        problems.append(f"format_version {version!r} is not one this napari-unet reads "
                        f"({', '.join(map(str, CARD_VERSIONS))}); a newer napari-unet may read it")
    arch = card.get("architecture", ARCHITECTURE)
    if arch != ARCHITECTURE:
        problems.append(f"architecture {arch!r} is not one napari-unet builds (only {ARCHITECTURE!r})")
    outputs = card.get("outputs")
    if outputs is not None and not (isinstance(outputs, list) and len(outputs) > 0
                                    and outputs == list(KNOWN_OUTPUTS[:len(outputs)])):
        problems.append(f"outputs must name the network's maps in this order: "
                        f"{list(KNOWN_OUTPUTS)} (or the first of them), got {outputs!r}")


def read_card(card_path: Path) -> dict:
    """The parsed JSON of a model card, read only if it is a regular file of at most
    :data:`MAX_CARD` bytes (a FIFO would never end, a 1 GiB file would be read whole).

    Raises
    ------
    ModelFileError
        Not a regular file, too large, not UTF-8 JSON, or nested too deep to parse.
    """
    st = check_regular_file(card_path)
    restore = "Restore it from the folder the model came from."
    if st.st_size > MAX_CARD:
        raise ModelFileError(f"The model card {card_path} is {st.st_size / 2**20:.1f} MiB, larger "
                             f"than {MAX_CARD >> 20} MiB (a card is a few kB); it is not a model card. "
                             + restore)
    try:
        return json.loads(card_path.read_bytes())
    except RecursionError:
        raise ModelFileError(f"The model card {card_path} is nested too deeply to be a model card. "
                             + restore) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"The model card {card_path} is not valid JSON ({err}). " + restore) \
            from None


def check_regular_file(path: Path):
    """The ``os.stat`` of ``path`` if it is a regular file; opening a FIFO or reading
    ``/dev/zero`` would never end.  Links are followed (a link to a device is refused)."""
    try:
        st = path.stat()
    except OSError as err:
        raise ModelFileError(f"Cannot read {path}: {err.strerror or err}.") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{path} is not a regular file (a device, pipe or link to one); a "
                             "model's files must be plain files. Copy the model folder again.")
    return st


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_diameter(card: dict, problems: list) -> None:
    """``diameter`` (px, positive, or null: use images at their own scale) and
    ``diameter_range`` ([low, high] px around it)."""
    d = card.get("diameter")
    if d is not None and not (_number(d) and 1.0 <= d <= 1000.0):
        problems.append(f"diameter must be a number of px between 1 and 1000 (or null), got {d!r}")
    r = card.get("diameter_range")
    if r is not None and not (isinstance(r, list) and len(r) == 2 and all(_number(v) for v in r)
                              and 0.0 < r[0] < r[1] <= 1000.0):
        problems.append(f"diameter_range must be [low, high] px with 0 < low < high, got {r!r}")


def read_weights_header(path: Path) -> dict:
    """The tensor table of a safetensors file: {name: (dtype, shape)}.

    Only a regular file is read, and only if its size is exactly what its header
    declares (8 + header + data bytes).
    """
    st = check_regular_file(path)
    damaged = (f"{path} is not a complete safetensors file: it is truncated, damaged, or not a "
               "model's weights. Copy the model folder again.")
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(damaged)
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER, st.st_size - 8):
            raise ModelFileError(damaged)
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise ModelFileError(damaged) from None
    if not isinstance(header, dict):
        raise ModelFileError(damaged)
    table, end = {}, 0
    try:
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype, shape, (start, stop) = entry["dtype"], entry["shape"], entry["data_offsets"]
            count = 1
            for s in shape:
                count *= int(s)
            if stop - start != count * DTYPE_BYTES[dtype]:
                raise ModelFileError(damaged)
            table[name] = (dtype, tuple(int(s) for s in shape))
            end = max(end, int(stop))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ModelFileError(damaged) from None
    if st.st_size != 8 + n + end:
        raise ModelFileError(damaged)
    return table


def expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a U-Net built from ``config``, without allocating it."""
    with torch.device("meta"):
        net = UNet(config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def check_weights_fit(table: dict, config, folder) -> None:
    """Raise :class:`ModelFileError` unless the weights' tensors are exactly the network's."""
    own = expected_shapes(config)
    missing = sorted(set(own) - set(table))
    extra = sorted(set(table) - set(own))
    wrong = sorted(k for k in set(own) & set(table) if own[k] != table[k][1])
    if missing or extra or wrong:
        detail = "; ".join(x for x in (
            f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
            f"wrong shape {wrong[:3]}" if wrong else "") if x)
        raise ModelFileError(f"The weights in {folder} do not fit the architecture in its model card "
                             f"({detail}). The card and weights belong to different models.")
