"""The nightly run: the stages in order, shared by `recs run` and the Airflow DAG.

Each stage is `module.run(spark, cfg, run_date) -> dict`; its summary lands in
`reports/dt=D/stages/<stage>.json` and the whole run in `reports/dt=D/run_summary.json`.
Stages talk only through files under DATA_ROOT, so any stage can be re-run alone for a date.
"""
from __future__ import annotations

import importlib
import logging
import time
import traceback

from jobs.config import RecsConfig
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


def run_stage(name: str, cfg: RecsConfig, run_date: str, spark=None) -> dict:
    """Runs one stage for `run_date` and records its summary. Builds a SparkSession if none is given."""
    if name not in _MODULES:
        raise ValueError(f"unknown stage {name!r}; stages: {list(STAGES)}")
    if spark is None:
        from jobs.spark import spark_session

        spark = spark_session(cfg.spark, app_name=f"recs-{name}-{run_date}")
    module = importlib.import_module(_MODULES[name])
    if _after_tune(name):
        cfg = night_config(cfg, run_date)
    started = time.time()
    log.info("stage %s for %s: start", name, run_date)
    summary = module.run(spark, cfg, run_date)
    summary = {"stage": name, "run_date": run_date, "wall_seconds": round(time.time() - started, 1),
               "config_fingerprint": cfg.fingerprint(), **summary}
    io.write_json(f"{Layout(cfg.data_root).reports(run_date)}/stages/{name}.json", summary)
    log.info("stage %s for %s: done in %.1fs", name, run_date, summary["wall_seconds"])
    return summary


def data_root_lock(cfg: RecsConfig, owner: str):
    """The DATA_ROOT lock (`jobs.storage.lock`) for one writer, waiting up to `lock.wait_seconds`."""
    from jobs.storage.lock import run_lock

    return run_lock(cfg.data_root, owner, wait_seconds=cfg.lock.wait_seconds)


def run_all(cfg: RecsConfig, run_date: str, *, spark=None, stages=STAGES, on_stage=None) -> dict:
    """Runs every stage in order, holding the DATA_ROOT lock; on a failure records it in the run summary and
    re-raises. Another run holding the lock: `RunLockBusy` before anything is written.

    `status`: `published` (the night's lists), `published_popularity_fallback` (the gate found the model below
    popularity and published the best popularity baseline's lists), `completed` (no publish stage run).
    """
    with data_root_lock(cfg, f"recs run {run_date}"):
        return _run_all(cfg, run_date, spark=spark, stages=stages, on_stage=on_stage)


def _run_all(cfg: RecsConfig, run_date: str, *, spark, stages, on_stage) -> dict:
    from jobs.spark import spark_session

    spark = spark or spark_session(cfg.spark, app_name=f"recs-nightly-{run_date}")
    report = f"{Layout(cfg.data_root).reports(run_date)}/run_summary.json"
    summary = {"run_date": run_date, "config_fingerprint": cfg.fingerprint(), "stages": {}, "status": "running"}
    started = time.time()
    for name in stages:
        try:
            summary["stages"][name] = run_stage(name, cfg, run_date, spark=spark)
        except Exception as exc:
            summary.update(status="failed", failed_stage=name, error=str(exc),
                           traceback=traceback.format_exc(limit=5), wall_seconds=round(time.time() - started, 1))
            io.write_json(report, summary)
            raise
        if on_stage:
            on_stage(name, summary["stages"][name])
    fallback = (summary["stages"].get("gate") or {}).get("fallback")
    status = "completed"
    if "publish" in stages:
        status = "published_popularity_fallback" if fallback else "published"
    summary.update(status=status, wall_seconds=round(time.time() - started, 1))
    io.write_json(report, summary)
    return summary
