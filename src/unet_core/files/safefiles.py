"""Files written whole or not at all, folders swapped in whole, and locks that die
with their process, on POSIX and on Windows.

* :func:`atomic_write` writes to a temporary file beside the target and renames it
  onto the target when complete; :func:`replace_dir` does the same for a folder.
* :func:`lock_file` holds an exclusive lock on a file for the life of a block:
  ``fcntl.flock`` where it exists, ``msvcrt.locking`` (Windows) otherwise.  The
  system drops the lock when its process ends in any way, so whether the owner of a
  lock (or of a temporary file) still runs is decided by trying to take its lock,
  never by probing a process id (on Windows ``os.kill(pid, 0)`` ends the process).
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError

try:
    import fcntl
except ImportError:       # Windows
    fcntl = None

# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

_HOST = socket.gethostname().replace(".", "-")
_swept: set[Path] = set()
#: Where each process that writes files holds a lock named by its id (see :func:`process_alive`).
LIVE_DIR = Path(tempfile.gettempdir()) / "napari-unet-live"
#: The byte a byte-range lock (Windows) covers: past any content, so the holder's id
#: written at the start stays readable (Windows locks forbid reading what they cover).
LOCK_BYTE = 1 << 30
#: The lock file of an output folder (:func:`folder_lock`).
FOLDER_LOCK = ".napari-unet.lock"


class LockHeld(OSError):
    """Another process holds the lock (``holder``: its id as it wrote it, or ""), or
    has just released and removed it (``removed``)."""

    def __init__(self, path, holder: str = "", removed: bool = False):
        super().__init__(errno.EAGAIN, "locked by another process", str(path))
        self.holder, self.removed = holder, removed


def byte_range_locks(locking: Callable, nb_lock: int, unlock: int) -> tuple[Callable, Callable]:
    """(take, release) over a byte-range locking call of the ``msvcrt.locking`` kind
    (``locking(fd, mode, nbytes)`` locks ``nbytes`` from the file position), on
    :data:`LOCK_BYTE`.  ``take(fd)`` is True when taken, False when held elsewhere."""
    def at_lock_byte(fd, mode) -> None:
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, LOCK_BYTE, os.SEEK_SET)
        try:
            locking(fd, mode, 1)
        finally:
            os.lseek(fd, pos, os.SEEK_SET)

    def take(fd: int) -> bool:
        try:
            at_lock_byte(fd, nb_lock)
        except OSError:
            return False
        return True

    def release(fd: int) -> None:
        with contextlib.suppress(OSError):
            at_lock_byte(fd, unlock)
    return take, release


def lock_functions(fcntl_module=fcntl) -> tuple[Callable, Callable]:
    """(take, release) of the exclusive lock of an open file, for this system:
    ``flock`` on POSIX, else ``msvcrt.locking`` (:func:`byte_range_locks`)."""
    if fcntl_module is None:
        import msvcrt

        return byte_range_locks(msvcrt.locking, msvcrt.LK_NBLCK, msvcrt.LK_UNLCK)

    def take(fd: int) -> bool:
        try:
            fcntl_module.flock(fd, fcntl_module.LOCK_EX | fcntl_module.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(fd: int) -> None:
        fcntl_module.flock(fd, fcntl_module.LOCK_UN)
    return take, release


try_lock, unlock = lock_functions()


def names_open_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``: a lock file removed (and
    perhaps made anew) by the run that held it is not the one a waiting run opened."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 64).decode(errors="replace").strip()


@contextlib.contextmanager
def lock_file(path, refuse: Callable[[LockHeld], Exception] | None = None):
    """Hold the exclusive lock of ``path`` (made if missing) for the life of the block,
    with this process's id written in it; the file is removed when the block ends,
    while still locked (a run that opened it meanwhile sees it is gone instead of
    locking a stale file).  Windows cannot remove an open file: it stays, unlocked.

    Raises
    ------
    LockHeld
        Another process holds it, or removed it just now; ``refuse(err)`` is raised
        instead when given (a message for the user).
    """
    refuse = refuse or (lambda err: err)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not try_lock(fd):
            raise refuse(LockHeld(path, _holder(fd))) from None
        try:
            if not names_open_file(path, fd):     # removed by the run that held it just now
                raise refuse(LockHeld(path, removed=True))
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
            try:
                yield path
            finally:
                with contextlib.suppress(OSError):
                    path.unlink()
        finally:
            unlock(fd)
    finally:
        os.close(fd)


def folder_lock(folder, what: str = "batch"):
    """An exclusive lock on ``folder`` (its file ``.napari-unet.lock``) for the life of
    the block, so two runs cannot write the same outputs at once (:func:`lock_file`).

    Raises
    ------
    InputError
        Another run holds it: what to do instead.
    """
    def refuse(err: LockHeld) -> InputError:
        who = f" (process {err.holder})" if err.holder else ""
        return InputError(f"Another {what} is writing to {folder}{who}; wait for it to finish or "
                          "choose another output folder.")
    return lock_file(Path(folder) / FOLDER_LOCK, refuse)


# -- the life of this process, as a lock --------------------------------------------

_live: dict[int, int] = {}     # this process's id -> the descriptor of its live lock


def _live_path(pid: int) -> Path:
    return LIVE_DIR / f"{_HOST}.{pid}.lock"


def hold_live_lock() -> None:
    """Lock ``LIVE_DIR/<host>.<pid>.lock`` for the rest of this process (once), so that
    :func:`process_alive` can tell it runs.  Without a writable temporary folder it
    does nothing."""
    pid = os.getpid()
    if pid in _live:
        return
    with contextlib.suppress(OSError):
        LIVE_DIR.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):     # shared by the users of this machine
            os.chmod(LIVE_DIR, 0o1777)
        path = _live_path(pid)
        for _ in range(100):    # a sweep may hold it a moment, or remove an old one
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if try_lock(fd) and names_open_file(path, fd):
                _live[pid] = fd
                atexit.register(_drop_live_lock, path, pid)
                return
            os.close(fd)
            time.sleep(0.01)


def _drop_live_lock(path: Path, pid: int) -> None:
    if os.getpid() == pid:
        with contextlib.suppress(OSError):
            path.unlink()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs, as far as its live lock says
    (:func:`hold_live_lock`): no lock file, or a lock we can take, means it is gone
    (the file is then removed).  A file that cannot be opened counts as alive."""
    path = _live_path(pid)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        if not try_lock(fd):
            return True
        with contextlib.suppress(OSError):
            path.unlink()
        unlock(fd)
        return False
    finally:
        os.close(fd)


# -- whole files and folders ---------------------------------------------------------

def sweep_parts(folder) -> list[Path]:
    """Delete the temporary files of :func:`atomic_write` that a killed process left in
    ``folder`` (``.<name>.<host>.<pid>.<random>.part`` whose process on this host is gone).

    Returns the files removed.  Temporary files of other hosts (a shared file system)
    and of running processes are left alone.
    """
    removed = []
    for part in Path(folder).glob(f".*.{_HOST}.*.part"):
        pid = part.name[:-len(".part")].split(".")[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                part.unlink()
                removed.append(part)
    return removed


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any error the temporary file is removed and ``path`` is left as it was.  The
    temporary name carries this host and process id, so the files left by a killed
    process are swept away the next time a file is written into the same folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hold_live_lock()
    if path.parent not in _swept:
        _swept.add(path.parent)
        sweep_parts(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".part",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600, and some writers (safetensors) replace the file: give the
        # result the permissions of any other new file
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def replace_dir(new, final, discard: Callable[[Path], None] = _remove_tree) -> Path:
    """Put the complete folder ``new`` at ``final``: the old ``final`` (if any) is
    renamed to a hidden ``.<name>.old-<random>`` first, so ``final`` is always the old
    complete folder or the new one; the old one is then deleted with ``discard``.
    A kill in between leaves both complete (the caller's sweep finishes the swap)."""
    new, final = Path(new), Path(final)
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    if old.exists():
        discard(old)
    return final
