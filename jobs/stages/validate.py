"""Stage 1: validate the raw inputs of the training window; the only stage that reads `raw/`.

A run for day D looks at every day of its window (`window(D, cfg.window_days)`). A day whose raw files
(names, sizes, modification times) and row rules match the marker `_recs_validated.json` of its
validated events folder is skipped; every other day is *pending* (first run, missed night, late or
re-delivered partition) and all pending days are validated together in one Spark pass:

1. raw files are found and their schemas inspected (`quality.raw`); unreadable files are findings;
2. rows are read permissively and checked (`quality.rules`); each row gets its reasons;
3. per-day metrics are aggregated (`quality.batch`) and everything is written to a staging folder;
4. the batch gates run as GX suites on small frames (`quality.suites`); only day D can fail the run,
   findings on older pending days are warnings;
5. each pending day is published: `validated/<dataset>/dt=d/` (exactly the contract columns, plus the
   marker) and `quarantine/<dataset>/dt=d/` (the contract `quarantine` schema). When D fails, D's
   validated folders are removed (not left stale) while its quarantine and the reports are still written;
6. reports: `reports/dt=D/validation.json`, `validation.html` and `data_docs/index.html`.

Then `quality.QualityGateError` is raised if a check of D failed. Once the input is fixed, re-running
D validates it again (its raw files changed, or it was never marked) and succeeds.

Every window day gets a validated events folder (empty for a day without raw events) so later stages
read the window without gaps; catalog and profiles folders exist for days that delivered them. A day
already validated whose raw events have since been deleted (raw retention) is kept as validated.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import posixpath
import shutil
import time
import uuid

from pyspark.sql import DataFrame, SparkSession, functions as F, types as T

from jobs.storage import io
from jobs.storage.layout import Layout, window
from quality import QualityGateError, batch, raw, report, rules, suites
from schemas import load

log = logging.getLogger(__name__)

MARKER = "_recs_validated.json"
RULES_VERSION = "1"  # bump when a row rule changes: every validated day is then redone
DATASETS = ("events", "catalog", "profiles")
_PUBLISH_ORDER = ("catalog", "profiles", "events")  # events last: its marker commits the day


@dataclasses.dataclass
class DayPlan:
    """What one window day holds in raw/ and whether it must be validated."""

    ds: str
    files: dict[str, list[raw.RawFile]]
    catalog_day: str | None  # the catalog its events are checked against (itself, or the latest before)
    catalog_files: list[raw.RawFile]
    fingerprint: str
    marker: dict | None

    @property
    def pending(self) -> bool:
        if self.marker is None:
            return True
        if self.marker.get("fingerprint") == self.fingerprint:
            return False
        # raw retention: the raw events are gone but the day was validated from them; keep it
        return bool(self.files["events"]) or not self.marker.get("raw_files", {}).get("events")


def _raw_days(layout: Layout, dataset: str) -> list[str]:
    fs, p = io.fs_for(layout.raw(dataset))
    if not fs.exists(p):
        return []
    out = []
    for entry in fs.ls(p, detail=False):
        name = posixpath.basename(entry.rstrip("/"))
        if name.startswith("dt="):
            out.append(name[3:])
    return sorted(out)


def _fingerprint(files: dict[str, list[raw.RawFile]], catalog_day: str | None, catalog_files: list[raw.RawFile],
                 late_arrival_hours: float) -> str:
    payload = {"rules": RULES_VERSION, "schemas": {n: load(n).version for n in DATASETS + ("quarantine",)},
               "late_arrival_hours": late_arrival_hours,
               "files": {n: [f.stamp() for f in fs] for n, fs in files.items()},
               "catalog_day": catalog_day, "catalog_files": [f.stamp() for f in catalog_files]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def plan_days(layout: Layout, days: list[str], late_arrival_hours: float) -> list[DayPlan]:
    """Lists the raw files of each day and reads its marker (cheap: listings and small JSON files)."""
    catalog_days = _raw_days(layout, "catalog")
    plans = []
    for d in days:
        files = {n: raw.list_raw_files(layout, n, d) for n in DATASETS}
        if files["catalog"]:
            cday, cfiles = d, files["catalog"]
        else:
            # no snapshot that day: check its events against the latest earlier one that has files
            cday, cfiles = None, []
            for c in reversed([c for c in catalog_days if c < d]):
                cfiles = raw.list_raw_files(layout, "catalog", c)
                if cfiles:
                    cday = c
                    break
        fp = _fingerprint(files, cday, cfiles if cday != d else [], late_arrival_hours)
        marker = io.read_json(posixpath.join(layout.validated("events", d), MARKER))
        plans.append(DayPlan(d, files, cday, cfiles, fp, marker))
    return plans


def _history(layout: Layout, plans: list[DayPlan], metrics: dict[str, dict]) -> dict[str, dict]:
    """Events metrics of the pending days, of the validated window days (from their markers) and of the
    validated days up to 28 days before the window (the trailing baselines of its first days)."""
    out = {p.ds: p.marker["metrics"]["events"] for p in plans
           if not p.pending and p.marker and "events" in p.marker.get("metrics", {})}
    out.update(metrics)
    first = dt.date.fromisoformat(plans[0].ds)
    for i in range(1, max(batch.BASELINE_DAYS) + 1):
        ds = (first - dt.timedelta(days=i)).isoformat()
        marker = io.read_json(posixpath.join(layout.validated("events", ds), MARKER))
        if marker and "events" in marker.get("metrics", {}):
            out[ds] = marker["metrics"]["events"]
    return out


def _prior_event_ids(spark: SparkSession, layout: Layout, plans: list[DayPlan], events: DataFrame,
                     n_pending: int) -> DataFrame | None:
    """Ids of pending events that validated (non-pending) window days already published."""
    paths = [layout.validated("events", p.ds) for p in plans if not p.pending and p.marker
             and p.marker.get("metrics", {}).get("events", {}).get("good", 0) > 0]
    paths = [p for p in paths if io.has_data(p)]
    if not paths:
        return None
    published = io.read_spark_parquet(spark, paths, "events").select("event_id")
    pending_ids = events.select("event_id").where(F.col("event_id").isNotNull())
    if n_pending <= 7:  # a nightly run: the pending ids are the small side
        pending_ids = F.broadcast(pending_ids)
    return published.join(pending_ids, on="event_id", how="left_semi").distinct()


def _empty_parquet(folder: str, dataset: str) -> None:
    import pyarrow.parquet as pq

    fs, p = io.fs_for(folder)
    fs.makedirs(p, exist_ok=True)
    with fs.open(posixpath.join(p, "part-00000.parquet"), "wb") as f:
        pq.write_table(load(dataset).arrow().empty_table(), f)


_METRIC_COLUMNS = {"events": ("device_type", "event_type", "anonymous_id", "user_id", "item_id"),
                   "catalog": (), "profiles": ()}
_ROW_KEY = [rules.SOURCE_FILE, rules.SOURCE_POS]
# The row checks compile to one large method; past the JVM's 8000-byte JIT limit it would run interpreted,
# so let Spark split it instead of fusing it into one whole-stage method (about 1.3-2x faster here).
HUGE_METHOD_LIMIT = "spark.sql.codegen.hugeMethodLimit"


def _quarantine_schema() -> T.StructType:
    return T.StructType(list(load("quarantine").spark().fields) + [T.StructField(rules.DT, T.StringType())])


def split_rows(spark: SparkSession, dataset: str, *, checked: DataFrame | None, rows: DataFrame | None,
               stage: str, unreadable: list[dict], timings: dict | None = None) -> dict[str, dict]:
    """Writes the good and the quarantined rows of all pending days to the staging folder; returns metrics.

    Two passes over the raw rows, no cache: pass 1 runs every check and writes only the bad rows (a
    few %) with their row keys (source file, position); pass 2 re-reads the rows, drops those keys with a
    broadcast anti-join and writes the good rows without evaluating a check again. The per-day metrics
    then come from reading a few columns of both outputs.

    Parameters
    ----------
    checked : output of `check_<dataset>_rows` over `rows` (None when no file was readable).
    rows : the normalized raw rows (`quality.raw.read_normalized`).
    unreadable : quarantine rows for whole unreadable files (`raw.unreadable_quarantine_rows`).
    timings : when given, receives the seconds of each pass.
    """
    base = f"{stage}/{dataset}"
    timings = {} if timings is None else timings
    started = time.time()

    def lap(name: str) -> None:
        nonlocal started
        timings[f"{dataset}_{name}"] = round(time.time() - started, 2)
        started = time.time()

    quarantine_parts = []
    if unreadable:
        quarantine_parts.append(spark.createDataFrame(unreadable, schema=_quarantine_schema()))
    if checked is None:
        if quarantine_parts:
            quarantine_parts[0].write.mode("overwrite").partitionBy(rules.DT).parquet(f"{base}/quarantine")
        return {}
    keep = _METRIC_COLUMNS[dataset] + tuple(_ROW_KEY)
    rules.to_quarantine(checked, dataset, keep=keep).write.mode("overwrite").parquet(f"{base}/bad")  # pass 1
    lap("checks")
    bad = spark.read.parquet(f"{base}/bad")
    keys = bad.select(*_ROW_KEY).distinct()
    good = rows.join(F.broadcast(keys), on=_ROW_KEY, how="left_anti").select(*load(dataset).names, rules.DT)
    good.write.mode("overwrite").partitionBy(rules.DT).parquet(f"{base}/good")  # pass 2
    lap("good")
    quarantine_cols = load("quarantine").names + [rules.DT]
    quarantine = bad.select(*quarantine_cols)
    for extra in quarantine_parts:
        quarantine = quarantine.unionByName(extra)
    quarantine.write.mode("overwrite").partitionBy(rules.DT).parquet(f"{base}/quarantine")
    lap("quarantine")
    good_metrics = {}
    if io.has_data(f"{base}/good"):  # no file at all when every row was quarantined
        written = spark.read.parquet(f"{base}/good")  # dt comes back as a date (partition discovery)
        good_part = written.select(F.col(rules.DT).cast("string").alias(rules.DT), *_METRIC_COLUMNS[dataset])
        good_metrics = batch.day_metrics(good_part, dataset, all_good=True)
    merged = batch.merge_metrics(good_metrics, batch.day_metrics(bad, dataset), dataset)
    lap("metrics")
    return merged


def _retract(layout: Layout, ds: str) -> None:
    """Removes day `ds`'s validated folders (marker first), so no later stage uses a stale version."""
    for dataset in ("events",) + tuple(d for d in DATASETS if d != "events"):
        folder = layout.validated(dataset, ds)
        fs, p = io.fs_for(folder)
        if fs.exists(p):
            marker = posixpath.join(p, MARKER)
            if fs.exists(marker):
                fs.rm(marker)
            fs.rm(p, recursive=True)


def _publish_day(layout: Layout, plan: DayPlan, stage: str, marker: dict) -> None:
    """Moves day `plan.ds`'s staged outputs into place; the events folder (with its marker) goes last."""
    ds = plan.ds
    for dataset in _PUBLISH_ORDER:
        staged = f"{stage}/{dataset}/good/dt={ds}"
        fs, staged_p = io.fs_for(staged)
        if dataset != "events" and not plan.files[dataset]:
            continue  # no delivery that day: nothing to publish (and nothing to remove: see module doc)
        if not fs.exists(staged_p):
            _empty_parquet(staged, dataset)
        io.write_json(posixpath.join(staged, MARKER), {**marker, "dataset": dataset})
        io.promote(staged, layout.validated(dataset, ds))
    _publish_quarantine(layout, ds, stage)


def _publish_quarantine(layout: Layout, ds: str, stage: str) -> None:
    for dataset in DATASETS:
        staged = f"{stage}/{dataset}/quarantine/dt={ds}"
        fs, staged_p = io.fs_for(staged)
        final = layout.quarantine(dataset, ds)
        if fs.exists(staged_p):
            io.promote(staged, final)
        else:
            ffs, final_p = io.fs_for(final)
            if ffs.exists(final_p):
                ffs.rm(final_p, recursive=True)


def _catalog_frame(catalog_norm: DataFrame | None, ds: str):
    """The run day's catalog as a small pandas frame for the `catalog_day` suite (blank text = missing)."""
    import pandas as pd

    cols = ["item_id", "category_path", "price", "brand"]
    if catalog_norm is None:
        return pd.DataFrame({c: pd.Series([], dtype="object") for c in cols})
    blank_null = lambda c: F.when(F.trim(F.col(c)) != "", F.col(c)).alias(c)  # noqa: E731
    sel = catalog_norm.where(F.col(rules.DT) == ds).select(
        "item_id", blank_null("category_path"), "price", blank_null("brand"))
    frame = sel.toArrow().to_pandas()
    return frame[cols]


def _schema_frame(rows: list[dict]):
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=suites.SCHEMA_INDEX + ["status"])
    return frame.astype("object").where(frame.notna(), None)


def run(spark: SparkSession, cfg, run_date: str) -> dict:
    """Validates the pending days of the window ending `run_date`; raises `QualityGateError` if D fails.

    Returns
    -------
    dict
        ``run_date``, ``pending_days``, ``skipped_days``, ``days`` (per day and dataset: rows, good,
        quarantined, reasons), ``quarantine`` (per dataset: rows per reason over the pending days),
        ``checks`` (findings: every check of D, and the non-passing ones of older days), ``failures``,
        ``warnings``, ``passed``, ``reports`` (paths) and ``seconds``.
    """
    started = time.time()
    layout = Layout(cfg.data_root)
    q = cfg.quality
    run_date = dt.date.fromisoformat(str(run_date)).isoformat()
    plans = plan_days(layout, window(run_date, cfg.window_days), q.late_arrival_hours)
    pending = [p for p in plans if p.pending]
    pending_days = {p.ds for p in pending}
    by_day = {p.ds: p for p in plans}
    log.info("validate %s: %d pending day(s), %d already validated", run_date, len(pending), len(plans) - len(pending))

    stage = layout.validated(f".staging-{uuid.uuid4().hex[:8]}")
    conf_before = {k: spark.conf.get(k, None) for k in (raw.NANOS_AS_LONG, HUGE_METHOD_LIMIT)}
    findings: list[dict] = []
    summary_days: dict[str, dict] = {}
    metrics: dict[str, dict[str, dict]] = {n: {} for n in DATASETS}
    docs_index = None
    timings: dict[str, float] = {}
    tick = time.time()

    def lap(name: str) -> None:
        nonlocal tick
        timings[name] = round(time.time() - tick, 2)
        log.info("validate %s: %s %.1fs", run_date, name, timings[name])
        tick = time.time()

    lap("plan")
    try:
        spark.conf.set(HUGE_METHOD_LIMIT, "8000")
        if pending:
            inspected = {n: raw.inspect_files([f for p in pending for f in p.files[n]]) for n in DATASETS}
            # catalogs that pending days borrow from a validated day (no snapshot of their own)
            borrowed = {f.path: f for p in pending if p.catalog_day and p.catalog_day not in pending_days
                        for f in p.catalog_files}
            borrowed_inspected = raw.inspect_files([borrowed[k] for k in sorted(borrowed)])
            if raw.needs_nanos_as_long([i for v in inspected.values() for i in v] + borrowed_inspected):
                spark.conf.set(raw.NANOS_AS_LONG, "true")
            lap("inspect")

            # --- row checks: all pending days of a dataset in one pass
            n_days = len(pending_days)
            catalog_all = raw.read_normalized(spark, inspected["catalog"] + borrowed_inspected, "catalog")
            rows: dict[str, DataFrame | None] = {"catalog": None, "profiles": None, "events": None}
            checked: dict[str, DataFrame | None] = {"catalog": None, "profiles": None, "events": None}
            if catalog_all is not None:
                rows["catalog"] = catalog_all.where(F.col(rules.DT).isin(sorted(pending_days)))
                checked["catalog"] = rules.check_catalog_rows(rows["catalog"])
            rows["profiles"] = raw.read_normalized(spark, inspected["profiles"], "profiles")
            if rows["profiles"] is not None:
                checked["profiles"] = rules.check_profile_rows(rows["profiles"])
            rows["events"] = raw.read_normalized(spark, inspected["events"], "events")
            if rows["events"] is not None:
                mapping = [(p.ds, p.catalog_day) for p in pending if p.catalog_day]
                if catalog_all is not None and mapping:
                    day_map = spark.createDataFrame(mapping, "dt string, catalog_dt string")
                    catalog_items = (catalog_all.select(F.col(rules.DT).alias("catalog_dt"), "item_id")
                                     .join(F.broadcast(day_map), on="catalog_dt").select(rules.DT, "item_id"))
                else:
                    catalog_items = spark.createDataFrame([], "dt string, item_id string")
                prior = _prior_event_ids(spark, layout, plans, rows["events"], n_days)
                checked["events"] = rules.check_event_rows(
                    rows["events"], catalog_items=catalog_items, late_arrival_hours=q.late_arrival_hours,
                    prior_event_ids=prior)

            for name in DATASETS:
                metrics[name] = split_rows(spark, name, checked=checked[name], rows=rows[name], stage=stage,
                                           unreadable=raw.unreadable_quarantine_rows(inspected[name]),
                                           timings=timings)
                lap(f"{name}_rows")
                for p in pending:
                    m = metrics[name].get(p.ds)
                    if m is None and (name == "events" or p.files[name]):
                        m = metrics[name][p.ds] = batch.empty_metrics(name)
                    if m is not None:
                        m["unreadable_files"] = sum(1 for i in inspected[name] if i.error and i.file.ds == p.ds)
                        m["files"] = len(p.files[name])

            # --- batch gates (GX) on small frames
            docs_dir = suites.new_docs_dir()
            gates = suites.GateRunner(docs_dir, run_name=f"validate-{run_date}")
            schema_rows = [f for v in inspected.values() for i in v for f in i.findings]
            for name in DATASETS:
                schema_rows += batch.all_null_findings(metrics[name], name)
            schema_result = gates.validate("raw_schema", _schema_frame(schema_rows), suites.schema_checks(q),
                                           index_columns=suites.SCHEMA_INDEX)
            days_with_files = sorted({(r["ds"], r["dataset"]) for r in schema_rows})
            findings += suites.schema_findings(schema_result, run_date, days_with_files)
            history = _history(layout, plans, metrics["events"])
            day_frame = batch.events_day_frame(sorted(pending_days), run_date, history, q)
            findings += suites.day_findings(gates.validate("events_days", day_frame, suites.events_day_checks(q),
                                                           index_columns=["ds"]), day_frame, run_date)
            if run_date in pending_days:
                catalog_frame = _catalog_frame(catalog_all, run_date)
                findings += suites.catalog_findings(gates.validate("catalog_day", catalog_frame,
                                                                   suites.catalog_checks(q)), run_date)
            docs_index = report.publish_docs(gates.build_docs(), layout.reports(run_date))
            shutil.rmtree(docs_dir, ignore_errors=True)
            lap("gates")

        # D already validated by an earlier run: its checks passed then; carry them into this report
        if run_date not in pending_days and by_day[run_date].marker:
            findings += [{**f, "reused": True} for f in by_day[run_date].marker.get("checks", [])]

        failures = [f for f in findings if f["status"] == "failed"]
        warnings = [f for f in findings if f["status"] == "warned"]

        # --- publish
        for p in sorted(pending, key=lambda p: p.ds):
            per = {n: metrics[n][p.ds] for n in DATASETS if p.ds in metrics[n]}
            summary_days[p.ds] = {n: {k: v for k, v in m.items() if k in ("rows", "good", "quarantined", "reasons")}
                                  for n, m in per.items()}
            if p.ds == run_date and failures:
                _retract(layout, p.ds)
                _publish_quarantine(layout, p.ds, stage)
                continue
            marker = {"ds": p.ds, "fingerprint": p.fingerprint, "rules_version": RULES_VERSION,
                      "validated_by_run": run_date, "catalog_day": p.catalog_day,
                      "raw_files": {n: [f.stamp() for f in fs] for n, fs in p.files.items()},
                      "metrics": per, "checks": [f for f in findings if f["ds"] == p.ds]}
            _publish_day(layout, p, stage, marker)
        lap("publish")
    finally:
        for k, v in conf_before.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)
        fs, stage_p = io.fs_for(stage)
        if fs.exists(stage_p):
            fs.rm(stage_p, recursive=True)

    quarantine_totals: dict[str, dict[str, int]] = {}
    for name in DATASETS:
        totals: dict[str, int] = {}
        for ds in pending_days:
            m = metrics[name].get(ds)
            for reason, n in (m or {}).get("reasons", {}).items():
                totals[reason] = totals.get(reason, 0) + n
            if m and m.get("unreadable_files"):
                totals[rules.UNREADABLE_FILE] = totals.get(rules.UNREADABLE_FILE, 0) + m["unreadable_files"]
        quarantine_totals[name] = dict(sorted(totals.items()))
    reports_dir = layout.reports(run_date)
    if docs_index is None and io.exists(posixpath.join(reports_dir, "data_docs", "index.html")):
        docs_index = posixpath.join(reports_dir, "data_docs", "index.html")  # from the run that validated D
    summary = {"run_date": run_date, "window": [plans[0].ds, plans[-1].ds],
               "pending_days": sorted(pending_days), "skipped_days": len(plans) - len(pending),
               "days": summary_days, "quarantine": quarantine_totals,
               "checks": findings, "failures": failures, "warnings": warnings, "passed": not failures,
               "reports": {"data_docs": docs_index, "data_docs_relative": "data_docs/index.html"},
               "timings": timings}
    summary["seconds"] = round(time.time() - started, 1)
    summary["reports"].update(report.write_reports(summary, reports_dir))
    if failures:
        raise QualityGateError(failures, report=summary["reports"]["json"])
    log.info("validate %s: passed in %.1fs (%d warning(s))", run_date, summary["seconds"], len(warnings))
    return summary
