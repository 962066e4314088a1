"""Locks that die with their process, judged by taking them (never by probing a pid),
on the POSIX path and on the byte-range path Windows takes (msvcrt.locking)."""
import fcntl
import os
import subprocess
import sys
import textwrap

import pytest

from unet_core.errors import InputError
from unet_core.files.safefiles import (
    LockHeld,
    byte_range_locks,
    folder_lock,
    lock_file,
    process_alive,
    replace_dir,
    sweep_parts,
)


def _holder(code: str) -> subprocess.Popen:
    """A process that runs ``code``, prints "ready" and sleeps until killed."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code) + "\nprint('ready', flush=True)"
                             "\nimport time; time.sleep(120)"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


def test_a_held_lock_names_its_holder_and_dies_with_it(tmp_path):
    path = tmp_path / "x.lock"
    proc = _holder(f"from unet_core.files.safefiles import lock_file\nlock = lock_file({str(path)!r})\n"
                   "lock.__enter__()")
    try:
        with pytest.raises(LockHeld) as held, lock_file(path):
            pass
        assert held.value.holder == str(proc.pid) and not held.value.removed
    finally:
        _kill(proc)                 # SIGKILL: no clean-up runs, the system drops the lock
    with lock_file(path) as got:
        assert got.read_text().strip() == str(os.getpid())
    assert not path.exists()


def test_a_folder_lock_refuses_a_second_run_with_a_message(tmp_path):
    with folder_lock(tmp_path, "batch"), pytest.raises(InputError, match="Another batch is writing"):
        with folder_lock(tmp_path, "batch"):
            pass
    with folder_lock(tmp_path):     # free again, and no lock file left between runs
        pass
    assert list(tmp_path.iterdir()) == []


def _lockf(fd, mode, nbytes):
    """POSIX byte-range locks called as msvcrt.locking is: ``nbytes`` from the file position."""
    fcntl.lockf(fd, mode, nbytes, 0, os.SEEK_CUR)


def test_the_byte_range_path_windows_takes(tmp_path):
    """The msvcrt path's logic (lock one byte past the content, the holder's id at the
    start stays readable, the file position kept), run on real POSIX byte-range locks:
    msvcrt itself exists on Windows only."""
    path = tmp_path / "x.lock"
    proc = _holder(f"""
        import fcntl, os
        from unet_core.files.safefiles import byte_range_locks
        def _lockf(fd, mode, nbytes):
            fcntl.lockf(fd, mode, nbytes, 0, os.SEEK_CUR)
        take, _ = byte_range_locks(_lockf, fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_UN)
        fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)
        os.write(fd, str(os.getpid()).encode())
        assert take(fd)""")
    take, release = byte_range_locks(_lockf, fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_UN)
    fd = os.open(path, os.O_RDWR)
    try:
        assert not take(fd)                              # held by the other process
        assert os.read(fd, 64).decode() == str(proc.pid)   # readable, position kept
        _kill(proc)
        assert take(fd)                                  # died with its process
        release(fd)
    finally:
        os.close(fd)


def test_temporary_files_of_a_running_writer_stay_and_of_a_killed_one_go(tmp_path):
    proc = _holder(f"""
        from unet_core.files.safefiles import atomic_write
        w = atomic_write({str(tmp_path / 'a.tif')!r})
        w.__enter__().write_bytes(b"half")""")
    [part] = list(tmp_path.glob(".a.tif.*.part"))
    try:
        assert process_alive(proc.pid) and sweep_parts(tmp_path) == [] and part.exists()
    finally:
        _kill(proc)
    assert sweep_parts(tmp_path) == [part] and not part.exists()
    assert not process_alive(proc.pid)


def test_replace_dir_swaps_a_folder_whole(tmp_path):
    final, new = tmp_path / "out.zarr", tmp_path / ".out.zarr.new"
    final.mkdir()
    (final / "old").write_text("old")
    new.mkdir()
    (new / "new").write_text("new")
    discarded = []
    assert replace_dir(new, final, discarded.append) == final
    assert [p.name for p in final.iterdir()] == ["new"]
    [old] = discarded
    assert old.name.startswith(".out.zarr.old-") and (old / "old").read_text() == "old"
    replace_dir(final, tmp_path / "moved")               # the default discard deletes it
    assert sorted(p.name for p in tmp_path.iterdir()) == [old.name, "moved"]
