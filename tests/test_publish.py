"""Stage 9, publish (jobs/stages/publish.py): backfills that do not take over, same-date re-runs that never delete
the live version, a retry after a failure at any step, rollback in one step, and SIGKILL at many instants."""
import dataclasses
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.cli import main as recs
from jobs.pipeline import data_root_lock
from jobs.serving import kvstore
from jobs.stages import publish
from jobs.storage import io
from jobs.storage.datasets import Datasets
from schemas import load
from tests.published_lists import TOP_N, first_item, stage_night

pytestmark = pytest.mark.spark

TONIGHT = "2026-03-10"
YESTERDAY = "2026-03-09"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg(cfg):
    """The conftest config with lists as long as the hand-made nights' (tests/published_lists.py)."""
    return cfg.replace(top_n=TOP_N)


@pytest.fixture
def redis_url(redis_url):
    """The session's redis-server, empty before and after the test (other modules share it)."""
    from jobs.serving import redis_store

    redis_store._client(redis_url).flushdb()
    yield redis_url
    redis_store._client(redis_url).flushdb()


def with_(cfg, **sections):
    """cfg with some keys of its sections changed: with_(cfg, export={"keep_versions": 1})."""
    return cfg.replace(**{name: dataclasses.replace(getattr(cfg, name), **changes)
                          for name, changes in sections.items()})


def night(spark, cfg, run_date, attempt=0):
    stage_night(cfg, run_date, attempt)
    return publish.run(spark, cfg, run_date)


def served_first_item(cfg, version=None, redis_url=""):
    if redis_url:
        from jobs.serving.redis_store import RedisReader

        reader = RedisReader(redis_url, version)
    else:
        reader = kvstore.KVReader(Datasets(cfg.data_root).layout.kv(), version)
    return reader.lookup("u1")["items"][0]["item_id"]


def leftovers(root):
    """Temporaries of unfinished writes (displaced `.old-*` folders stay for readers until their grace ends)."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if ".tmp-" in p.name)


def test_backfilling_three_older_dates_leaves_tonights_version_live_and_every_version_readable(spark, cfg):
    kv = Datasets(cfg.data_root).layout.kv()
    tonight = night(spark, cfg, TONIGHT)
    assert tonight["switched"] and not tonight["backfill"]
    backfill = with_(cfg, publish={"backfill": "version"}, export={"keep_versions": 1})
    older = ["2026-03-07", "2026-03-08", "2026-03-09"]
    built = {d: night(spark, backfill, d) for d in older}
    assert all(s["backfill"] and not s["switched"] for s in built.values())
    assert kvstore.current(kv)["version"] == tonight["kv_version"]
    assert served_first_item(cfg) == first_item(TONIGHT)
    for d, s in built.items():  # every version readable, each with its own night's lists
        assert served_first_item(cfg, s["kv_version"]) == first_item(d)
        assert Datasets(cfg.data_root).published_lists.has_data(d)
    # the default: only the Parquet lists, no export version
    lists_only = night(spark, cfg, "2026-03-06")
    assert lists_only["kv_version"] is None and Datasets(cfg.data_root).published_lists.has_data("2026-03-06")
    assert kvstore.current(kv)["version"] == tonight["kv_version"]
    assert not Datasets(cfg.data_root).staged_lists.exists("2026-03-06")
    # an explicit --promote takes over, tonight's version stays as the previous one
    promoted = night(spark, with_(cfg, publish={"backfill": "promote"}), "2026-03-05")
    assert kvstore.current(kv) == {"version": promoted["kv_version"], "previous": tonight["kv_version"]}
    assert served_first_item(cfg) == first_item("2026-03-05")
    assert [e["reason"] for e in kvstore.switch_log(kv)] == ["publish", "backfill --promote"]


def test_a_same_date_rerun_never_deletes_the_live_version(spark, cfg):
    cfg = with_(cfg, export={"keep_versions": 1})
    kv = Datasets(cfg.data_root).layout.kv()
    seen = []
    for attempt in range(4):  # random version suffixes: some sort before the live one by name
        summary = night(spark, cfg, TONIGHT, attempt)
        pointer = kvstore.current(kv)
        assert pointer["version"] == summary["kv_version"]
        for v in filter(None, pointer.values()):
            kvstore.verify(kv, v)  # live and previous both complete and readable
        if seen:
            assert pointer["previous"] == seen[-1]
        seen.append(summary["kv_version"])
    kept = [v["version"] for v in kvstore.versions(kv)]
    assert sorted(kept) == sorted(seen[-2:])  # pruned after the switch, by publish time
    same = night(spark, cfg, TONIGHT, attempt)  # the same lists again: the live version is reused, not rebuilt
    assert same["kv_reused"] and kvstore.current(kv) == pointer


def test_a_rerun_after_a_new_profile_delivery_builds_a_new_version(spark, cfg):
    """The version stores users' profile contexts: the same lists and identity map with a profile delivered
    since must not find the version built before it."""
    before = night(spark, cfg, TONIGHT)
    data = Datasets(cfg.data_root)
    profiles = pa.Table.from_pylist([{"user_id": "newcomer", "country": "DE"}], schema=load("profiles").arrow())
    io.write_arrow_parquet(profiles, data.layout.validated("profiles", TONIGHT))
    publish.run(spark, cfg, TONIGHT)  # what was staged is published already: the lists and identity are the same
    after = kvstore.current(data.layout.kv())["version"]
    assert after != before["kv_version"]
    assert kvstore.KVReader(data.layout.kv(), after).list_value(kvstore.profile_key("newcomer")) is not None


def test_manifest_describes_a_complete_version(spark, cfg):
    summary = night(spark, cfg, TONIGHT)
    kv = Datasets(cfg.data_root).layout.kv()
    doc = kvstore.verify(kv, summary["kv_version"])
    assert (doc["run_date"], doc["model_version"], doc["persons"], doc["segments"], doc["rows"], doc["ids"]) == (
        TONIGHT, f"als-{TONIGHT}-test", 2, 1, 9, 3)
    assert doc["config_digest"] == cfg.fingerprint() and len(doc["checksums"]["store.sqlite"]) == 64
    store = Path(kv) / "versions" / summary["kv_version"] / "store.sqlite"
    with open(store, "r+b") as f:  # a damaged file no longer matches its manifest
        f.seek(200)
        f.write(b"\xff\xfe")
    with pytest.raises(ValueError, match="checksum"):
        kvstore.verify(kv, summary["kv_version"])


STEPS = [("jobs.serving.kvstore", "build_version"), ("jobs.serving.redis_store", "build_version"),
         ("jobs.serving.kvstore", "switch_current"), ("jobs.storage.datasets.ModelStore", "mark_published"),
         ("jobs.serving.redis_store", "switch_current"), ("jobs.serving.kvstore", "prune"),
         ("jobs.storage.io", "remove_dir")]


@pytest.mark.redis
@pytest.mark.parametrize("where", STEPS, ids=[f"{m.rsplit('.', 1)[-1]}.{f}" for m, f in STEPS])
def test_a_retry_after_a_failure_at_any_step_completes(spark, cfg, redis_url, where, monkeypatch):
    import importlib

    from jobs.serving import redis_store

    cfg = with_(cfg, export={"redis_url": redis_url})
    kv = Datasets(cfg.data_root).layout.kv()
    yesterday = night(spark, cfg, YESTERDAY)["kv_version"]
    stage_night(cfg, TONIGHT)
    module, name = where
    owner = (importlib.import_module(module) if "ModelStore" not in module
             else importlib.import_module("jobs.storage.datasets").ModelStore)

    def fail(*args, **kwargs):
        raise RuntimeError(f"injected failure in {name}")

    with monkeypatch.context() as m:
        m.setattr(owner, name, fail)
        with pytest.raises(RuntimeError, match="injected"):
            publish.run(spark, cfg, TONIGHT)
    # whatever step failed, both stores serve a complete version the embedded store knows
    embedded = kvstore.current(kv)
    assert redis_store.live_version(redis_url) in {embedded["version"], embedded["previous"]}
    assert served_first_item(cfg, redis_url=redis_url) in {first_item(YESTERDAY), first_item(TONIGHT)}
    summary = publish.run(spark, cfg, TONIGHT)  # the retry
    assert summary["switched"]
    assert kvstore.current(kv) == {"version": summary["kv_version"], "previous": yesterday}
    assert redis_store.pointer(redis_url) == {"version": summary["kv_version"], "previous": yesterday}
    assert served_first_item(cfg) == served_first_item(cfg, redis_url=redis_url) == first_item(TONIGHT)
    assert Datasets(cfg.data_root).models.latest_published_before("2026-03-11")["run_date"] == TONIGHT
    assert not Datasets(cfg.data_root).staged_lists.exists(TONIGHT)


@pytest.mark.redis
def test_rollback_restores_the_previous_lists_in_one_step(spark, cfg, redis_url, capsys):
    from jobs.serving import redis_store

    cfg = with_(cfg, export={"redis_url": redis_url})
    kv = Datasets(cfg.data_root).layout.kv()
    first = night(spark, cfg, YESTERDAY)["kv_version"]
    second = night(spark, cfg, TONIGHT)["kv_version"]
    assert served_first_item(cfg) == first_item(TONIGHT)
    assert recs(["rollback", "--data-root", cfg.data_root, "--redis-url", redis_url]) == 0
    assert kvstore.current(kv) == {"version": first, "previous": second}
    assert redis_store.pointer(redis_url) == {"version": first, "previous": second}
    assert served_first_item(cfg) == served_first_item(cfg, redis_url=redis_url) == first_item(YESTERDAY)
    models = Datasets(cfg.data_root).models
    # the next night's gate compares against the model whose lists are live again, not the withdrawn one
    assert models.latest_published_before("2026-03-11")["run_date"] == YESTERDAY
    assert recs(["rollback", "--data-root", cfg.data_root, "--redis-url", redis_url, "--to", second]) == 0
    assert served_first_item(cfg) == served_first_item(cfg, redis_url=redis_url) == first_item(TONIGHT)
    assert models.latest_published_before("2026-03-11")["run_date"] == TONIGHT
    assert recs(["rollback", "--data-root", cfg.data_root, "--redis-url", redis_url, "--to", "nope"]) == 1
    assert "cannot roll back to nope" in capsys.readouterr().err
    capsys.readouterr()
    assert recs(["versions", "--data-root", cfg.data_root, "--redis-url", redis_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    for store in ("embedded", "redis"):
        assert [v["version"] for v in listed[store]["versions"]] == [first, second]
        assert [e["reason"] for e in listed[store]["switches"]] == ["publish", "publish", "rollback", "rollback"]
        assert listed[store]["versions"][1]["live"] and listed[store]["versions"][1]["manifest"]["persons"] == 2


# The publish stage in a separate process that a test SIGKILLs: at named steps (the child writes a file when it
# reaches one, then waits to be killed) or after a random delay.
CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from jobs.config import load_config
    from jobs.serving import kvstore, redis_store
    from jobs.stages import publish
    from jobs.spark import spark_session
    from jobs.storage import io

    cfg = load_config(data_root={root!r}, overrides={overrides!r})
    at, signal_file = {at!r}, Path({signal_file!r})

    def pause_after(owner, name, calls=1):
        real, seen = getattr(owner, name), []
        def wrapper(*a, **k):
            out = real(*a, **k)
            seen.append(1)
            if len(seen) == calls:
                signal_file.write_text(name)
                time.sleep(600)
            return out
        setattr(owner, name, wrapper)

    if at == "inside_export":       # the first batch of lists is in the SQLite file, the rest not
        pause_after(kvstore, "_insert")
    elif at == "inside_promote":    # the new lists are linked into a hidden folder, not yet swapped in
        pause_after(os, "link")
    elif at == "between_switches":  # embedded CURRENT moved, Redis not yet
        pause_after(kvstore, "switch_current")
    elif at == "after_redis_build":
        pause_after(redis_store, "build_version")
    spark = spark_session(cfg.spark, app_name="publish-kill")
    Path(str(signal_file) + ".ready").write_text("ready")
    publish.run(spark, cfg, {run_date!r})
    signal_file.write_text("done")
""")


@pytest.mark.redis
def test_sigkill_at_any_instant_of_a_publish_leaves_the_previous_lists_live_and_the_next_run_completes(
        spark, cfg, redis_url, tmp_path):
    from jobs.serving import redis_store

    overrides = [f"top_n={TOP_N}", "spark.master=local[1]", "spark.shuffle_partitions=1", "spark.driver_memory=1g",
                 f"export.redis_url={redis_url}", "export.keep_versions=1"]
    cfg = with_(cfg, export={"redis_url": redis_url, "keep_versions": 1})
    kv = Datasets(cfg.data_root).layout.kv()
    live = night(spark, cfg, YESTERDAY)["kv_version"]
    rng = random.Random(11)
    points = ["inside_promote", "inside_export", "after_redis_build", "between_switches",
              *[f"random_{rng.uniform(0.5, 6.0):.2f}" for _ in range(2)]]
    previous = YESTERDAY
    for i, at in enumerate(points):  # one night per kill: each time the night before is the live one
        tonight = (dt.date.fromisoformat(YESTERDAY) + dt.timedelta(days=i + 1)).isoformat()
        stage_night(cfg, tonight)
        signal_file = tmp_path / f"reached-{i}"
        script = CHILD.format(repo=str(REPO), root=cfg.data_root, overrides=overrides, at=at,
                              signal_file=str(signal_file), run_date=tonight)
        child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_for(child, signal_file, at)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        embedded = kvstore.current(kv)
        served = redis_store.live_version(redis_url)
        # every store serves a whole version; Redis only one the embedded store already serves or served
        kvstore.verify(kv, embedded["version"])
        assert served in {embedded["version"], embedded["previous"]}
        if at != "between_switches" and not at.startswith("random"):
            assert embedded["version"] == served == live  # killed before any switch: last night's lists
            assert served_first_item(cfg) == first_item(previous)
        assert served_first_item(cfg, redis_url=redis_url) in {first_item(previous), first_item(tonight)}
        published = Datasets(cfg.data_root).published_lists
        if published.exists(tonight):  # absent or whole, never half
            assert published.read_arrow(tonight).num_rows == 9
        # the next run: takes the lock (and with it cleans the leftovers), then completes
        with data_root_lock(cfg, "next run"):
            assert leftovers(cfg.data_root) == []
            summary = publish.run(spark, cfg, tonight)
        io.clean_leftovers(cfg.data_root, grace_seconds=0)  # as the next run does once the grace has passed
        assert not [p for p in Path(cfg.data_root).rglob(".old-*")]
        assert redis_store.pointer(redis_url)["version"] == kvstore.current(kv)["version"] == summary["kv_version"]
        assert served_first_item(cfg) == served_first_item(cfg, redis_url=redis_url) == first_item(tonight)
        live, previous = summary["kv_version"], tonight


def _wait_for(child, signal_file, at):
    ready = Path(str(signal_file) + ".ready")
    deadline = time.monotonic() + 300  # a guard against a hung child, not a timed assertion
    while not (signal_file.exists() or (at.startswith("random") and ready.exists())):
        if child.poll() is not None:
            raise AssertionError(f"publish child exited before {at}: {child.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"publish child never reached {at}")
        time.sleep(0.05)
    if not at.startswith("random"):
        time.sleep(0.1)
        assert signal_file.read_text() != "done", f"the publish finished without reaching {at}"
    if at.startswith("random"):
        time.sleep(float(at.split("_")[1]))
