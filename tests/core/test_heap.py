"""Freed heap memory returned while a block-wise job runs: the job's progress and result
pass through unchanged, and cancelling closes the job."""
import ctypes.util
import sys

import pytest

from unet_core.scaleout.heap import release_heap, trimmed


def _job(log):
    try:
        yield from range(3)
        return "result"
    finally:
        log.append("closed")


def test_progress_and_result_pass_through():
    log = []

    def outer():
        return (yield from trimmed(_job(log), every_s=0.0))

    gen, seen = outer(), []
    with pytest.raises(StopIteration) as end:
        while True:
            seen.append(next(gen))
    assert seen == [0, 1, 2] and end.value.value == "result" and log == ["closed"]


def test_closing_it_closes_the_job():
    log = []
    gen = trimmed(_job(log))
    assert next(gen) == 0
    gen.close()                    # a cancelled job
    assert log == ["closed"]


@pytest.mark.skipif(not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or ""),
                    reason="malloc_trim is glibc's")
def test_release_heap_runs_on_glibc():
    assert release_heap() is True
