"""dask.distributed backend: files spread over workers, huge images split into blocks.

The clients (:func:`make_client`), what workers rebuild a predictor from
(:func:`predictor_spec`), and :class:`DaskExecutor`, which runs the block passes of
:func:`unet_core.scaleout.blocks.run_blocks` as tasks; a batch's files go over the workers
through :meth:`unet_core.scaleout.batch_run.BatchRun.run`.  Workers import only ``unet_core`` (numpy, torch, scikit-image, zarr): no Qt, no
napari.  Each worker process loads a model once (:func:`worker_predictor`) and keeps
it for every task of the same specification.

>>> client = make_client("local", workers=2)          # a LocalCluster, 1 thread per worker
>>> client = make_client("tcp://scheduler:8786")      # a running cluster (dask-jobqueue ...)
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from urllib.parse import urlsplit

from ..errors import InputError
from ..inference.predict import Predictor
from ..inference.window import block_predictor
from ..models.modelio import load_model
from .blocks import segment_block

log = logging.getLogger(__name__)

# One Predictor per specification per worker process: the model is loaded by the first
# task that needs it and reused by the following ones.
_PREDICTORS: dict = {}
_LOCK = threading.Lock()


def make_client(scheduler: str = "local", workers: int | None = None, threads: int = 1):
    """A dask.distributed Client.

    Parameters
    ----------
    scheduler : str
        "local" starts a ``LocalCluster`` of ``workers`` processes with ``threads``
        threads each on this machine; anything else is the address of a running
        scheduler ("tcp://host:8786").
    workers : int, optional
        Worker processes of a local cluster (default: 2, or the CPU count if lower).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("The cluster backend needs dask.distributed: "
                         "pip install 'napari-unet[distributed]'.") from None
    if scheduler in (None, "", "local"):
        n = workers or max(1, min(2, os.cpu_count() or 1))
        cluster = LocalCluster(n_workers=n, threads_per_worker=threads, processes=True,
                               dashboard_address=None)
        return Client(cluster)
    check_scheduler(scheduler)
    try:
        return Client(scheduler, timeout=f"{CONNECT_TIMEOUT}s")
    except (OSError, TimeoutError, ValueError) as err:
        raise InputError(f"Cannot reach the dask scheduler at {scheduler!r} ({err}). Check the "
                         "address (tcp://host:8786) or use --scheduler local.") from None


#: Seconds to wait for a scheduler to answer.
CONNECT_TIMEOUT = 10


def check_scheduler(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse, within ``timeout`` seconds, a tcp:// address where no dask scheduler
    answers: nothing listening, or a listener that never speaks (a dask scheduler
    sends its handshake as soon as a connection opens; the client would wait for it
    forever).  Other protocols (tls://, ...) are left to dask."""
    if "://" in address and not address.startswith("tcp://"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port or 8786
    except ValueError:
        raise InputError(f"{address!r} is not a scheduler address; give tcp://host:port "
                         "(e.g. tcp://127.0.0.1:8786) or --scheduler local.") from None
    where = f"the dask scheduler at {address!r}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if not sock.recv(1):
                raise InputError(f"{where.capitalize()} closed the connection; is it a dask "
                                 "scheduler? Check the address or use --scheduler local.")
    except TimeoutError:
        raise InputError(f"{where.capitalize()} does not answer within {timeout:g} s; check the "
                         "address (tcp://host:port) and that a dask scheduler runs there, or use "
                         "--scheduler local.") from None
    except OSError as err:
        raise InputError(f"Cannot reach {where} ({err.strerror or err}). Check the address "
                         "(tcp://host:8786) and that the scheduler is running, or use "
                         "--scheduler local.") from None


def close_client(client) -> None:
    """Close a client and, for a LocalCluster it started, the cluster."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def predictor_spec(pred) -> dict:
    """What a worker needs to rebuild ``pred``: the model folder (or the model itself
    when it was never saved) and the Predictor's resolved
    :class:`~unet_core.inference.options.PredictOptions` (on "auto" device: a worker's GPU)."""
    model = pred.model
    options = pred.options.replace(device="cpu" if pred.device.type == "cpu" else "auto")
    return {"model": str(model.path) if model.path is not None else model, "options": options}


def worker_predictor(spec: dict):
    """The Predictor of ``spec`` in this process, built on first use."""
    model = spec["model"]
    key = (model if isinstance(model, str) else id(model), spec["options"])
    with _LOCK:
        pred = _PREDICTORS.get(key)
        if pred is None:
            if isinstance(model, str):
                model = load_model(model)
            pred = Predictor(model, spec["options"])
            _PREDICTORS.clear()    # one model per worker: never two in its memory
            _PREDICTORS[key] = pred
        return pred


def _segment_task(job, spec, ij):
    return segment_block(job, block_predictor(worker_predictor(spec)), ij)


def _as_completed(futures: dict):
    """(block, result) of each future of ``futures`` (future -> block) as it finishes."""
    from distributed import as_completed

    for fut in as_completed(futures):
        yield futures[fut], fut.result()


class DaskExecutor:
    """The passes of :func:`unet_core.scaleout.blocks.run_blocks` over a cluster's workers, one
    task per block; workers rebuild the predictor from ``spec``
    (:func:`predictor_spec`)."""

    def __init__(self, client, spec: dict):
        self.client, self.spec = client, spec

    def segment(self, job, blocks):
        futures = {self.client.submit(_segment_task, job, self.spec, ij, pure=False): ij
                   for ij in blocks}
        return _as_completed(futures)

    def map(self, fn, args: tuple, blocks):
        return _as_completed({self.client.submit(fn, *args, ij, pure=False): ij for ij in blocks})
