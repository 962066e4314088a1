"""The network a Predictor runs: its engine, made once, compiled per batch shape.

See :mod:`unet_core.inference.backends` for what makes an engine (PyTorch, OpenVINO, ONNX
Runtime) and :mod:`unet_core.inference.engines` for the engines themselves.
"""
from __future__ import annotations

import logging
from collections.abc import Generator

import numpy as np

from ..progress import EngineReady, Progress, Stage, run_to_end
from . import backends

log = logging.getLogger(__name__)


class Network:
    """A network on a device, run by a backend engine at a precision, with or without
    test-time augmentation (``tta``).

    One per :class:`~unet_core.inference.predict.Predictor`, shared by its copies
    (:meth:`~unet_core.inference.predict.Predictor.with_options`): one export and compile.
    ``backend`` and ``precision`` are resolved names (:func:`unet_core.inference.backends.resolve`).
    """

    def __init__(self, net, device, backend: str, precision: str, tta: bool = False):
        self.net, self.device, self.tta = net, device, bool(tta)
        #: The :mod:`~unet_core.inference.backends` engine, or None before the first image.
        self.engine = None
        #: What making the engine cost (:func:`~unet_core.inference.backends.make_engine`).
        self.info = {"backend": backend, "precision": precision}
        self._probe = None
        if backend == "torch":
            self.engine, self.info = backends.make_engine(net, device, backend, precision)

    @property
    def backend(self) -> str:
        """What runs the network: "torch", "openvino" or "onnxruntime"."""
        return self.info["backend"]

    @property
    def precision(self) -> str:
        """"f32", "bf16" or (CUDA) "amp"."""
        return self.info["precision"]

    def prepare_iter(self, shape=None) -> Generator[Progress, None, dict]:
        """Make the engine once (export and load for the fast backends, or fall back to
        PyTorch with a :class:`~unet_core.inference.backends.BackendWarning`) and compile it for
        the (B, C, th, tw) batch ``shape``, yielding Progress of stage "compile" whose
        info says what it cost.  Returns :attr:`info`."""
        if self.engine is None:
            yield Progress(0, 1, Stage.COMPILE, EngineReady.of(self.info))
            self.engine, self.info = backends.make_engine(self.net, self.device, self.backend,
                                                          self.precision, shape)
            log.info("%s ready in %.2f s", backends.describe(self.backend, self.precision),
                     self.info["seconds"])
            yield Progress(1, 1, Stage.COMPILE, EngineReady.of(self.info))
        elif shape is not None and not self.engine.is_compiled(shape):
            yield Progress(0, 1, Stage.COMPILE, EngineReady.of(self.info))
            seconds = self.engine.compile(shape)
            self.info["seconds"] = self.info.get("seconds", 0.0) + seconds
            yield Progress(1, 1, Stage.COMPILE, EngineReady.of(self.info))
        return self.info

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(B, th, tw, C) float32 -> sigmoid probabilities (B, C_out, th, tw) float32."""
        if self.engine is None:
            run_to_end(self.prepare_iter())
        return self.engine(x.transpose(0, 3, 1, 2), self.tta)

    def probe(self, x: np.ndarray) -> np.ndarray:
        """:meth:`forward` for the size estimate's small probe windows: always in
        PyTorch.  A compiled backend keeps one input shape (memory), so each probe shape
        would evict the image's own, and compiling that again with its buffers costs
        ~1 s at 2048 px, more than the probes themselves."""
        if self.engine is None:
            run_to_end(self.prepare_iter())
        if self.backend == "torch":
            return self.forward(x)
        if self._probe is None:
            self._probe = backends.make_engine(self.net, self.device, "torch", "f32")[0]
        return self._probe(x.transpose(0, 3, 1, 2), self.tta)
