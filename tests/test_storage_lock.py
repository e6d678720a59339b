"""jobs/storage/lock.py: one run at a time per DATA_ROOT; the second waits or fails naming the holder; a lock
left by a dead process is taken over."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from jobs.cli import main as recs
from jobs.storage import lock

REPO = Path(__file__).resolve().parents[1]

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from jobs.storage.lock import run_lock
    with run_lock({root!r}, "recs run 2026-03-10"):
        Path({ready!r}).write_text("held")
        while not Path({release!r}).exists():
            time.sleep(0.02)
""")


def hold(root, tmp_path):
    """A separate process holding the lock until `release` exists; returns (process, release file)."""
    ready, release = tmp_path / "ready", tmp_path / "release"
    child = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO), root=root, ready=str(ready),
                                                                   release=str(release))])
    while not ready.exists():
        assert child.poll() is None, "the holder died"
        time.sleep(0.02)
    return child, release


def test_a_second_run_fails_naming_the_holder(tmp_path):
    root = str(tmp_path / "data")
    child, release = hold(root, tmp_path)
    try:
        with pytest.raises(lock.RunLockBusy, match=rf"locked by recs run 2026-03-10 \(pid {child.pid} on .*since"):
            with lock.run_lock(root, "second"):
                pass
        assert lock.holder_of(root)["pid"] == child.pid
    finally:
        release.write_text("go")
        child.wait()
    assert lock.holder_of(root) is None


def test_a_second_run_waits_for_the_lock(tmp_path):
    root = str(tmp_path / "data")
    child, release = hold(root, tmp_path)
    got = {}

    def second():
        with lock.run_lock(root, "second", wait_seconds=120, poll_seconds=0.05) as holder:
            got["holder"] = holder

    waiter = threading.Thread(target=second)
    waiter.start()
    try:
        time.sleep(0.3)
        assert "holder" not in got  # still waiting while the first run holds it
    finally:
        release.write_text("go")
        child.wait()
    waiter.join()
    assert got["holder"]["owner"] == "second" and got["holder"]["took_over"] is None


def test_a_lock_left_by_a_dead_process_is_taken_over_and_its_leftovers_cleaned(tmp_path):
    root = str(tmp_path / "data")
    child, _ = hold(root, tmp_path)
    leftover = Path(root, "models", ".tmp-dt=2026-03-10-0123abcd")
    leftover.mkdir(parents=True)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with lock.run_lock(root, "next run") as holder:
        assert holder["took_over"]["pid"] == child.pid and holder["pid"] == os.getpid()
        assert not leftover.exists()
        with lock.run_lock(root, "nested") as nested:  # the holder may take it again (run_all in `recs run`)
            assert nested is holder and lock.holder_of(root)["owner"] == "next run"
    assert lock.holder_of(root) is None


def test_recs_commands_refuse_a_locked_data_root(tmp_path, capsys):
    root = str(tmp_path / "data")
    child, release = hold(root, tmp_path)
    try:
        assert recs(["rollback", "--data-root", root]) == 2
        assert f"locked by recs run 2026-03-10 (pid {child.pid}" in capsys.readouterr().err
    finally:
        release.write_text("go")
        child.wait()
