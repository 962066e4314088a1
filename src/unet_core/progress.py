"""The progress protocol of long work: generators that yield :class:`Progress`.

Long operations are generator functions that ``yield Progress(...)`` often and
``return`` their result.  A caller that wants only the result uses
:func:`run_to_end`; a GUI or CLI iterates, shows progress, and cancels by simply
not asking for the next item (``gen.close()``).
"""
from __future__ import annotations

from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

T = TypeVar("T")


class Stage(str, Enum):
    """Stages of long work (equal to their plain string values): the one list of them;
    what a user reads for each is the widgets' one table keyed by these."""

    LOAD = "load"            # loading a model (or starting the process that does)
    COMPILE = "compile"      # a fast backend's one-off export and compile
    ESTIMATE = "estimate"    # deciding stain, normalization and nucleus size
    PREDICT = "predict"      # tiles through the network
    INSTANCES = "instances"  # probabilities to instance labels
    MEASURE = "measure"      # per-object measurements of a block-wise result
    WRITE = "write"          # writing a large result block by block
    PYRAMID = "pyramid"      # the smaller levels of a large result, for display
    FILE = "file"            # one file of a batch, in progress
    BATCH = "batch"          # a file of a batch finished (done, skipped or failed)
    VALIDATE_BASE = "validate-base"   # scoring the model a fine-tuning starts from
    TRAIN = "train"          # one optimisation step
    VALIDATE = "validate"    # scoring the network being trained

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class FileStep:
    """Payload of stage ``FILE``: where one file of a batch is."""

    file: str           # its name
    stage: str          # the stage of its own work (predict, instances, write ...)
    fraction: float     # how far that stage is, 0 to 1


@dataclass(frozen=True)
class FileStatus:
    """Payload of stage ``BATCH``: a file of a batch finished."""

    file: str
    status: str                 # "done", "skipped" or "failed"
    error: str | None = None    # why it failed
    warning: str | None = None  # a result to check (see the plausibility checks)


@dataclass(frozen=True)
class EngineReady:
    """Payload of stage ``COMPILE``: the engine a network runs on, what making it cost."""

    backend: str = "?"
    precision: str = "?"
    seconds: float = 0.0
    exported: bool = False      # the network was exported now (not found in the cache)
    fallback: str | None = None  # why the backend asked for could not be used

    @classmethod
    def of(cls, info: dict) -> EngineReady:
        """From the info of :func:`~unet_core.inference.backends.make_engine` (keys missing early on)."""
        return cls(**{k: v for k, v in info.items() if k in cls.__dataclass_fields__ and v is not None})


@dataclass(frozen=True)
class TrainStep:
    """Payload of stage ``TRAIN``: one optimisation step's figures."""

    step: int
    loss: float
    lr: float
    val: dict | None = None                    # scores on the held-back examples, when it validated
    parts: dict = field(default_factory=dict)  # the loss's parts (bce, dice)

    @classmethod
    def of(cls, record: dict) -> TrainStep:
        """From a training record (``step``, ``loss``, ``lr``, the loss parts, ``val``)."""
        parts = {k: v for k, v in record.items() if k not in ("step", "loss", "lr", "val")}
        return cls(record["step"], record["loss"], record["lr"], record.get("val"), parts)


@dataclass(frozen=True)
class ExampleScored:
    """Payload of stages ``VALIDATE`` and ``VALIDATE_BASE``: an example was scored."""

    example: str        # its id


@dataclass(frozen=True)
class SizeGuess:
    """Payload of stage ``ESTIMATE``: the nucleus diameter the first looks found, in pixels."""

    first_guess: float


@dataclass(frozen=True)
class PredictStart:
    """Payload of the first ``PREDICT`` progress: the settings the image is read with."""

    settings: dict      # :meth:`~unet_core.inference.image_settings.ImageSettings.as_record`


@dataclass(frozen=True)
class PlaneTiles:
    """Payload of stage ``PREDICT`` per batch of tiles: the plane and its tile count."""

    plane: int
    tiles: int


@dataclass(frozen=True)
class BlockCount:
    """Payload of stage ``PREDICT`` of a block-wise run: how many blocks in all."""

    blocks: int


@dataclass(frozen=True)
class ExportStep:
    """Payload of an export's progress: the step about to run."""

    step: str


#: What :attr:`Progress.info` holds: one payload type per kind of progress.
Payload = (FileStep | FileStatus | EngineReady | TrainStep | ExampleScored | SizeGuess
           | PredictStart | PlaneTiles | BlockCount | ExportStep)


@dataclass(frozen=True)
class Progress:
    """How far a long operation is.

    Attributes
    ----------
    done, total : int
        Units finished and units in all (tiles, files, steps ...).
    stage : str
        What is being done ("predict", "instances", "train" ...).
    info : Payload or None
        Extra figures for the stage, a frozen dataclass of its own per kind of
        progress (:class:`TrainStep` for ``TRAIN``, :class:`FileStep` for ``FILE`` ...).
    """

    done: int
    total: int
    stage: str = ""
    info: Payload | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def run_to_end(gen: Generator[Progress, None, T], callback: Callable[[Progress], None] | None = None) -> T:
    """Drive a progress generator to its end and return its result."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(p)


def relay(gen: Generator[Progress, None, T], transform: Callable[[Progress], Progress]
          ) -> Generator[Progress, None, T]:
    """Yield ``transform(p)`` for each Progress ``p`` of ``gen`` and return its value:
    ``result = yield from relay(inner, lambda p: ...)`` reports an inner job's progress
    as the outer job's."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        yield transform(p)


def prefetched(fn: Callable, items) -> Generator:
    """``(item, fn(item))`` for each of ``items``, the next item's ``fn`` computed in a
    background thread while the caller works on the current one (reading and
    normalising the next tiles while the network runs on these).  Closing the
    generator early waits for the one call in flight."""
    items = list(items)
    if len(items) < 2:
        for item in items:
            yield item, fn(item)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(fn, items[0])
        for k, item in enumerate(items):
            value = pending.result()
            if k + 1 < len(items):
                pending = pool.submit(fn, items[k + 1])
            yield item, value
