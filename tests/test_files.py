"""Files and processes: permissions of atomic writes, stale temporaries, run locks, resume=auto."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from faceregen.checkpoint import newest_checkpoint, save_checkpoint
from faceregen.errors import FaceregenError
from faceregen.train.state import RunDirectoryLock
from faceregen.utils import atomic_path, remove_stale_temporaries


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("data")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    stale = tmp_path / f".12.png.{dead_pid()}.k3j2h1g0.tmp.png"   # a prepared image's temp
    mine = tmp_path / f".12.png.{os.getpid()}.a1b2c3d4.tmp.png"
    ordinary = tmp_path / ".hidden.tmp.txt"
    for path in (stale, mine, ordinary):
        path.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert mine.exists() and ordinary.exists()


def test_resume_auto_takes_the_checkpoint_with_the_highest_step(tmp_path):
    assert newest_checkpoint(tmp_path) is None
    save_checkpoint({"step": 2}, tmp_path / "step_000002.pt")
    save_checkpoint({"step": 4}, tmp_path / "step_000004.pt")
    save_checkpoint({"step": 4}, tmp_path / "last.pt")
    assert newest_checkpoint(tmp_path) == tmp_path / "last.pt"       # same state: last.pt
    save_checkpoint({"step": 6}, tmp_path / "step_000006.pt")       # killed before last.pt
    assert newest_checkpoint(tmp_path) == tmp_path / "step_000006.pt"
    (tmp_path / "step_000008.pt").write_bytes(b"not a checkpoint")
    assert newest_checkpoint(tmp_path) == tmp_path / "step_000006.pt"


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, caplog):
    code = ("import time; from faceregen.train.state import RunDirectoryLock; "
            f"lock = RunDirectoryLock({str(tmp_path)!r}); lock.acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FaceregenError, match=f"another training \\(pid {holder.pid} on"):
            RunDirectoryLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunDirectoryLock(tmp_path)
    with caplog.at_level(logging.INFO, logger="faceregen.train"):
        lock.acquire()
    assert f"left by pid {holder.pid}" in caplog.text
    lock.release()
