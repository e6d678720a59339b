"""The nightly run: the stages in order, shared by `recs run` and the Airflow DAG.

Each stage is `module.run(spark, cfg, run_date) -> dict`; its summary (or, when it raised, the error) lands in
`reports/dt=D/stages/<stage>.json`. `finish_night` turns those records into `reports/dt=D/run_summary.json` and
the night's page `reports/dt=D/index.html`, however the night ran (`run_all` for `recs run`, the DAG's last task).
Stages talk only through files under DATA_ROOT, so any stage can be re-run alone for a date.
"""
from __future__ import annotations

import datetime as dt
import importlib
import logging
import time
import traceback

from jobs.config import RecsConfig
from jobs.progress import track
from jobs.stages import STAGES
from jobs.storage import io
from jobs.storage.datasets import Datasets
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)

_MODULES = {name: f"jobs.stages.{name}" for name in STAGES}
TUNE = "tune"


def night_config(cfg: RecsConfig, run_date: str) -> RecsConfig:
    """The config the stages after `tune` use: `cfg` with the night's tuned settings (`tuning/dt=D/settings.json`;
    without one, e.g. a stage re-run alone for a night tune did not run, the last tuned settings in the history).
    Pinned keys keep the user's value (`RecsConfig.with_settings`)."""
    if not cfg.tuning.enabled:
        return cfg
    data = Datasets(cfg.data_root)
    doc = data.tuning.read(run_date)
    if doc is None:
        history = data.tuning_history.before(run_date)
        doc = history[-1] if history else {"settings": {}}
    return cfg.with_settings(doc["settings"])


def _after_tune(name: str) -> bool:
    return TUNE in STAGES and STAGES.index(name) > STAGES.index(TUNE)


def is_verdict(exc: BaseException) -> bool:
    """Whether `exc` is a verdict on the night's data or model (validation stopped the run, the gate refused the
    model), which a retry would only repeat, rather than a failure a retry may get past."""
    from jobs.stages.gate import ModelGateError
    from quality import QualityGateError

    return isinstance(exc, (QualityGateError, ModelGateError))


def data_root_lock(cfg: RecsConfig, owner: str):
    """The DATA_ROOT lock (`jobs.storage.lock`) for one writer, waiting up to `lock.wait_seconds`."""
    from jobs.storage.lock import run_lock

    return run_lock(cfg.data_root, owner, wait_seconds=cfg.lock.wait_seconds)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _stage_record_path(cfg: RecsConfig, run_date: str, name: str) -> str:
    return f"{Layout(cfg.data_root).reports(run_date)}/stages/{name}.json"


def run_stage(name: str, cfg: RecsConfig, run_date: str, spark=None) -> dict:
    """Runs one stage for `run_date` and records its summary (`status: ok`), or its error (`status: failed`,
    then re-raised). Builds a SparkSession if none is given."""
    if name not in _MODULES:
        raise ValueError(f"unknown stage {name!r}; stages: {list(STAGES)}")
    if spark is None:
        from jobs.spark import spark_session

        spark = spark_session(cfg.spark, app_name=f"recs-{name}-{run_date}")
    module = importlib.import_module(_MODULES[name])
    if _after_tune(name):
        cfg = night_config(cfg, run_date)
    started, started_at = time.time(), _now()
    log.info("stage %s for %s: start", name, run_date)
    head = {"stage": name, "run_date": run_date, "config_fingerprint": cfg.fingerprint(), "started_at": started_at}
    try:
        summary = module.run(spark, cfg, run_date)
    except Exception as exc:
        failed = {**head, "status": "failed", "error_type": type(exc).__name__, "error": str(exc),
                  "traceback": traceback.format_exc(limit=5), "wall_seconds": round(time.time() - started, 1),
                  "finished_at": _now()}
        try:
            io.write_json(_stage_record_path(cfg, run_date, name), failed)
        except Exception:  # the stage's own error is the one to raise
            log.exception("stage %s for %s: could not record the failure", name, run_date)
        raise
    summary = {**head, "wall_seconds": round(time.time() - started, 1), **summary, "status": "ok",
               "finished_at": _now()}
    io.write_json(_stage_record_path(cfg, run_date, name), summary)
    log.info("stage %s for %s: done in %.1fs", name, run_date, summary["wall_seconds"])
    return summary


def stage_records(cfg: RecsConfig, run_date: str, stages=STAGES) -> dict[str, dict]:
    """The records of the night's latest attempt, by stage, in order: `status` is `ok` or `failed` (as the stage
    wrote it) or `not run`. A stage counts as not run when it has no record, when an earlier stage failed or did
    not run, or when it started before the stage before it (a record left from an earlier attempt that a re-run
    has since overtaken; start against start, so clocks of different workers need not agree to the second).
    Records written before stages were time-stamped are taken as they are."""
    records: dict[str, dict] = {}
    previous_start, stopped = None, False
    for name in stages:
        rec = io.read_json(_stage_record_path(cfg, run_date, name))
        stale = (rec is not None and previous_start is not None and rec.get("started_at") is not None
                 and rec["started_at"] < previous_start)
        if stopped or rec is None or stale:
            records[name] = {"stage": name, "run_date": run_date, "status": "not run"}
            stopped = True
            continue
        rec.setdefault("status", "ok")
        records[name] = rec
        previous_start = rec.get("started_at") or previous_start
        stopped = rec["status"] != "ok"
    return records


def finish_night(cfg: RecsConfig, run_date: str, stages=STAGES) -> dict:
    """Writes the night's run summary and its page from the stage records; returns the summary.

    `status`: `published` (the night's lists), `published_popularity_fallback` (the gate found the model below
    popularity and published the best popularity baseline's lists), `completed` (no publish stage run),
    `failed` (a stage raised: `failed_stage`, `error`, `traceback`) or `incomplete` (a stage did not run and
    left no error, e.g. its task was killed).
    """
    from jobs.reports.night import page_path, write_page

    records = stage_records(cfg, run_date, stages)
    ran = [r for r in records.values() if r["status"] != "not run"]
    summary = {"run_date": run_date, "config_fingerprint": cfg.fingerprint(),
               "stages": {name: r for name, r in records.items() if r["status"] == "ok"},
               "stage_status": {name: r["status"] for name, r in records.items()},
               "wall_seconds": round(sum(r.get("wall_seconds") or 0 for r in ran), 1),
               "page": page_path(cfg.data_root, run_date)}
    failed = next((r for r in ran if r["status"] == "failed"), None)
    if failed:
        summary.update(status="failed", failed_stage=failed["stage"], error=failed.get("error"),
                       traceback=failed.get("traceback"))
    elif len(ran) < len(records):
        summary.update(status="incomplete", failed_stage=next(n for n, r in records.items() if r["status"] == "not run"),
                       error="the stage left no record: it did not run or was stopped before it finished")
    elif "publish" in stages:
        fallback = (records.get("gate") or {}).get("fallback")
        summary["status"] = "published_popularity_fallback" if fallback else "published"
    else:
        summary["status"] = "completed"
    io.write_json(f"{Layout(cfg.data_root).reports(run_date)}/run_summary.json", summary)
    try:
        write_page(cfg, run_date, stages=stages)
    except Exception as exc:  # the night's outcome stands; the page is its picture, not part of it
        log.exception("night %s: the page %s could not be written", run_date, summary["page"])
        summary["page_error"] = f"{type(exc).__name__}: {exc}"
        summary["page"] = None
    return summary


def run_all(cfg: RecsConfig, run_date: str, *, spark=None, stages=STAGES, on_stage=None) -> dict:
    """Runs every stage in order holding the DATA_ROOT lock, then `finish_night` (run summary and page), also
    when a stage raised; re-raises that stage's error. Returns the run summary (see `finish_night` for `status`).
    Another run holding the lock: `RunLockBusy` before anything is written."""
    with data_root_lock(cfg, f"recs run {run_date}"):
        return _run_all(cfg, run_date, spark=spark, stages=stages, on_stage=on_stage)


def _run_all(cfg: RecsConfig, run_date: str, *, spark, stages, on_stage) -> dict:
    from jobs.spark import spark_session

    spark = spark or spark_session(cfg.spark, app_name=f"recs-nightly-{run_date}")
    for name in track(stages, f"night {run_date}", unit="stages", note=str):
        try:
            summary = run_stage(name, cfg, run_date, spark=spark)
        except Exception:
            finish_night(cfg, run_date, stages)
            raise
        if on_stage:
            on_stage(name, summary)
    return finish_night(cfg, run_date, stages)
