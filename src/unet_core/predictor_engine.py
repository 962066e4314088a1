"""The network engine a Predictor runs: made once, compiled per batch shape.

See :mod:`unet_core.backends` for what makes an engine (PyTorch, OpenVINO, ONNX
Runtime) and :mod:`unet_core.engines` for the engines themselves.
"""
from __future__ import annotations

import logging
from collections.abc import Generator

import numpy as np

from . import backends
from .progress import EngineReady, Progress, Stage, run_to_end

log = logging.getLogger(__name__)


class EngineMixin:
    """The engine methods of :class:`~unet_core.predict.Predictor` (which provides
    ``net``, ``device``, ``tta`` and the shared ``_engine`` slot)."""

    @property
    def backend(self) -> str:
        """What runs the network: "torch", "openvino" or "onnxruntime"."""
        return self._engine["info"]["backend"]

    @property
    def precision(self) -> str:
        """"f32", "bf16" or (CUDA) "amp"."""
        return self._engine["info"]["precision"]

    @property
    def engine(self):
        """The :mod:`~unet_core.backends` engine, or None before the first image."""
        return self._engine["engine"]

    @property
    def engine_info(self) -> dict:
        """What making the engine cost (:func:`~unet_core.backends.make_engine`)."""
        return self._engine["info"]

    def prepare_iter(self, shape=None) -> Generator[Progress, None, dict]:
        """Make the engine once (export and load for the fast backends, or fall back to
        PyTorch with a :class:`~unet_core.backends.BackendWarning`) and compile it for
        the (B, C, th, tw) batch ``shape``, yielding Progress of stage "compile" whose
        info says what it cost.  Returns :attr:`engine_info`."""
        if self.engine is None:
            yield Progress(0, 1, Stage.COMPILE, EngineReady.of(self.engine_info))
            engine, info = backends.make_engine(self.net, self.device, self.backend,
                                                self.precision, shape)
            self._engine.update(engine=engine, info=info)
            log.info("%s ready in %.2f s", backends.describe(self.backend, self.precision),
                     info["seconds"])
            yield Progress(1, 1, Stage.COMPILE, EngineReady.of(info))
        elif shape is not None and not self.engine.is_compiled(shape):
            yield Progress(0, 1, Stage.COMPILE, EngineReady.of(self.engine_info))
            seconds = self.engine.compile(shape)
            self.engine_info["seconds"] = self.engine_info.get("seconds", 0.0) + seconds
            yield Progress(1, 1, Stage.COMPILE, EngineReady.of(self.engine_info))
        return self.engine_info

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """(B, th, tw, C) float32 -> sigmoid probabilities (B, C_out, th, tw) float32."""
        if self.engine is None:
            run_to_end(self.prepare_iter())
        return self.engine(x.transpose(0, 3, 1, 2), self.tta)

    def _forward_probe(self, x: np.ndarray) -> np.ndarray:
        """:meth:`_forward` for the size estimate's small probe windows: always in
        PyTorch.  A compiled backend keeps one input shape (memory), so each probe shape
        would evict the image's own, and compiling that again with its buffers costs
        ~1 s at 2048 px, more than the probes themselves."""
        if self.engine is None:
            run_to_end(self.prepare_iter())
        if self.backend == "torch":
            return self._forward(x)
        probe = self._engine.get("probe")
        if probe is None:
            probe = self._engine["probe"] = backends.make_engine(self.net, self.device, "torch",
                                                                 "f32")[0]
        return probe(x.transpose(0, 3, 1, 2), self.tta)

