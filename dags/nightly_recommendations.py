"""Nightly recommendations: one task per stage of `jobs.pipeline.STAGES`, for the run's logical date, then `purge`
(retention: personal data older than `privacy.retention_days` goes), `ab_report` after publish (the configured
experiment's A/B readout, nothing when none is configured) and, once every stage is done whatever its
outcome, `report` (the run summary and the night's page, `reports/dt=D/index.html`).

The DAG file imports only the Airflow SDK and the standard library: Spark, implicit, ScaNN and GX are
imported inside the tasks. Tasks exchange only the run date (XCom) and write to DATA_ROOT, so each task
is a transaction that a re-run overwrites. The scheduled run at 02:00 UTC on day D+1 processes day D.

Every task holds the DATA_ROOT lock (`jobs.storage.lock`) while it writes, so a `recs run` beside the DAG waits
or fails instead of racing it.

Params: `data_root` (default: the RECS_DATA_ROOT environment variable), `conf` (a YAML file layered on
conf/default.yaml), `overrides` (list of key=value), `ds` (a date to run instead of the logical date).
Backfill: `airflow backfill create --dag-id nightly_recommendations --from-date A --to-date B --max-active-runs 1
--reprocess-behavior failed` (README: Backfills through the scheduler). Nights run one after the other in date order:
`resolve_run_date` waits while the run before is queued or running.
Dates older than the live lists publish their Parquet lists but leave the live key-value version alone unless the
overrides hold `publish.backfill=promote` (or `version`: also build a key-value version, not switched to), e.g.
`--dag-run-conf '{"overrides": ["publish.backfill=promote"]}'`.
Every task retries twice (5 then 10 minutes later), except on a verdict: a day that failed validation or a model
the gate refused fails at once.
"""
from __future__ import annotations

import datetime as dt
import os

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable, Param, PokeReturnValue, dag, task

from jobs.stages import STAGES  # the one stage list; a plain tuple, cheap to import at parse time

RECOMMENDATIONS = Asset(name="recs_recommendations", uri="file:///recs/recommendations")


@dag(
    dag_id="nightly_recommendations",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC", interval=dt.timedelta(days=1)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # a lost executor or a full disk deserves another try; a verdict on the data or the model does not (below)
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5), "retry_exponential_backoff": 2.0,
                  "max_retry_delay": dt.timedelta(hours=1)},
    tags=["recs"],
    params={
        "data_root": Param(os.environ.get("RECS_DATA_ROOT", ""), type="string",
                           description="DATA_ROOT folder or URI"),
        "conf": Param(None, type=["null", "string"], description="YAML config file layered on the defaults"),
        "overrides": Param([], type="array", description="config overrides, key=value"),
        "ds": Param(None, type=["null", "string"], format="date", description="run this date instead"),
    },
)
def nightly_recommendations():
    # Each night builds on the one before (identity state, tuning history, the published model), so the nights run
    # one after the other in date order however they were started. `max_active_runs=1` binds scheduled runs only: a
    # backfill has its own (`--max-active-runs`, default 10). So the first task waits, in reschedule mode (no worker
    # slot held between pokes), while the run before it (by logical date) is queued or running; `depends_on_past`
    # on it makes Airflow refuse a backfill in reverse (`--run-backwards`), whose first run would wait for ever.
    @task.sensor(task_id="resolve_run_date", mode="reschedule", poke_interval=60, timeout=24 * 3600,
                 depends_on_past=True)
    def resolve_run_date(params=None, data_interval_start=None, ti=None) -> PokeReturnValue:
        if params.get("ds"):
            run_date = params["ds"]
        elif data_interval_start is None:  # a manual run without a logical date
            raise ValueError("manual run: pass conf {'ds': 'YYYY-MM-DD'}")
        else:
            run_date = data_interval_start.strftime("%Y-%m-%d")
        previous = ti.get_previous_dagrun()
        if previous is not None and previous.state in ("queued", "running"):
            print(f"night {run_date} waits for the run before it, {previous.run_id} ({previous.state})")
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=run_date)

    def stage_task(stage: str):
        @task(task_id=stage, outlets=[RECOMMENDATIONS] if stage == "publish" else [])
        def run_stage(run_date: str, params=None) -> str:
            from airflow.sdk.exceptions import AirflowFailException

            from jobs.config import load_config
            from jobs.pipeline import data_root_lock, is_verdict
            from jobs.pipeline import run_stage as run_one

            if not params.get("data_root"):
                raise ValueError("no data_root: set the DAG param or RECS_DATA_ROOT")
            cfg = load_config(conf_file=params.get("conf"), overrides=params.get("overrides") or (),
                              data_root=params["data_root"])
            with data_root_lock(cfg, f"airflow nightly_recommendations.{stage} {run_date}"):
                try:
                    run_one(stage, cfg, run_date)
                except Exception as exc:
                    if is_verdict(exc):  # broken data or a refused model: a retry would say the same, so fail now
                        raise AirflowFailException(f"{stage} for {run_date}: {exc}") from exc
                    raise
            return run_date  # the next stage's input: data flows through DATA_ROOT, not XCom

        return run_stage

    @task(task_id="purge")
    def purge(run_date: str, params=None) -> dict:
        """Maintenance after the last stage: deletes personal data older than `privacy.retention_days`."""
        from jobs.config import load_config
        from jobs.pipeline import data_root_lock
        from jobs.privacy.retention import purge_for_config

        cfg = load_config(conf_file=params.get("conf"), overrides=params.get("overrides") or (),
                          data_root=params["data_root"])
        with data_root_lock(cfg, f"airflow nightly_recommendations.purge {run_date}"):
            summary = purge_for_config(cfg, run_date)
        return {k: summary[k] for k in ("cutoff", "partitions", "files", "bytes")}

    @task(task_id="ab_report")
    def ab_report(run_date: str, params=None) -> dict:
        """After publish: the configured experiment's A/B readout up to the night (jobs/abtest/, README "A/B
        reports"); returns `{"skipped": reason}` and writes nothing when no experiment is configured."""
        from jobs.abtest.job import nightly
        from jobs.config import load_config
        from jobs.pipeline import data_root_lock

        cfg = load_config(conf_file=params.get("conf"), overrides=params.get("overrides") or (),
                          data_root=params["data_root"])
        with data_root_lock(cfg, f"airflow nightly_recommendations.ab_report {run_date}"):
            return nightly(None, cfg, run_date)

    @task(task_id="report", trigger_rule="all_done")
    def report(run_date: str | None = None, params=None) -> dict:
        """The run summary and the night's page from the stages' records, also when a stage failed (it names the
        stage and the error). A leaf beside `purge`, so a failed stage still fails the DAG run."""
        from jobs.config import load_config
        from jobs.pipeline import data_root_lock, finish_night

        if not run_date:
            raise ValueError("no run date: resolve_run_date failed, so there is no night to report")
        cfg = load_config(conf_file=params.get("conf"), overrides=params.get("overrides") or (),
                          data_root=params["data_root"])
        with data_root_lock(cfg, f"airflow nightly_recommendations.report {run_date}"):
            summary = finish_night(cfg, run_date)
        return {"status": summary["status"], "page": summary["page"]}

    resolved = run_date = resolve_run_date()
    stage_outputs = []
    for stage in STAGES:
        run_date = stage_task(stage)(run_date)
        stage_outputs.append(run_date)
    purge(run_date)
    read_back = ab_report(run_date)  # before the page, so the page links tonight's A/B report
    [*stage_outputs, read_back] >> report(resolved)


nightly_recommendations()
