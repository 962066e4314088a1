"""ChildJob: a progress generator run in a child process, as if it ran here."""
import os
import signal
import time

import pytest

from unet_core import InputError, Progress
from unet_core.scaleout.child import ChildDied, ChildJob, JobCancelled


def counting(n, marker=None, delay=0.0):
    """Yield steps 1..n (with this process's id), return their sum; ``marker`` is written
    when the generator is closed or ends (its clean-up ran)."""
    try:
        for k in range(1, n + 1):
            time.sleep(delay)
            yield Progress(k, n, "train", {"pid": os.getpid()})
        return sum(range(1, n + 1))
    finally:
        if marker:
            with open(marker, "w") as f:
                f.write("closed")


def failing(kind):
    yield Progress(0, 1, "load")
    if kind == "input":
        raise InputError("that input is wrong; give another")
    raise ZeroDivisionError("division by zero")


def niceness():
    """Reports the child's CPU priority (POSIX nice value)."""
    yield Progress(0, 1, "train")
    return os.nice(0)


def _drain(gen):
    seen = []
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return seen, stop.value
        if p is not None:
            seen.append(p)


def test_progress_and_result_come_back_from_another_process(tmp_path):
    seen, result = _drain(ChildJob(counting, 5, str(tmp_path / "m")).run())
    assert [p.done for p in seen] == [1, 2, 3, 4, 5] and result == 15
    assert {p.info["pid"] for p in seen} != {os.getpid()}
    assert (tmp_path / "m").read_text() == "closed"


@pytest.mark.parametrize("kind, error, text", [("input", InputError, "give another"),
                                               ("zero", ZeroDivisionError, "division by zero")])
def test_errors_in_the_child_are_raised_here(kind, error, text):
    with pytest.raises(error, match=text):
        _drain(ChildJob(failing, kind).run())


def test_cancel_stops_before_the_next_step_and_cleans_up(tmp_path):
    job = ChildJob(counting, 10_000, str(tmp_path / "m"), delay=0.05)
    gen, steps = job.run(), []
    with pytest.raises(JobCancelled):
        for p in gen:
            if p is not None:
                steps.append(p.done)
                if p.done == 3:
                    job.cancel()
    assert max(steps) <= 5       # the step in flight, at most one more
    assert (tmp_path / "m").read_text() == "closed"     # the job's clean-up ran in the child


def test_a_killed_child_is_reported():
    job = ChildJob(counting, 10_000, delay=0.02)
    gen = job.run()
    with pytest.raises(ChildDied, match="killed by SIGKILL"):
        for p in gen:
            if p is not None and p.done == 2:
                os.kill(job.pid, signal.SIGKILL)
    with pytest.raises(ProcessLookupError):
        os.kill(job.pid, 0)        # gone (and reaped): its memory is free


def test_closing_the_generator_early_ends_the_child():
    job = ChildJob(counting, 10_000, delay=0.02)
    gen = job.run()
    while (p := next(gen)) is None or p.done < 2:
        pass
    gen.close()
    with pytest.raises(ProcessLookupError):
        os.kill(job.pid, 0)


@pytest.mark.skipif(not hasattr(os, "nice"), reason="POSIX only")
def test_the_child_can_run_at_a_lower_priority():
    """The fine-tuning child runs niced, so the viewer gets the CPU when it needs it."""
    here = os.nice(0)
    _, result = _drain(ChildJob(niceness, nice=7).run())
    assert result == min(here + 7, 19)
    _, result = _drain(ChildJob(niceness).run())
    assert result == here
