"""Jobs hide the heap that existed before them from the garbage collector, and give it back."""
import gc
import weakref

import pytest

from napari_unet._widgets._jobs import JobRunner
from napari_unet._widgets._run_bar import RunBar
from unet_core import Progress
from unet_core.progress import Stage

pytestmark = pytest.mark.gui


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


def test_a_jobs_garbage_is_collected_during_and_after_the_job(qtbot):
    bar = RunBar()
    qtbot.addWidget(bar)
    runner = JobRunner(bar, "Test")
    seen = {}
    gc.disable()     # no automatic collection until the job starts: `before` is still there
    before = Node()  # garbage already when the job starts: frozen with the heap
    old = weakref.ref(before)
    del before

    def job():
        made = Node()
        mine = weakref.ref(made)
        del made
        seen["frozen"] = gc.get_freeze_count()
        gc.collect()                  # a full collection while the job runs
        seen["job garbage freed"] = mine() is None
        seen["old garbage kept"] = old() is not None
        yield Progress(1, 1, Stage.PREDICT)
        return 1

    try:
        runner.start("test", job)
    finally:
        gc.enable()
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    assert seen == {"frozen": seen["frozen"], "job garbage freed": True, "old garbage kept": True}
    assert seen["frozen"] > 0
    assert gc.get_freeze_count() == 0      # the job is over: nothing stays frozen
    gc.collect()
    assert old() is None                   # and what was garbage before it is freed too
