"""One job runner for every dock widget: start, cancel, and how a job ends.

A widget hands :class:`JobRunner` a generator function (a job of :mod:`._common` or
:mod:`._training`) and says only what is its own: how progress reads, what a result
means (the status line it leaves), what else a failure should say, and what to tidy
when the job is over.  The runner owns the rest, the same for all widgets: the
worker off the GUI thread (signals connected before it starts), the Run / Cancel
buttons and the progress bar, error messages as one readable notification, and the
final "Done" / "Failed" / "Cancelled".
"""
from __future__ import annotations

import gc
import logging
from collections.abc import Callable

from unet_core import UNetError
from unet_core.errors import explain, is_out_of_memory
from unet_core.scaleout.child import JobCancelled

log = logging.getLogger(__name__)

#: Freeze the objects that exist when a job starts out of the garbage collector's
#: sight while jobs run (see :func:`hold_heap`).
FREEZE_GC = True
_jobs_running = 0


def hold_heap(start: bool) -> None:
    """``gc.freeze()`` when the first job starts, ``gc.unfreeze()`` when the last ends.

    A full collection walks every object of napari's heap (~0.3 s with the GIL held:
    the viewer freezes) and, while a job allocates, one comes every few seconds.
    Frozen, the objects that existed before the job are not walked; the job's own
    garbage is collected as usual, and the frozen objects are looked at again once
    the jobs are over.
    """
    global _jobs_running
    _jobs_running += 1 if start else -1
    if start and _jobs_running == 1 and FREEZE_GC:
        gc.freeze()
    elif not start and _jobs_running == 0:
        gc.unfreeze()


def describe_error(exc: BaseException, action: str = "Segmentation") -> str:
    """A message for the person at the keyboard (:func:`unet_core.errors.explain`);
    unexpected errors are logged in full."""
    if isinstance(exc, UNetError):
        return str(exc)
    if not is_out_of_memory(exc):
        log.error("%s failed", action, exc_info=(type(exc), exc, exc.__traceback__))
    return f"{action} failed: {explain(exc)}"


def _on_warned(args: tuple) -> None:
    """A worker's warning (``warnings.showwarning`` arguments): the engine's own ones
    (e.g. a fast backend falling back to PyTorch) reach the user; libraries' notes do not."""
    from napari.utils.notifications import show_warning

    from unet_core.inference.backends import BackendWarning

    message, category = args[0], args[1]
    if issubclass(category, BackendWarning):
        show_warning(str(message))


class JobRunner:
    """Runs a widget's jobs off the GUI thread, one at a time, shown in its run bar.

    Parameters
    ----------
    run_bar : RunBar
        Its Cancel button cancels the job; it shows progress and the ending.
    action : str
        What the jobs do, for error messages ("Segmentation").
    progress : callable, optional
        ``progress(p)`` for each yielded Progress (default: the run bar shows it).
    result : callable, optional
        ``result(value) -> str``: what the job returned, on the GUI thread; returns the
        status line ("Done" when it returns None).
    failure_note : callable, optional
        ``failure_note(exc) -> str``: text added to the message of a failure.
    finished : callable, optional
        Called once the job is over, however it ended (after the run bar shows it).
    cancelled : str
        Status line after a cancel.
    cancel : callable, optional
        How to stop the job (default: ask the worker to stop at its next yield).
    """

    def __init__(self, run_bar, action: str, *, progress: Callable | None = None,
                 result: Callable | None = None, failure_note: Callable | None = None,
                 finished: Callable | None = None, cancelled: str = "Cancelled",
                 cancel: Callable | None = None):
        self.run_bar, self.action, self.cancelled = run_bar, action, cancelled
        self._progress = progress or run_bar.report
        self._result, self._failure_note = result, failure_note
        self._finished, self._cancel = finished, cancel
        self.worker = None
        self._ending = ("Done", "Done")     # (bar, status line) once the job ends
        run_bar.cancel.connect(self.cancel)

    @property
    def running(self) -> bool:
        """Whether a job is in progress."""
        return self.worker is not None

    def start(self, title: str, job, *args, **kwargs):
        """Run the generator function ``job(*args, **kwargs)`` in a worker thread, with
        ``title`` in the run bar; returns the worker (None when one is running).

        superqt's worker, not napari's: napari's also posts every error with its
        traceback, and the user should get one readable message.
        """
        from napari.qt.threading import create_worker
        from superqt.utils import GeneratorWorker

        if self.running:
            return None
        worker = create_worker(job, *args, **kwargs, _worker_class=GeneratorWorker,
                               _ignore_errors=True, _start_thread=False)
        for signal in ("yielded", "returned", "errored", "aborted", "finished"):
            getattr(worker, signal).connect(getattr(self, f"_on_{signal}"))
        worker.warned.connect(_on_warned)
        self.worker, self._ending = worker, ("Done", "Done")
        self.run_bar.begin(title)
        hold_heap(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running job (it ends as "Cancelled")."""
        if self.worker is None:
            return
        if self._cancel is not None:
            self._cancel()
        else:
            self.worker.quit()

    # -- the worker's signals, on the GUI thread -------------------------------------
    def _on_yielded(self, p) -> None:
        self._progress(p)

    def _on_returned(self, value) -> None:
        message = self._result(value) if self._result is not None else None
        self._ending = ("Done", message or "Done")

    def _on_errored(self, exc) -> None:
        from napari.utils.notifications import show_error

        if isinstance(exc, JobCancelled):    # a child process stopped on request
            self._on_aborted()
            return
        message = describe_error(exc, self.action)
        if self._failure_note is not None:
            message += self._failure_note(exc)
        self._ending = ("Failed", f"Failed: {message}")
        show_error(message)

    def _on_aborted(self) -> None:
        self._ending = ("Cancelled", self.cancelled)

    def _on_finished(self) -> None:
        outcome, message = self._ending
        self.worker = None
        hold_heap(False)
        self.run_bar.end(message, outcome)
        if self._finished is not None:
            self._finished()
