"""One run at a time per DATA_ROOT: an exclusive lock file naming its holder.

`DATA_ROOT/.recs-run.lock` is held with `flock(LOCK_EX)` by whoever writes DATA_ROOT (`recs run`, `recs stage`,
`recs rollback`, `recs purge`, `recs forget`, each task of the Airflow DAG) and holds one JSON line: owner, host,
pid, start time. The kernel drops a flock when its process dies, however it dies (kill -9 included), so a lock
left by a dead process is simply taken over, and a pid reused by an unrelated process can never keep it. A
second run waits up to `lock.wait_seconds` for it, then fails with a message naming the holder. The file is
never deleted (deleting a flock file lets two processes each lock a different file); release empties it.
Once a run holds the lock no other writer is alive, so it removes the leftovers of killed runs
(`io.clean_leftovers`).
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from typing import Iterator

from jobs.storage import io
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)

# path -> (fd, depth): a process that already holds the lock may take it again (run_all inside `recs run`)
_HELD: dict[str, list] = {}


class RunLockBusy(RuntimeError):
    """Another live process holds the DATA_ROOT lock."""


def _read_holder(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536).decode(errors="replace").strip()
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return {"owner": raw[:200]}


def describe(holder: dict | None) -> str:
    if not holder:
        return "an unknown process"
    return (f"{holder.get('owner', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"since {holder.get('started_at', '?')})")


def holder_of(data_root: str) -> dict | None:
    """Who holds the lock now, or None when nobody does (a left-over file of a dead holder counts as none)."""
    _, path = io.fs_for(Layout(data_root).run_lock())
    if not os.path.exists(path):
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def run_lock(data_root: str, owner: str, *, wait_seconds: float = 0.0, poll_seconds: float = 0.5,
             clean: bool = True) -> Iterator[dict]:
    """Holds the DATA_ROOT lock for the block; yields the holder record written to the lock file.

    Waits up to `wait_seconds` for a live holder, then raises `RunLockBusy` naming it. With `clean`, removes
    the leftovers of killed runs once the lock is held."""
    fs, _ = io.fs_for(data_root)
    if not io._is_local(fs):
        log.warning("DATA_ROOT %s is not a local filesystem: no run lock (keep one scheduler per root)", data_root)
        yield {"owner": owner, "lock": None}
        return
    path = os.path.abspath(io.fs_for(Layout(data_root).run_lock())[1])
    if path in _HELD:  # re-entered by the process that holds it
        _HELD[path][1] += 1
        try:
            yield _HELD[path][2]
        finally:
            _HELD[path][1] -= 1
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunLockBusy(f"DATA_ROOT {data_root} is locked by {describe(_read_holder(fd))}; "
                                      f"waited {wait_seconds:g}s (lock.wait_seconds). Lock file: {path}") from None
                time.sleep(poll_seconds)
    except BaseException:
        os.close(fd)
        raise
    stale = _read_holder(fd)
    if stale:
        log.warning("took over the DATA_ROOT lock left by %s, which is no longer running", describe(stale))
    holder = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
              "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "took_over": stale}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    os.fsync(fd)
    _HELD[path] = [fd, 1, holder]
    try:
        if clean:
            io.clean_leftovers(data_root)
        yield holder
    finally:
        del _HELD[path]
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
