"""dask.distributed backend: files spread over workers, huge images split into blocks.

Workers import only ``unet_core`` (numpy, torch, scikit-image, zarr): no Qt, no
napari.  Each worker process loads a model once (:func:`worker_predictor`) and keeps
it for every task of the same specification.

>>> client = make_client("local", workers=2)          # a LocalCluster, 1 thread per worker
>>> client = make_client("tcp://scheduler:8786")      # a running cluster (dask-jobqueue ...)
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from .errors import InputError
from .modelio import load_model
from .predict import Predictor
from .progress import Progress, Stage

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
        import os

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
    import socket
    from urllib.parse import urlsplit

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
    :class:`~unet_core.options.PredictOptions` (on "auto" device: a worker's GPU)."""
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
    from .blocks import segment_block
    from .window import block_predictor

    return segment_block(job, block_predictor(worker_predictor(spec)), ij)


def run_blocks(client, job, spec: dict, measure: bool = True):
    """Generator: the passes of :mod:`unet_core.blocks` over the cluster's workers;
    returns (objects, clipped, table or None) as :func:`unet_core.blocks.run_local`."""
    from distributed import as_completed

    from .blocks import concat_tables, measure_block, merge_block, offsets_of

    blocks = job.plan.blocks()
    n = len(blocks)
    yield Progress(0, n, Stage.PREDICT, {"blocks": n})
    futures = {client.submit(_segment_task, job, spec, ij, pure=False): ij for ij in blocks}
    counts, clipped = {}, 0
    for k, fut in enumerate(as_completed(futures)):
        counts[futures[fut]], c = fut.result()
        clipped += c
        yield Progress(k + 1, n, Stage.PREDICT, {"blocks": n})
    offsets = offsets_of(job.plan, counts)
    merged = client.map(merge_block, [job] * n, [offsets] * n, blocks, pure=False)
    for k, fut in enumerate(as_completed(merged)):
        fut.result()
        yield Progress(k + 1, n, Stage.INSTANCES)
    table = None
    if measure:
        futs = client.map(measure_block, [job] * n, [offsets] * n, [counts] * n, blocks, pure=False)
        tables = []
        for k, fut in enumerate(as_completed(futs)):
            tables.append(fut.result())
            yield Progress(k + 1, n, Stage.MEASURE)
        table = concat_tables(tables)
    return sum(counts.values()), clipped, table


def _file_task(spec, src: str, output_dir: str, stem: str, options: dict):
    """Segment one file on a worker; returns (result of process_file or None, error or None)."""
    from .batch import FILE_ERRORS, describe_failure, process_file
    from .progress import run_to_end

    try:
        return run_to_end(process_file(worker_predictor(spec), Path(src), Path(output_dir), stem,
                                       **options)), None
    except FILE_ERRORS as err:
        return None, describe_failure(err)


def submit_file(client, spec: dict, src, output_dir, stem: str, options: dict):
    """A future of :func:`unet_core.batch.process_file` (``options``: its keywords) on
    one of the workers."""
    return client.submit(_file_task, spec, str(src), str(output_dir), stem, options, pure=False)


def run_files(pred, todo, output_dir, options, client, status, status_path, report, n):
    """Small files as one task each over the workers; images larger than memory one
    after another, each split into blocks over the workers."""
    from distributed import as_completed

    from .batch import FILE_ERRORS, count_files, file_iter, record_result
    from .large import wants_blocks
    from .lazyio import open_image

    spec = predictor_spec(pred)
    futures, big = {}, []
    for item in todo:
        src = item[0]
        try:
            is_big = wants_blocks(open_image(src)) if src.suffix.lower() in (".tif", ".tiff", ".zarr") \
                else False
        except FILE_ERRORS:
            is_big = False   # the worker reports the error
        if is_big:
            big.append(item)
        else:
            futures[submit_file(client, spec, src, output_dir, item[2], options)] = item
    for fut in as_completed(futures):
        src, name, stem, content, key = futures[fut]
        result, error = fut.result()
        info = record_result(report, status, status_path, name, content, key, result, error)
        yield Progress(count_files(report), n, "batch", info)
    for entry in big:
        yield from file_iter(pred, entry, output_dir, options, status, status_path, report, n,
                             client=client, spec=spec)
