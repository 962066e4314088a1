"""The engines that run the network: PyTorch, and the ONNX graph under ONNX Runtime or
OpenVINO.  Each maps a batch of tiles (B, C, th, tw) float32 to sigmoid probabilities
(B, C_out, th, tw) float32; :mod:`unet_core.inference.backends` chooses and makes them."""
from __future__ import annotations

import contextlib
import copy
import os
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..files.safefiles import atomic_write

OPSET = 17

class _Probabilities(torch.nn.Module):
    """The network with its sigmoid, as exported (the backend computes both)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.sigmoid(self.net(x))


def export_onnx(net: torch.nn.Module, path) -> Path:
    """Write ``sigmoid(net(x))`` as ONNX (opset 17, dynamic batch, height and width),
    atomically.  Input "x" float32 (B, C, H, W); output "prob" float32 (B, C_out, H, W)."""
    cpu = copy.deepcopy(net).to("cpu", torch.float32).to(memory_format=torch.contiguous_format)
    wrapped = _Probabilities(cpu.eval())
    cfg = net.config
    a = cfg.alignment
    dummy = torch.zeros(1, cfg.in_channels, 2 * a, 2 * a)
    axes = {0: "batch", 2: "height", 3: "width"}
    with atomic_write(path) as tmp, warnings.catch_warnings():
        # the exporter's notes on its own deprecation are not for the user
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (dummy,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["x"], output_names=["prob"],
                          dynamic_axes={"x": axes, "prob": axes})
    return Path(path)


class TorchEngine:
    """The network in PyTorch (channels_last on CPU and CUDA; AMP on CUDA unless f32)."""

    name = "torch"

    def __init__(self, net, device: torch.device, precision: str = "f32"):
        self.device = device
        self.precision = precision
        self.amp_dtype = None
        if device.type == "cuda" and precision != "f32":
            bf16 = precision == "bf16" or torch.cuda.is_bf16_supported()
            self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self.channels_last = device.type in ("cpu", "cuda")
        self.net = net.to(device).eval()
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def is_compiled(self, shape) -> bool:
        return True

    def __call__(self, x: np.ndarray, tta: bool = False) -> np.ndarray:
        """(B, C, th, tw) float32 -> sigmoid probabilities (B, C_out, th, tw) float32."""
        # a transposed (B, H, W, C) batch is already channels_last: no copy on the CPU
        t = torch.from_numpy(x)
        cuda = self.device.type == "cuda"
        if cuda:
            # through page-locked memory: the copy to the GPU runs without a staging copy
            t = t.pin_memory().to(self.device, non_blocking=True)
        else:
            t = t.to(self.device)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        amp = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype
               else contextlib.nullcontext())
        with torch.inference_mode(), amp:
            y = torch.sigmoid(self.net(t).float())
            if tta:
                for dims in ((3,), (2,), (2, 3)):
                    y += torch.sigmoid(self.net(torch.flip(t, dims)).float()).flip(dims)
                y /= 4
        if cuda:
            host = torch.empty(y.shape, dtype=y.dtype, pin_memory=True)
            return host.copy_(y).numpy()
        return y.cpu().contiguous().numpy()


class _ExportedEngine:
    """Common part of the engines that run the exported graph (numpy in, numpy out)."""

    name = ""

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def is_compiled(self, shape) -> bool:
        """Whether a batch of ``shape`` (B, C, H, W) runs without compiling first."""
        return True

    def compile(self, shape) -> float:
        """Compile for ``shape`` (B, C, H, W) now; returns the seconds it took."""
        return 0.0

    def __call__(self, x: np.ndarray, tta: bool = False) -> np.ndarray:
        """(B, C, th, tw) float32 -> sigmoid probabilities (B, C_out, th, tw) float32."""
        x = np.ascontiguousarray(x, np.float32)
        y = self.run(x)
        if tta:
            for axes in ((3,), (2,), (2, 3)):
                y += np.flip(self.run(np.ascontiguousarray(np.flip(x, axes))), axes)
            y /= 4
        return y


class OnnxRuntimeEngine(_ExportedEngine):
    """ONNX Runtime's CPU provider, all graph optimisations on."""

    name = "onnxruntime"

    def __init__(self, path: Path, precision: str = "f32"):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.precision = precision

    def run(self, x):
        return self.session.run(None, {"x": x})[0]


#: Compiled shapes an OpenVINO engine keeps (the most recently used): one keeps the
#: peak memory of a block-wise run flat with the image's size.
MAX_COMPILED = 1


class OpenVinoEngine(_ExportedEngine):
    """OpenVINO on the CPU, in f32 or bf16 (its inference precision hint).

    The graph is compiled once per input shape (static shapes run faster than a
    dynamic graph); OpenVINO keeps the compiled blobs in ``cache``, so later sessions
    load them instead of compiling again.
    """

    name = "openvino"

    def __init__(self, path: Path, precision: str = "f32", cache: Path | None = None):
        import openvino as ov

        self.core = ov.Core()
        if cache is not None:
            self.core.set_property({"CACHE_DIR": str(cache)})
        self.model = self.core.read_model(str(path))
        self.precision = precision
        self._compiled: OrderedDict[tuple, object] = OrderedDict()

    def compiled(self, shape: tuple):
        """The model compiled for input ``shape`` (B, C, H, W).

        Only the :data:`MAX_COMPILED` shapes used last are kept: each compiled model holds
        its own activation buffers, and the blocks of a large image come in several
        window shapes (corner, edge, interior), which would otherwise add up (the peak
        memory of a 16384 px image grew by ~0.1 GB per shape held).  A shape that comes
        back is loaded again from the compile cache (a fraction of a second, a few
        times per row of blocks).
        """
        shape = tuple(int(s) for s in shape)
        if shape in self._compiled:
            self._compiled.move_to_end(shape)
        else:
            while len(self._compiled) >= MAX_COMPILED:
                self._compiled.popitem(last=False)
            model = self.model.clone()
            model.reshape({"x": list(shape)})
            threads = torch.get_num_threads()
            config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_NUM_THREADS": threads,
                      # pinned threads of several processes (dask workers) would share
                      # the first cores; pin only when this process may use them all
                      "ENABLE_CPU_PINNING": threads >= (os.cpu_count() or 1)}
            self._compiled[shape] = self.core.compile_model(model, "CPU", config)
        return self._compiled[shape]

    def is_compiled(self, shape) -> bool:
        return tuple(int(s) for s in shape) in self._compiled

    def compile(self, shape) -> float:
        t0 = time.perf_counter()
        self.compiled(shape)
        return time.perf_counter() - t0

    def run(self, x):
        out = self.compiled(x.shape)(x)
        # a copy: the request's output buffer is reused by the next call
        return np.array(next(iter(out.values())), np.float32, copy=True)
