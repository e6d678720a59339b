"""A 7-night backfill through Airflow's real scheduler gives the outputs of 7 nightly `recs run`s.

Airflow 3 as its docs describe a local deployment: a fresh AIRFLOW_HOME, `airflow db migrate` (SQLite), then the
API server (tasks talk to it through the Execution API), the scheduler (LocalExecutor, one task at a time) and the
DAG processor, each a separate process on loopback, stopped with the module. `airflow backfill create` makes the
seven runs; the scheduler runs them one after the other (`--max-active-runs 1`: each night reads the identity
state the night before wrote). The last night's raw events are held back, so it fails at validation, as a night
whose feed was late does; the feed then arrives and `airflow tasks clear` re-runs that night from `validate` on.
The same seven nights are then run with `jobs.pipeline.run_all` (what `recs run` calls) on a copy of the shop.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

# slow: ~25 minutes for 2 nights on a 2-core host, past the suite's budget; `make test-all` runs it
pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.scheduler, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "nightly_recommendations"
# seven nights, each with two earlier raw days; RECS_BACKFILL_NIGHTS=2 tries the mechanics in a fraction of the time
N_NIGHTS = int(os.environ.get("RECS_BACKFILL_NIGHTS", "7"))
START, DAYS = "2026-08-01", 2 + N_NIGHTS
NIGHTS = [f"2026-08-{d:02d}" for d in range(3, 3 + N_NIGHTS)]
LATE = NIGHTS[-1]  # its raw events arrive after the backfill ran it
# test-sized and deterministic nights: a fixed number of tuning trials, no time budget that could cut one short
OVERRIDES = ["spark.master=local[1]", "spark.shuffle_partitions=1", "spark.driver_memory=1g", "als.threads=1",
             "als.factors=8", "als.iterations=5", "tuning.max_trials=2", "tuning.budget_seconds_wide=600",
             "tuning.budget_seconds_warm=600", "gate.min_test_persons=5"]
WAIT_SECONDS = 1500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Airflow:
    """The `airflow` command against one AIRFLOW_HOME."""

    def __init__(self, home: Path, env: dict):
        self.home, self.env = home, env

    def __call__(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.home)
        if done.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done.stdout

    def runs(self) -> dict[str, dict]:
        """Run date (the night the run processes) -> the DAG run's state and logical date, from the CLI."""
        out = self("dags", "list-runs", DAG_ID, "-o", "json")
        runs = next((json.loads(line) for line in out.splitlines() if line.startswith(("[{", "[]"))), [])
        return {_night(r["logical_date"]): r for r in runs}


def _night(logical_date: str) -> str:
    """The night a run processes: its logical date (the start of its data interval) is day D at 02:00 UTC; the
    scheduler starts it at 02:00 on D+1."""
    return logical_date[:10]


def _run_after(night: str) -> str:
    """When the scheduler runs night D: 02:00 UTC on D+1 (what `backfill create`'s dates bound)."""
    return f"{dt.date.fromisoformat(night) + dt.timedelta(days=1)}T02:00:00+00:00"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """A migrated AIRFLOW_HOME with the API server, scheduler and DAG processor running on loopback."""
    home = tmp_path_factory.mktemp("airflow-home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor", AIRFLOW__CORE__PARALLELISM="1",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__HOST="127.0.0.1", AIRFLOW__API__PORT=str(port),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16),
        # SQLite takes one writer at a time: a CLI command waits for the scheduler's transaction instead of failing
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db?timeout=120",
        # only the backfill makes runs: no scheduled night of today's date beside it
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),  # this tree's jobs
    )
    cli = Airflow(home, env)
    cli("db", "migrate")
    commands = {"api-server": ["api-server", "--host", "127.0.0.1", "--port", str(port)],
                "scheduler": ["scheduler", "--skip-serve-logs"],  # task logs stay files; no log server on 0.0.0.0
                "dag-processor": ["dag-processor"]}
    processes = {}
    try:
        for name, args in commands.items():
            log = open(home / f"{name}.log", "w")
            # a session of its own, so teardown stops the command and every child it started (workers, parsers)
            processes[name] = subprocess.Popen([sys.executable, "-m", "airflow", *args], env=env, cwd=home,
                                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as answer:
                    health = json.load(answer)
                if (health.get("scheduler") or {}).get("status") == "healthy":
                    break
            except OSError:
                pass
            dead = [n for n, p in processes.items() if p.poll() is not None]
            if dead or time.time() > deadline:
                logs = "\n".join(f"--- {n}\n{(home / f'{n}.log').read_text()[-2000:]}" for n in processes)
                pytest.fail(f"Airflow did not come up ({dead or 'timeout'}):\n{logs}")
            time.sleep(2)
        cli("dags", "reserialize")  # the DAG in the metadata DB now, not at the processor's next pass
        cli("dags", "unpause", DAG_ID)
        yield cli
    finally:
        for process in processes.values():
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process's session (it and its children), SIGKILL after 30 s."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            os.killpg(process.pid, signal.SIGKILL)  # children the command left behind
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        return


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from jobs.shop import generate_shop

    root = tmp_path_factory.mktemp("shop")
    generate_shop(str(root), start=START, days=DAYS, users=150, items=40, seed=3, defect_rate=0.01)
    return root


def _wait_for(cli: Airflow, nights: list[str], states: set[str]) -> dict[str, dict]:
    deadline = time.time() + WAIT_SECONDS
    while time.time() < deadline:
        runs = cli.runs()
        if all(runs.get(n, {}).get("state") in states for n in nights):
            return runs
        time.sleep(5)
    raise AssertionError(f"runs not {states} after {WAIT_SECONDS} s: "
                         f"{ {n: r.get('state') for n, r in cli.runs().items()} }")


@pytest.fixture(scope="module")
def backfilled(airflow, shop, tmp_path_factory):
    """(the DATA_ROOT the backfill wrote, the states of its runs before and after the late night's re-run)."""
    reference = tmp_path_factory.mktemp("reference") / "shop"
    shutil.copytree(shop, reference)  # untouched inputs for the nightly runs to compare with
    late_feed = shop / "raw" / "events" / f"dt={LATE}"
    held_back = tmp_path_factory.mktemp("late") / late_feed.name
    shutil.move(late_feed, held_back)

    conf = json.dumps({"data_root": str(shop), "overrides": OVERRIDES})
    airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", _run_after(NIGHTS[0])[:10],
            "--to-date", _run_after(NIGHTS[-1]), "--max-active-runs", "1", "--dag-run-conf", conf)
    first = _wait_for(airflow, NIGHTS, {"success", "failed"})

    shutil.move(held_back, late_feed)  # the late feed arrives: clear the failed night from validate on
    # Airflow 3.3 matches -t as a substring of the task id (no anchors: "^validate$" matches nothing)
    airflow("tasks", "clear", DAG_ID, "--task-regex", "validate", "--downstream", "--yes",
            "--start-date", f"{LATE}T02:00:00+00:00", "--end-date", f"{LATE}T02:00:00+00:00")
    assert airflow.runs()[LATE]["state"] != "failed", "the clear matched no task of the late night"
    after = _wait_for(airflow, [LATE], {"success", "failed"})
    return shop, reference, first, after


def _comparable(summary: dict, root: Path) -> dict:
    """A run summary without what differs between two runs of the same night: times and where files are."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()
                    if not any(w in k for w in ("seconds", "started", "finished", "page", "path", "elapsed"))}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            return value.replace(str(root), "<root>")
        return value

    return clean(summary)


def _lists(root: Path, night: str):
    from jobs.storage.layout import Layout

    frame = pq.read_table(Layout(str(root)).recommendations(night)).to_pandas()
    return frame.drop(columns=[c for c in ("generated_at",) if c in frame]).sort_values(
        ["subject_type", "subject_id", "rank"]).reset_index(drop=True)


def test_a_backfill_through_the_scheduler_equals_seven_nightly_runs(backfilled, spark):
    from jobs.config import load_config
    from jobs.pipeline import run_all

    root, reference, first, after = backfilled
    # each backfill run processed its own night, in order; the late night failed at validation, the others published
    assert sorted(first) == NIGHTS and all(first[n]["run_id"].startswith("backfill__") for n in NIGHTS)
    assert {n: first[n]["state"] for n in NIGHTS} == {**{n: "success" for n in NIGHTS[:-1]}, LATE: "failed"}
    late_report = root / "reports" / f"dt={LATE}"
    assert after[LATE]["state"] == "success"

    for night in NIGHTS:
        run_all(load_config(data_root=str(reference), overrides=OVERRIDES), night, spark=spark)

    for night in NIGHTS:
        assert _lists(root, night).equals(_lists(reference, night)), night
        scheduled = json.loads((root / "reports" / f"dt={night}" / "run_summary.json").read_text())
        nightly = json.loads((reference / "reports" / f"dt={night}" / "run_summary.json").read_text())
        assert scheduled["status"] == "published", (night, scheduled.get("error"))
        assert _comparable(scheduled, root) == _comparable(nightly, reference), night
    # the cleared night's summary and page are the re-run's, not the failure's
    assert (late_report / "index.html").exists() and "failed_stage" not in json.loads(
        (late_report / "run_summary.json").read_text())
