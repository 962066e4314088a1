"""Inference engines: the network run by PyTorch, ONNX Runtime or OpenVINO.

On a CPU, OpenVINO runs the same U-Net about 1.5x faster than PyTorch in float32 and
ONNX Runtime a little faster than PyTorch; OpenVINO runs bfloat16 where the CPU executes
it natively, faster again (BENCHMARKS.md).  Both are optional: without them everything
runs on PyTorch.

An engine maps a batch of tiles to sigmoid probabilities; the tiling around it is the
Predictor's, so every backend runs the same windows.  The fast backends run a graph
exported from the model in memory (so fine-tuned models get them too), written once
per model content hash into :func:`cache_dir`.  Whatever fails while loading or
compiling a backend falls back to PyTorch with one :class:`BackendWarning`.  Every
backend uses as many threads as PyTorch is set to (``torch.set_num_threads``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
import warnings
from functools import lru_cache
from pathlib import Path

import platformdirs
import torch

from ..errors import InputError
from .engines import OnnxRuntimeEngine, OpenVinoEngine, TorchEngine, export_onnx

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
PRECISIONS = ("auto", "f32", "bf16")
#: Fastest first, as measured on CPUs (benchmarks/bench_backends.py).
CPU_ORDER = ("openvino", "onnxruntime")
#: What a user reads for each backend.
LABELS = {"torch": "PyTorch", "openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}
INSTALL_HINT = ('pip install "napari-nuclei-unet[all]" (or pip install openvino onnx) runs the network '
                "about 1.5x faster on a CPU")
#: Environment variables that say what "auto" means (e.g. ``NAPARI_UNET_BACKEND=torch``
#: ``NAPARI_UNET_PRECISION=f32``): a whole run, or a test suite, on one setting.
ENV_BACKEND, ENV_PRECISION = "NAPARI_UNET_BACKEND", "NAPARI_UNET_PRECISION"
#: What bf16 costs on the CPU, measured on the bundled model (benchmarks/compare_precision.py,
#: 203 real images and the validation image): labels of 29 images (14%) change, by up to
#: 0.08 AP50 on one image, while the AP50 over all images stays (0.5403 vs 0.5403).
BF16_COST = "faster; labels differ on about 1 image in 7"
#: Bump when the exported graph changes, so old cache files are not used.
EXPORT_VERSION = 1
# What loading or compiling a backend raises (OpenVINO's and ONNX Runtime's own errors
# derive from RuntimeError; a broken install from ImportError or OSError).
_LOAD_ERRORS = (ImportError, OSError, RuntimeError, ValueError)


class BackendWarning(UserWarning):
    """A fast backend could not be used; the network runs on PyTorch instead."""


def cache_dir() -> Path:
    """Where exported graphs go: ``$NAPARI_UNET_CACHE`` or the user cache folder."""
    env = os.environ.get("NAPARI_UNET_CACHE")
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("napari-unet"))


def installed() -> list[str]:
    """Backends whose package is installed here ("torch" always)."""
    return ["torch"] + [b for b in CPU_ORDER if importlib.util.find_spec(b) is not None]


@lru_cache(maxsize=1)
def cpu_bf16() -> bool:
    """Whether this CPU executes bfloat16 natively, as OpenVINO reports it (False
    when OpenVINO is not installed or does not load)."""
    try:
        import openvino as ov

        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except _LOAD_ERRORS as err:
        log.info("OpenVINO unavailable (%s)", err)
        return False
    return "BF16" in caps


def resolve(backend: str = "auto", precision: str = "auto", device="cpu") -> tuple[str, str]:
    """The (backend, precision) that ``backend`` and ``precision`` mean on ``device``.

    On a GPU the network stays in PyTorch (on CUDA "amp": its mixed precision, "bf16"
    forces bfloat16, "f32" turns it off).  On a CPU "auto" is the fastest installed
    backend in f32; bf16 is asked for by name, and only where the CPU executes it
    natively (:data:`BF16_COST`).  A backend asked for by name but not installed is returned as
    asked: :func:`make_engine` then falls back to PyTorch with a warning.

    Raises
    ------
    InputError
        Unknown names, a CPU backend on a GPU device, or bf16 where it is not native.
    """
    backend, precision = str(backend).lower(), str(precision).lower()
    # "auto" as the environment says (CI runs the suite once per setting)
    if backend == "auto":
        backend = os.environ.get(ENV_BACKEND, "auto").strip().lower() or "auto"
    if precision == "auto":
        precision = os.environ.get(ENV_PRECISION, "auto").strip().lower() or "auto"
    if backend not in BACKENDS:
        raise InputError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if precision not in PRECISIONS:
        raise InputError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    dev = torch.device(device).type
    if dev != "cpu":
        if backend not in ("auto", "torch"):
            raise InputError(f"The {LABELS[backend]} backend runs on the CPU; on the {dev} device "
                             "use backend 'auto' or 'torch'.")
        if dev == "cuda":
            return "torch", {"auto": "amp"}.get(precision, precision)
        if precision == "bf16":
            raise InputError(f"bf16 is not offered on the {dev} device; use precision 'auto' or 'f32'.")
        return "torch", "f32"
    if backend == "auto":
        fast = [b for b in CPU_ORDER if b in installed()]
        if precision == "bf16":
            fast = [b for b in fast if b == "openvino"]
        backend = fast[0] if fast else "torch"
    if precision == "auto":
        # bf16 keeps the AP50 over all the real images, but not on each one (BF16_COST):
        # a default must not change labels, so it is an opt-in
        precision = "f32"
    if precision == "bf16" and not (backend == "openvino" and cpu_bf16()):
        raise InputError("bf16 on the CPU runs only on OpenVINO, on CPUs that execute it natively "
                         f"(this one {'does' if cpu_bf16() else 'does not, as far as OpenVINO says'}); "
                         "use precision 'f32' or 'auto'.")
    return backend, precision


def describe(backend: str, precision: str) -> str:
    """'OpenVINO bf16', 'PyTorch f32', 'PyTorch amp' ..."""
    return f"{LABELS.get(backend, backend)} {precision}"


def network_hash(net: torch.nn.Module) -> str:
    """SHA-256 of the network's architecture and weights as they are in memory (so a
    fine-tuned network has its own, whatever its card says)."""
    h = hashlib.sha256(json.dumps(net.config.to_dict(), sort_keys=True).encode())
    for name, value in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def _onnx_file(net, key: str) -> tuple[Path, bool]:
    """The cached ONNX graph of ``net`` (exported now if missing); (path, was exported)."""
    path = cache_dir() / "onnx" / f"{key}.v{EXPORT_VERSION}.onnx"
    if path.is_file():
        return path, False
    return export_onnx(net, path), True


def make_engine(net, device: torch.device, backend: str, precision: str, shape=None):
    """The engine for a resolved (``backend``, ``precision``), ready to run.

    For the exported backends the graph is loaded (exported first if not cached) and,
    when ``shape`` (B, C, H, W) is given, compiled for it, so that failures show here.
    Anything that fails falls back to :class:`TorchEngine` with one
    :class:`BackendWarning` saying why and how to fix it.

    Returns
    -------
    engine, dict
        The engine, and what preparing it cost: ``{"backend", "precision",
        "seconds", "exported", "fallback"}`` (``fallback`` the reason, or None).
    """
    t0 = time.perf_counter()
    info = {"backend": backend, "precision": precision, "exported": False, "fallback": None}
    if backend != "torch":
        try:
            engine = _exported_engine(net, backend, precision, shape, info)
        except _LOAD_ERRORS as err:
            reason = f"{type(err).__name__}: {err}".strip()
            if isinstance(err, ImportError):
                reason += f". {INSTALL_HINT}"
            info.update(backend="torch", precision="f32", fallback=reason)
            warnings.warn(f"The {LABELS[backend]} backend could not be used ({reason}); running "
                          "the network on PyTorch instead (same results, slower).", BackendWarning,
                          stacklevel=3)
        else:
            info["seconds"] = time.perf_counter() - t0
            return engine, info
    engine = TorchEngine(net, device, info["precision"])
    info["seconds"] = time.perf_counter() - t0
    return engine, info


def _exported_engine(net, backend, precision, shape, info):
    def make(path):
        if backend == "openvino":
            return OpenVinoEngine(path, precision, cache_dir() / "openvino")
        return OnnxRuntimeEngine(path, precision)

    importlib.import_module(backend)   # a missing or broken install fails here, before export
    key = network_hash(net)
    path, info["exported"] = _onnx_file(net, key)
    try:
        engine = make(path)
    except _LOAD_ERRORS as err:
        if info["exported"]:
            raise
        # a damaged cache file (e.g. cut short by a full disk): export it again, once
        log.warning("re-exporting the damaged cached graph %s (%s)", path, err)
        path.unlink(missing_ok=True)
        path, info["exported"] = _onnx_file(net, key)
        engine = make(path)
    if shape is not None:
        engine.compile(shape)
    return engine
