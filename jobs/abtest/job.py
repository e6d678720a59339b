"""`recs ab-report` and the nightly `ab_report` task: reads the validated events and the identity state, computes
the readout, writes it.

Outputs (all atomic, `jobs.storage.io`), for experiment E read up to day D:
- `reports/ab/E/dt=D/report.json` (for machines) and `report.html` (plots per metric and arm over the nights);
- `reports/ab/E/history.jsonl`: one line per night read, what the plots over time draw (a re-read night replaces
  its line);
- `reports/dt=D/ab_report.json`: a pointer (experiment, verdict, page) the night's page links to.
"""
from __future__ import annotations

import datetime as dt
import logging
import posixpath
import re
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.abtest import frames
from jobs.abtest.readout import moments_from_row, overall_verdict, readout
from jobs.config import RecsConfig
from jobs.storage import io
from jobs.storage.datasets import Datasets, JsonLinesHistory

log = logging.getLogger(__name__)

REPORT_JSON, REPORT_HTML, HISTORY, NIGHT_POINTER = "report.json", "report.html", "history.jsonl", "ab_report.json"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class NoExposures(ValueError):
    """The experiment has no exposure in the period read (yet)."""


def experiment_configured(cfg: RecsConfig) -> bool:
    """Whether the nightly task has an experiment to read: an id and at least two arms."""
    return bool(cfg.experiment.id) and len(cfg.experiment.arms) > 1


def report_folder(data_root: str, experiment_id: str) -> str:
    return f"{data_root.rstrip('/')}/reports/ab/{experiment_id}"


def history(data_root: str, experiment_id: str) -> JsonLinesHistory:
    return JsonLinesHistory("A/B report history", f"{report_folder(data_root, experiment_id)}/{HISTORY}", "ab_report")


def _check_id(experiment_id: str) -> str:
    if not _SAFE_ID.match(experiment_id or ""):
        raise ValueError(f"experiment id {experiment_id!r}: expected letters, digits, '.', '_' or '-' "
                         "(it names a folder under reports/ab/)")
    return experiment_id


def _arms_and_shares(cfg: RecsConfig, experiment_id: str, seen: list[str]) -> tuple[list[str], dict, str | None]:
    """The arms in order (control first) and their expected shares: the config's when it runs this experiment,
    else the arms seen with equal shares (and a note)."""
    if experiment_id == cfg.experiment.id and len(cfg.experiment.arms) > 1:
        arms = [a.name for a in cfg.experiment.arms]
        unknown = sorted(set(seen) - set(arms))
        note = f"events carry arms not in the config, left out: {unknown}" if unknown else None
        return arms, {a.name: a.share for a in cfg.experiment.arms}, note
    arms = sorted(seen, key=lambda a: (a != "control", a))
    return arms, {a: 1.0 / len(arms) for a in arms}, (
        "the experiment is not the configured one: control is 'control' if present (else the first arm by name) "
        "and equal shares are expected")


def _identity_date(data: Datasets, end: str) -> str:
    root = posixpath.dirname(data.layout.identity_state("1970-01-01"))
    days = [d for d in io.partition_dates(root) if d <= end]
    if not days:
        raise FileNotFoundError(f"no identity state on or before {end} under {root}: run the stitch stage first")
    return days[-1]


def _event_days(data: Datasets, start: str | None, end: str, pre_days: int) -> tuple[str, list[str]]:
    """(start, the validated days to read: from `pre_days` before start through end)."""
    days = [d for d in io.partition_dates(data.layout.validated("events")) if d <= end]
    if start is None:
        if not days:
            raise FileNotFoundError(f"no validated events on or before {end} under {data.layout.validated('events')}")
        start = days[0]
    first = (dt.date.fromisoformat(start) - dt.timedelta(days=pre_days)).isoformat()
    return start, [d for d in days if d >= first and data.validated_events.has_data(d)]


def compute(spark: SparkSession, cfg: RecsConfig, experiment_id: str, *, start: str | None, end: str) -> dict:
    """The readout of `experiment_id` over exposures in [start, end] (start None: `abtest.start`, else the first
    validated day), without writing anything."""
    from jobs.identity import attribute_events, load_state_nodes
    from jobs.identity.attribution import ATTRIBUTION_COLUMNS

    t = cfg.abtest
    data = Datasets(cfg.data_root)
    start, days = _event_days(data, start or t.start or None, end, t.pre_period_days)
    if not days:
        raise FileNotFoundError(f"no validated events from {start} to {end} under {data.layout.validated('events')}")
    identity_day = _identity_date(data, end)
    columns = sorted(set(frames.EVENT_COLUMNS) - {"person_id"} | set(ATTRIBUTION_COLUMNS))
    events = io.read_spark_parquet(spark, [data.validated_events.path(d) for d in days], "events").select(*columns)
    attributed = (attribute_events(events, load_state_nodes(spark, data.layout, identity_day))
                  .select(*frames.EVENT_COLUMNS).cache())
    cached = [attributed]
    try:
        exposed, two_arms = frames.exposures(attributed, experiment_id, start, end)
        exposed = exposed.cache()
        cached.append(exposed)
        outcomes = frames.person_outcomes(attributed, exposed, experiment_id=experiment_id, end=end,
                                          pre_period_days=t.pre_period_days, attribution_days=t.attribution_days,
                                          retention_days=t.retention_days).cache()
        cached.append(outcomes)
        cap = frames.caps(outcomes, t.revenue_cap_percentile)
        rows = [r.asDict() for r in frames.arm_moments(frames.with_caps(outcomes, cap)).collect()]
        two_arm_people = two_arms.count()
        daily = sorted((r["variant"], r["day"], r["people"]) for r in frames.daily_exposures(exposed).collect())
        unattributed = (attributed.where((F.col("experiment_id") == experiment_id)
                                         & (F.col("event_type") == "rec_impression") & F.col("person_id").isNull())
                        .count())
    finally:
        for df in cached:
            df.unpersist()
    seen = sorted(r["variant"] for r in rows)
    if not seen:
        raise NoExposures(f"experiment {experiment_id!r}: no rec_impression with that experiment_id from {start} to "
                         f"{end} in the validated events ({len(days)} days read)")
    arms, shares, note = _arms_and_shares(cfg, experiment_id, seen)
    moments = {r["variant"]: moments_from_row(r) for r in rows if r["variant"] in arms}
    final = bool(t.planned_end) and end >= t.planned_end
    result = readout(moments, arms=arms, shares=shares, alpha=t.alpha, srm_p=t.srm_p, imbalance_p=t.imbalance_p,
                     tuning_n=t.sequential_tuning_n, final=final, two_arm_people=two_arm_people)
    result["health"]["unattributed_impressions"] = unattributed
    return {"experiment_id": experiment_id, "run_date": end, "start": start, "end": end,
            "planned_end": t.planned_end or None, "final": final, "verdict": overall_verdict(result["decisions"]),
            **result, "caps": cap, "daily_exposures": [{"arm": a, "day": d, "people": n} for a, d, n in daily],
            "identity_date": identity_day, "notes": [note] if note else [],
            "settings": {k: v for k, v in vars(t).items()}}


def history_record(report: dict) -> dict:
    """The compact line of the history: what the plots over time need."""
    return {"run_date": report["run_date"], "experiment_id": report["experiment_id"], "verdict": report["verdict"],
            "final": report["final"], "people": report["people"], "arms": report["arms"],
            "comparisons": {arm: {m: {k: c[k] for k in ("diff", "ci", "seq_ci", "p_value")} for m, c in cmps.items()}
                            for arm, cmps in report["comparisons"].items()}}


def run(spark: SparkSession, cfg: RecsConfig, experiment_id: str, *, start: str | None = None,
        end: str) -> dict:
    """Computes and writes the readout of `experiment_id` up to day `end`; returns the report (with ``paths``)."""
    from jobs.abtest.report import render_html

    started = time.time()
    _check_id(experiment_id)
    end = dt.date.fromisoformat(str(end)).isoformat()
    if start is not None:
        start = dt.date.fromisoformat(str(start)).isoformat()
        if start > end:
            raise ValueError(f"--from {start} is after --to {end}")
    report = compute(spark, cfg, experiment_id, start=start, end=end)
    folder = f"{report_folder(cfg.data_root, experiment_id)}/dt={end}"
    report["paths"] = {"json": f"{folder}/{REPORT_JSON}", "html": f"{folder}/{REPORT_HTML}"}
    report["seconds"] = round(time.time() - started, 1)
    past = [r for r in history(cfg.data_root, experiment_id).before(end)]
    html = render_html(report, past + [io.json_ready(history_record(report))])
    io.write_json(report["paths"]["json"], report)
    io.write_text(report["paths"]["html"], html)
    history(cfg.data_root, experiment_id).put(history_record(report))
    Datasets(cfg.data_root).write_report(end, NIGHT_POINTER, {
        "experiment_id": experiment_id, "verdict": report["verdict"], "final": report["final"],
        "people": report["people"], "html": report["paths"]["html"], "json": report["paths"]["json"]})
    log.info("ab-report %s up to %s: %s (%s)", experiment_id, end, report["verdict"], report["paths"]["html"])
    return report


def nightly(spark, cfg: RecsConfig, run_date: str) -> dict:
    """The DAG task after publish: the configured experiment's readout up to `run_date`, or nothing when no
    experiment is configured (`{"skipped": reason}`)."""
    if not experiment_configured(cfg):
        return {"skipped": "no experiment configured (experiment.id empty or a single arm)"}
    if spark is None:
        from jobs.spark import spark_session

        spark = spark_session(cfg.spark, app_name=f"recs-ab-report-{run_date}")
    try:
        report = run(spark, cfg, cfg.experiment.id, end=run_date)
    except NoExposures as exc:  # the first nights of an experiment, before any list carrying it was shown
        return {"skipped": str(exc)}
    return {"experiment_id": report["experiment_id"], "verdict": report["verdict"], "html": report["paths"]["html"]}
