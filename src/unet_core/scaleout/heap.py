"""Freed heap memory handed back to the operating system while block passes run.

Reading a large image window by window allocates and frees many medium-sized arrays in
several threads (the job's, the zarr / dask readers', the network's).  glibc's malloc
keeps what they free in per-thread arenas: on a 16384 px image that is ~0.4 GB of the
process's resident memory that nothing uses.  ``malloc_trim`` returns it; elsewhere
(macOS, Windows, musl) there is nothing to call and nothing is done.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading

#: Seconds between two trims while a job runs.
TRIM_EVERY_S = 0.25


def _find_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


_trim = _find_trim()


def release_heap() -> bool:
    """Return the heap's free memory to the operating system; False where that cannot be
    done here (not glibc)."""
    if _trim is None:
        return False
    _trim(0)
    return True


def trimmed(job, every_s: float = TRIM_EVERY_S):
    """Generator: ``job``'s progress passed on, and its return value returned, while a
    thread calls :func:`release_heap` every ``every_s`` seconds (a block's network pass
    runs for seconds between two progress reports), and once at the end.  Closing it
    closes ``job``."""
    done = threading.Event()
    if _trim is not None:
        threading.Thread(target=_trim_until, args=(done, every_s), daemon=True,
                         name="napari-unet heap trim").start()
    try:
        return (yield from job)
    finally:
        done.set()
        job.close()
        release_heap()


def _trim_until(done: threading.Event, every_s: float) -> None:
    while not done.wait(every_s):
        release_heap()
