"""Run a progress generator in a child process and stream its progress back.

Training in the process of a GUI puts the GUI at the mercy of the training: a crash
takes the open viewer (and unsaved edits) with it, and GPU memory stays held until
the GUI closes.  :class:`ChildJob` runs a generator function (the ``*_iter`` form of a
long operation) in a fresh interpreter (the ``spawn`` start method: no fork of a
process that holds Qt, threads or a CUDA context) and makes it look local again:
:meth:`ChildJob.run` is a generator that yields the child's :class:`Progress` and
returns its result.  When the child ends, its memory (GPU memory included) is gone.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Generator
from typing import Any

import torch

from ..errors import UNetError
from ..progress import Progress

log = logging.getLogger(__name__)


class JobCancelled(UNetError):
    """The job stopped because :meth:`ChildJob.cancel` was called."""


class ChildDied(UNetError):
    """The child process ended without a result (killed, crashed, out of memory)."""


class ChildFailed(UNetError):
    """The job raised an error in the child that cannot travel back as itself."""


def _portable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling, else a :class:`ChildFailed` that names it."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:   # noqa: BLE001 (any pickling problem: fall back to a message)
        return ChildFailed(f"{type(err).__name__}: {err}")


def _child_main(conn, cancel, threads: int | None, target: Callable, args: tuple,
                kwargs: dict, nice: int = 0) -> None:
    """The child's side: drive ``target(*args, **kwargs)`` and send what it yields.

    Messages are ``(kind, value)``: ("progress", Progress), then one of ("result",
    value), ("cancelled", None), ("error", exception, traceback text).
    """
    # Ctrl-C in a terminal reaches the whole process group: the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice and hasattr(os, "nice"):
        os.nice(nice)
    if threads:
        torch.set_num_threads(threads)
    try:
        gen = target(*args, **kwargs)
        while True:
            if cancel.is_set():
                gen.close()      # the generator's own clean-up runs here, in the child
                conn.send(("cancelled", None))
                return
            try:
                p = next(gen)
            except StopIteration as stop:
                conn.send(("result", stop.value))
                return
            conn.send(("progress", p))
    except (BrokenPipeError, EOFError):
        return     # the parent is gone: nobody to report to, stop
    except BaseException as err:   # noqa: BLE001 (every error goes back to the parent)
        conn.send(("error", _portable(err), traceback.format_exc()))
    finally:
        conn.close()


def _signal_name(exitcode: int | None) -> str:
    if exitcode is None or exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        return f"killed by {signal.Signals(-exitcode).name}"
    except ValueError:
        return f"killed by signal {-exitcode}"


class ChildJob:
    """A generator function run in a child process, driven from the parent.

    Parameters
    ----------
    target : callable
        A generator function importable by its qualified name (a module-level
        function), yielding :class:`Progress` and returning a picklable result.
    *args, **kwargs
        Its (picklable) arguments.
    what : str
        What the job does, for messages ("Fine-tuning").
    threads : int, optional
        ``torch.set_num_threads`` in the child (default: torch's own choice).
    nice : int
        Lower the child's CPU priority by this much (POSIX ``nice``): it still uses
        every idle core, but a process that needs the CPU (a viewer drawing) gets it.

    Notes
    -----
    The parent's ``__main__`` must be guarded by ``if __name__ == "__main__"`` (as
    napari's is), as always with the spawn start method.
    """

    def __init__(self, target: Callable, *args, what: str = "The job", threads: int | None = None,
                 nice: int = 0, **kwargs):
        self.target, self.args, self.kwargs = target, args, kwargs
        self.what, self.threads, self.nice = what, threads, nice
        self._ctx = mp.get_context("spawn")
        self._cancel = self._ctx.Event()
        self._proc = None

    @property
    def pid(self) -> int | None:
        """Process id of the child while it runs (None before it starts)."""
        return self._proc.pid if self._proc is not None else None

    def cancel(self) -> None:
        """Ask the child to stop before its next step (it cleans up, then ends)."""
        self._cancel.set()

    def kill(self) -> None:
        """End the child at once (when asking is not enough)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    def run(self, poll: float = 0.1) -> Generator[Progress | None, None, Any]:
        """Start the child; yield its progress, and None every ``poll`` s while it is
        quiet (so a caller's loop stays live); return its result.

        Raises
        ------
        JobCancelled
            After :meth:`cancel`, once the child has ended.
        ChildDied
            The child ended without a result (killed, crashed).
        UNetError and others
            The job's own error, raised in the child and sent back.
        """
        receiver, sender = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(
            target=_child_main, name=f"unet_core {self.what}", daemon=True,
            args=(sender, self._cancel, self.threads, self.target, self.args, self.kwargs,
                  self.nice))
        self._proc.start()
        sender.close()      # only the child writes: EOF here means the child is gone
        message = None
        try:
            while message is None:
                if not receiver.poll(poll):
                    yield None
                    continue
                try:
                    kind, *value = receiver.recv()
                except (EOFError, OSError):
                    break
                if kind == "progress":
                    yield value[0]
                else:
                    message = (kind, value)
            self._proc.join()
        finally:
            receiver.close()
            if self._proc.is_alive():   # the caller stopped early: do not leave it running
                self.cancel()
                self._proc.join(30)
                self.kill()
                self._proc.join()
        if message is None:
            raise ChildDied(f"{self.what} stopped unexpectedly: its process was "
                            f"{_signal_name(self._proc.exitcode)} (for example out of memory, "
                            "or ended from outside).")
        kind, value = message
        if kind == "result":
            return value[0]
        if kind == "cancelled":
            raise JobCancelled(f"{self.what} was cancelled.")
        err, text = value
        log.debug("%s failed in its process:\n%s", self.what, text)
        raise err
