"""Where lazily shown results live, and for how long (no Qt).

Segment writes the labels (and probabilities) of a large image block by block into a
folder of the per-user cache (``<cache>/napari-unet/results/<name>-XXXX``) and shows
them from there.  Each folder holds a lock file that this process keeps locked while
the folder is in use, so that:

- a folder no layer shows any more (the layer was removed, or a new run replaced its
  data) is removed at once (:func:`remove_unused`), and all of this process's folders
  when it exits;
- leftovers of processes that ended without removing theirs (a crash, a kill) are
  removed when Segment next opens (:func:`remove_leftovers`): a folder is left alone
  while its lock is held (another napari window is showing it) or when it was made
  after this process started.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from unet_core.files.safefiles import try_lock, unlock

log = logging.getLogger(__name__)

#: Layer metadata: the result folder a layer's data is read from.
RESULT_KEY = "napari_unet_result_folder"
LOCK_NAME = ".in-use.lock"
#: Folders without a lock (made by an older version that may still be running) are leftovers once older than this many seconds.
UNLOCKED_AGE_S = 7 * 24 * 3600

_held: dict[Path, int] = {}      # this process's result folders -> their locked file
_held_lock = threading.Lock()
_STARTED = time.time()


def results_root() -> Path:
    """``<user cache>/napari-unet/results``."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-unet")) / "results"


def result_folder(name: str) -> Path:
    """A new folder for a lazily shown result, locked by this process until released."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
    root = results_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{safe}-", dir=root))
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try_lock(fd)         # a new file: nobody else holds it
    with _held_lock:
        _held[folder] = fd
    return folder


def release(folder: Path) -> None:
    """Remove one of this process's result folders (its layers are gone)."""
    folder = Path(folder)
    with _held_lock:
        fd = _held.pop(folder, None)
    if fd is None:
        return
    shutil.rmtree(folder, ignore_errors=True)
    os.close(fd)
    shutil.rmtree(folder, ignore_errors=True)    # Windows: the lock file could not go while open


def remove_unused(folders, layers) -> list[Path]:
    """Remove those of ``folders`` (result folders of this process) that none of
    ``layers`` reads (layers carry their folder in ``metadata[RESULT_KEY]``); returns
    the folders removed."""
    used = {str(layer.metadata.get(RESULT_KEY)) for layer in layers}
    with _held_lock:
        unused = [Path(f) for f in folders if str(f) not in used and Path(f) in _held]
    for folder in unused:
        release(folder)
    return unused


def remove_leftovers(root: Path | None = None) -> list[Path]:
    """Remove result folders no running process uses; returns them.

    A folder is a leftover when it is older than this process and its lock can be
    taken (the process that made it has ended: the system releases a dead process's
    locks), or, for folders without a lock, when it is older than
    :data:`UNLOCKED_AGE_S`.
    """
    root = Path(root) if root is not None else results_root()
    gone = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        with _held_lock:
            ours = folder in _held
        try:
            if not ours and folder.is_dir() and _is_leftover(folder):
                shutil.rmtree(folder, ignore_errors=True)
                gone.append(folder)
        except OSError:        # another process removed it first
            continue
    if gone:
        log.info("removed %d result folder(s) left by ended sessions", len(gone))
    return gone


def _is_leftover(folder: Path) -> bool:
    age = time.time() - folder.stat().st_mtime
    if folder.stat().st_mtime >= _STARTED:
        return False
    lock = folder / LOCK_NAME
    if not lock.exists():     # made by an older version
        return age > UNLOCKED_AGE_S
    fd = os.open(lock, os.O_RDWR)
    try:
        if not try_lock(fd):
            return False
        unlock(fd)
    finally:
        os.close(fd)
    return True


_swept = threading.Event()


def remove_leftovers_soon() -> None:
    """:func:`remove_leftovers` once per process, in a background thread (removing a
    large store takes a while)."""
    if not _swept.is_set():
        _swept.set()
        threading.Thread(target=remove_leftovers, name="napari-unet leftovers",
                         daemon=True).start()


@atexit.register
def _release_all() -> None:
    for folder in list(_held):
        release(folder)
