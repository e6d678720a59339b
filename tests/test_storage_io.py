"""jobs/storage/io.py: a replaced folder is never missing nor mixed for a reader, kill -9 included, and the
leftovers of a killed writer are cleaned."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from jobs.storage import io

REPO = Path(__file__).resolve().parents[1]


def write_version(final: str, token: str) -> None:
    with io.atomic_dir(final) as tmp:
        os.makedirs(tmp)
        for name in ("a.txt", "b.txt", "c.txt"):
            Path(tmp, name).write_text(token)


def read_once(final: str) -> list[str]:
    """A reader that resolves the folder once (opens it) and reads every file through that handle."""
    fd = os.open(final, os.O_RDONLY | os.O_DIRECTORY)
    try:
        tokens = []
        for name in sorted(os.listdir(fd)):
            f = os.open(name, os.O_RDONLY, dir_fd=fd)
            try:
                tokens.append(os.read(f, 100).decode())
            finally:
                os.close(f)
        return tokens
    finally:
        os.close(fd)


def test_a_reader_sees_a_whole_old_or_whole_new_folder_while_it_is_replaced(tmp_path):
    final = str(tmp_path / "dt=2026-03-10")
    write_version(final, "v0")
    stop, seen, errors = threading.Event(), set(), []

    def reader():
        while not stop.is_set():
            try:
                tokens = read_once(final)
            except OSError as exc:  # FileNotFoundError would be a gap
                errors.append(repr(exc))
                continue
            if len(tokens) != 3 or len(set(tokens)) != 1:
                errors.append(f"mixed or partial: {tokens}")
            seen.add(tokens[0] if tokens else None)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(1, 300):
        write_version(final, f"v{i}")
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert read_once(final) == ["v299"] * 3 and len(seen) > 1
    displaced = [p.name for p in tmp_path.iterdir() if p.name.startswith(".old-")]
    assert len(displaced) == 299  # kept for readers that resolved them, until the grace ends
    assert io.clean_leftovers(str(tmp_path)) == []  # still within the grace
    assert len(io.clean_leftovers(str(tmp_path), grace_seconds=0)) == 299
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dt=2026-03-10"]


WRITER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from jobs.storage import io
    i = 0
    while True:
        i += 1
        with io.atomic_dir({final!r}) as tmp:
            os.makedirs(tmp)
            for name in ("a.txt", "b.txt", "c.txt"):
                Path(tmp, name).write_text(str(i))
        io.write_json({final!r} + "-marker.json", {{"i": i}})
        if i == 3:
            Path({final!r} + "-started").write_text("yes")
""")


def test_kill_9_at_random_instants_leaves_a_whole_folder_and_the_next_run_cleans_up(tmp_path):
    final = str(tmp_path / "part" / "dt=2026-03-10")
    write_version(final, "0")
    rng = random.Random(7)
    for _ in range(6):
        started = Path(final + "-started")
        started.unlink(missing_ok=True)
        child = subprocess.Popen([sys.executable, "-c", WRITER.format(repo=str(REPO), final=final)])
        while not started.exists():
            assert child.poll() is None, "the writer died"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        tokens = read_once(final)
        assert len(tokens) == 3 and len(set(tokens)) == 1  # whole, never missing, never mixed
        assert io.read_json(final + "-marker.json")["i"] >= 3  # a small file: whole too
    leftovers = [p for p in Path(tmp_path, "part").iterdir() if ".tmp-" in p.name or p.name.startswith(".old-")]
    assert leftovers  # a writer killed mid-write leaves temporaries ...
    io.clean_leftovers(str(tmp_path), grace_seconds=0)  # ... which the next run removes
    assert sorted(p.name for p in Path(tmp_path, "part").iterdir()) == [
        "dt=2026-03-10", "dt=2026-03-10-marker.json", "dt=2026-03-10-started"]


def test_leftover_cleaning_touches_only_our_temporaries(tmp_path):
    keep = [tmp_path / "raw" / ".tmp-shop-upload", tmp_path / "raw" / "events.tmp", tmp_path / "x" / "dt=2026-01-01"]
    doomed = [tmp_path / "x" / ".tmp-dt=2026-01-01-0123abcd", tmp_path / "reports" / "run.json.tmp-89abcdef"]
    for p in keep + doomed:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    assert sorted(io.clean_leftovers(str(tmp_path))) == sorted(str(p) for p in doomed)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in doomed)


def test_promote_keeping_the_staged_folder_links_its_files(tmp_path):
    staged, final = tmp_path / "staging" / "dt=1", tmp_path / "out" / "dt=1"
    staged.mkdir(parents=True)
    (staged / "part-0.parquet").write_text("new")
    final.mkdir(parents=True)
    (final / "part-9.parquet").write_text("old")
    io.promote(str(staged), str(final), keep_staged=True)
    assert [p.name for p in final.iterdir()] == ["part-0.parquet"] and staged.exists()
    assert os.path.samefile(staged / "part-0.parquet", final / "part-0.parquet")
    assert io.files_digest(str(staged)) == io.files_digest(str(final))
    io.promote(str(staged), str(tmp_path / "out" / "dt=2"))
    assert not staged.exists() and (tmp_path / "out" / "dt=2" / "part-0.parquet").read_text() == "new"
