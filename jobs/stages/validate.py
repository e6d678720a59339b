"""Stage 1 of 9, validate: the raw inputs of the training window; the only stage that reads `raw/`.

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

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, functions as F

from jobs.config import QualityConfig, RecsConfig
from jobs.progress import track
from jobs.storage import io
from jobs.storage.layout import VALIDATED_MARKER, Layout, window
from quality import QualityGateError, batch, raw, report, rules, suites
from quality.split import split_rows
from schemas import load

log = logging.getLogger(__name__)

RULES_VERSION = "2"  # bump when a row rule changes: every validated day is then redone
DATASETS = ("events", "catalog", "profiles")
_PUBLISH_ORDER = ("catalog", "profiles", "events")  # events last: its marker commits the day
# The row checks compile to one large method; past the JVM's 8000-byte JIT limit it would run interpreted,
# so let Spark split it instead of fusing it into one whole-stage method (about 1.3-2x faster here).
HUGE_METHOD_LIMIT = "spark.sql.codegen.hugeMethodLimit"
_SUMMARY_KEYS = ("rows", "good", "quarantined", "reasons", "duplicates_dropped", "naive_timestamps", "content_twins",
                 "devices", "event_types")


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


@dataclasses.dataclass
class Inputs:
    """The pending days' raw inputs after inspection, normalisation and the row checks."""

    inspected: dict[str, list[raw.InspectedFile]]
    borrowed: list[raw.InspectedFile]  # catalogs of validated days that pending days are checked against
    rows: dict[str, DataFrame | None]
    checked: dict[str, DataFrame | None]
    catalog_all: DataFrame | None
    content_twins: dict[str, int]  # per day: event_ids whose content came first in another file
    cached: list[DataFrame]  # persisted copies behind `checked`: unpersisted when the rows are written


def _fingerprint(files: dict[str, list[raw.RawFile]], catalog_day: str | None, catalog_files: list[raw.RawFile],
                 q: QualityConfig) -> str:
    payload = {"rules": RULES_VERSION, "schemas": {n: load(n).version for n in DATASETS + ("quarantine",)},
               "late_arrival_hours": q.late_arrival_hours, "naive_timestamps": q.naive_timestamps,
               "content_duplicate_max_share": q.content_duplicate_max_share,
               "quarantine_keep_personal": q.quarantine_keep_personal,
               "files": {n: [f.stamp() for f in fs] for n, fs in files.items()},
               "catalog_day": catalog_day, "catalog_files": [f.stamp() for f in catalog_files]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _marker(layout: Layout, ds: str) -> dict | None:
    return io.read_json(posixpath.join(layout.validated("events", ds), VALIDATED_MARKER))


def plan_days(layout: Layout, days: list[str], q: QualityConfig) -> list[DayPlan]:
    """Lists the raw files of each day and reads its marker (cheap: listings and small JSON files)."""
    catalog_days = io.partition_dates(layout.raw("catalog"))
    plans = []
    for d in days:
        files = {n: raw.list_raw_files(layout.raw(n, d), n, d) for n in DATASETS}
        if files["catalog"]:
            cday, cfiles = d, files["catalog"]
        else:
            # no snapshot that day: check its events against the latest earlier one that has files
            cday, cfiles = None, []
            for c in reversed([c for c in catalog_days if c < d]):
                cfiles = raw.list_raw_files(layout.raw("catalog", c), "catalog", c)
                if cfiles:
                    cday = c
                    break
        fp = _fingerprint(files, cday, cfiles if cday != d else [], q)
        plans.append(DayPlan(d, files, cday, cfiles, fp, _marker(layout, d)))
    return plans


def _history(layout: Layout, plans: list[DayPlan], metrics: dict[str, dict], dataset: str) -> dict[str, dict]:
    """`dataset`'s metrics of the pending days, of the validated window days (from their markers) and of
    the validated days up to 28 days before the window (the trailing baselines of its first days)."""
    out = {p.ds: p.marker["metrics"][dataset] for p in plans
           if not p.pending and p.marker and dataset in p.marker.get("metrics", {})}
    out.update(metrics)
    first = dt.date.fromisoformat(plans[0].ds)
    for i in range(1, max(batch.BASELINE_DAYS) + 1):
        ds = (first - dt.timedelta(days=i)).isoformat()
        marker = _marker(layout, ds)
        if marker and dataset in marker.get("metrics", {}):
            out[ds] = marker["metrics"][dataset]
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


def _retract(layout: Layout, ds: str) -> None:
    """Removes day `ds`'s validated folders (marker first), so no later stage uses a stale version."""
    for dataset in ("events",) + tuple(d for d in DATASETS if d != "events"):
        folder = layout.validated(dataset, ds)
        fs, p = io.fs_for(folder)
        if fs.exists(p):
            marker = posixpath.join(p, VALIDATED_MARKER)
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
        io.write_json(posixpath.join(staged, VALIDATED_MARKER), {**marker, "dataset": dataset})
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


def read_and_check(spark: SparkSession, layout: Layout, plans: list[DayPlan], q: QualityConfig) -> Inputs:
    """Inspects the pending days' raw files, reads them permissively and runs the row checks (lazy)."""
    pending = [p for p in plans if p.pending]
    pending_days = sorted({p.ds for p in pending})
    inspected = {n: raw.inspect_files([f for p in pending for f in p.files[n]]) for n in DATASETS}
    borrowed = {f.path: f for p in pending if p.catalog_day and p.catalog_day not in pending_days
                for f in p.catalog_files}
    borrowed_inspected = raw.inspect_files([borrowed[k] for k in sorted(borrowed)])
    if raw.needs_nanos_as_long([i for v in inspected.values() for i in v] + borrowed_inspected):
        spark.conf.set(raw.NANOS_AS_LONG, "true")
    catalog_all = raw.read_normalized(spark, inspected["catalog"] + borrowed_inspected, "catalog")
    rows: dict[str, DataFrame | None] = dict.fromkeys(DATASETS)
    flagged: dict[str, DataFrame | None] = dict.fromkeys(DATASETS)
    checked: dict[str, DataFrame | None] = dict.fromkeys(DATASETS)
    cached: list[DataFrame] = []
    naive = q.naive_timestamps

    def persisted(frame: DataFrame) -> DataFrame:
        # the one copy of the rows with their per-row reasons: every later job reads it, not the raw files
        # (deserialised: the columnar batches are kept as they are built, not serialised again)
        frame = frame.persist(StorageLevel.MEMORY_AND_DISK_DESER)
        cached.append(frame)
        return frame

    if catalog_all is not None:
        rows["catalog"] = catalog_all.where(F.col(rules.DT).isin(pending_days))
        flagged["catalog"] = persisted(rules.catalog_row_reasons(rows["catalog"], naive_timestamps=naive))
    rows["profiles"] = raw.read_normalized(spark, inspected["profiles"], "profiles")
    if rows["profiles"] is not None:
        flagged["profiles"] = persisted(rules.profile_row_reasons(rows["profiles"], naive_timestamps=naive))
    rows["events"] = raw.read_normalized(spark, inspected["events"], "events")
    twins: dict[str, int] = {}
    prior, copies = None, None
    if rows["events"] is not None:
        mapping = [(p.ds, p.catalog_day) for p in pending if p.catalog_day]
        if catalog_all is not None and mapping:
            day_map = spark.createDataFrame(mapping, "dt string, catalog_dt string")
            catalog_items = (catalog_all.select(F.col(rules.DT).alias("catalog_dt"), "item_id")
                             .join(F.broadcast(day_map), on="catalog_dt").select(rules.DT, "item_id"))
        else:
            catalog_items = spark.createDataFrame([], "dt string, item_id string")
        flagged["events"] = events = persisted(rules.event_row_reasons(
            rows["events"], catalog_items=catalog_items, late_arrival_hours=q.late_arrival_hours,
            naive_timestamps=naive))
        prior = _prior_event_ids(spark, layout, plans, events, len(pending_days))
        # content twins need two files of one day (repeats within one file never count): skip the
        # fingerprint aggregation, a full pass with three shuffles, when no day has more than one
        multi_file_days = sorted(d for d in pending_days
                                 if sum(1 for i in inspected["events"] if i.file.ds == d and i.error is None) > 1)
        if multi_file_days:
            twins, copies = rules.content_duplicates(events.where(F.col(rules.DT).isin(multi_file_days)),
                                                     q.content_duplicate_max_share)
    for name in DATASETS:
        if flagged[name] is not None:
            # rows compared with each other (repeated ids, content copies), read from the persisted copy
            checked[name] = rules.add_repeat_reasons(
                flagged[name], key=rules.REPEAT_KEYS[name], reason=rules.REPEAT_REASONS[name],
                prior_ids=prior if name == "events" else None, content_copies=copies if name == "events" else None,
                hold=cached)
    return Inputs(inspected, borrowed_inspected, rows, checked, catalog_all, twins, cached)


def _quarantine_salt(layout: Layout) -> str:
    """The DATA_ROOT's salt for hashing personal ids in quarantined rows: random, made once, kept."""
    path = posixpath.join(layout.quarantine("_salt"), "salt.json")
    stored = io.read_json(path)
    if not stored:
        stored = {"salt": uuid.uuid4().hex}
        io.write_json(path, stored)
    return stored["salt"]


def split_all(spark: SparkSession, layout: Layout, inputs: Inputs, pending: list[DayPlan], stage: str,
              q: QualityConfig, timings: dict) -> dict[str, dict[str, dict]]:
    """Writes good and quarantined rows of every dataset to `stage`; returns ``{dataset: {ds: metrics}}``."""
    metrics: dict[str, dict[str, dict]] = {}
    salt = "" if q.quarantine_keep_personal else _quarantine_salt(layout)
    days = sorted(p.ds for p in pending)
    for name in track(DATASETS, f"validate {len(days)} day(s): check and split rows", unit="datasets", note=str):
        metrics[name] = split_rows(spark, name, checked=inputs.checked[name], stage=stage,
                                   unreadable=raw.unreadable_quarantine_rows(inputs.inspected[name]),
                                   timings=timings, keep_personal=q.quarantine_keep_personal, salt=salt)
        for p in pending:
            m = metrics[name].get(p.ds)
            if m is None and (name == "events" or p.files[name]):
                m = metrics[name][p.ds] = batch.empty_metrics(name)
            if m is not None:
                m["unreadable_files"] = sum(1 for i in inputs.inspected[name] if i.error and i.file.ds == p.ds)
                m["files"] = len(p.files[name])
                if name == "events":
                    m["content_twins"] = inputs.content_twins.get(p.ds, 0)
    return metrics


def run_gates(layout: Layout, plans: list[DayPlan], inputs: Inputs, metrics: dict[str, dict[str, dict]],
              run_date: str, q: QualityConfig) -> tuple[list[dict], str]:
    """The batch gates (GX suites on small frames); returns the findings and the data docs index."""
    pending_days = sorted(p.ds for p in plans if p.pending)
    docs_dir = suites.new_docs_dir()
    try:
        gates = suites.GateRunner(docs_dir, run_name=f"validate-{run_date}")
        schema_rows = [f for v in inputs.inspected.values() for i in v for f in i.findings]
        for name in DATASETS:
            schema_rows += batch.all_null_findings(metrics[name], name)
        schema_result = gates.validate("raw_schema", suites.schema_frame(schema_rows), suites.schema_checks(q),
                                       index_columns=["row"])
        days_with_files = sorted({(r["ds"], r["dataset"]) for r in schema_rows})
        findings = suites.schema_findings(schema_result, run_date, days_with_files, schema_rows)
        for name, make_frame, checks in (("events", batch.events_day_frame, suites.events_day_checks(q)),
                                         ("catalog", batch.catalog_day_frame, suites.catalog_day_checks(q))):
            frame = make_frame(pending_days, run_date, _history(layout, plans, metrics[name], name), q)
            result = gates.validate(f"{name}_days", frame, checks, index_columns=["ds"])
            findings += suites.day_findings(result, frame, run_date)
        docs = io.put_local_dir(gates.build_docs(), posixpath.join(layout.reports(run_date), "data_docs"))
        docs_index = posixpath.join(docs, "index.html")
    finally:
        shutil.rmtree(docs_dir, ignore_errors=True)
    return findings, docs_index


def publish(layout: Layout, pending: list[DayPlan], metrics: dict[str, dict[str, dict]], findings: list[dict],
            run_date: str, stage: str) -> dict[str, dict]:
    """Publishes each pending day (D is retracted when it failed); returns the per-day summary."""
    failed = any(f["status"] == "failed" for f in findings)
    summary_days = {}
    for p in track(sorted(pending, key=lambda p: p.ds), "validate: publish days", unit="days", note=lambda p: p.ds):
        per = {n: metrics[n][p.ds] for n in DATASETS if p.ds in metrics[n]}
        summary_days[p.ds] = {n: {k: v for k, v in m.items() if k in _SUMMARY_KEYS} for n, m in per.items()}
        if p.ds == run_date and failed:
            _retract(layout, p.ds)
            _publish_quarantine(layout, p.ds, stage)
            continue
        marker = {"ds": p.ds, "fingerprint": p.fingerprint, "rules_version": RULES_VERSION,
                  "validated_by_run": run_date, "catalog_day": p.catalog_day,
                  "raw_files": {n: [f.stamp() for f in fs] for n, fs in p.files.items()},
                  "metrics": per, "checks": [f for f in findings if f["ds"] == p.ds]}
        _publish_day(layout, p, stage, marker)
    return summary_days


def validate_pending(spark: SparkSession, layout: Layout, plans: list[DayPlan], run_date: str, q: QualityConfig,
                     timings: dict) -> tuple[list[dict], dict, dict, str | None]:
    """Checks, gates and publishes the pending days; returns (findings, metrics, per-day summary, docs index)."""
    pending = [p for p in plans if p.pending]
    metrics: dict[str, dict[str, dict]] = {n: {} for n in DATASETS}
    findings: list[dict] = []
    docs_index = None
    stage = layout.validated(f".staging-{uuid.uuid4().hex[:8]}")
    conf_before = {k: spark.conf.get(k, None) for k in (raw.NANOS_AS_LONG, HUGE_METHOD_LIMIT)}
    tick = time.time()
    try:
        spark.conf.set(HUGE_METHOD_LIMIT, "8000")
        if pending:
            inputs = read_and_check(spark, layout, plans, q)
            try:
                metrics = split_all(spark, layout, inputs, pending, stage, q, timings)
            finally:
                for frame in inputs.cached:
                    frame.unpersist()
            timings["rows"] = round(time.time() - tick, 2)
            findings, docs_index = run_gates(layout, plans, inputs, metrics, run_date, q)
            timings["gates"] = round(time.time() - tick - timings["rows"], 2)
        plan = next(p for p in plans if p.ds == run_date)
        if not plan.pending and plan.marker:
            # D already validated by an earlier run: its checks passed then; carry them into this report
            findings += [{**f, "reused": True} for f in plan.marker.get("checks", [])]
        summary_days = publish(layout, pending, metrics, findings, run_date, stage)
    finally:
        for k, v in conf_before.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)
        fs, stage_p = io.fs_for(stage)
        if fs.exists(stage_p):
            fs.rm(stage_p, recursive=True)
    return findings, metrics, summary_days, docs_index


def run(spark: SparkSession, cfg: RecsConfig, run_date: str) -> dict:
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
    run_date = dt.date.fromisoformat(str(run_date)).isoformat()
    plans = plan_days(layout, window(run_date, cfg.window_days), cfg.quality)
    pending_days = sorted(p.ds for p in plans if p.pending)
    log.info("validate %s: %d pending day(s), %d already validated", run_date, len(pending_days),
             len(plans) - len(pending_days))
    timings: dict[str, float] = {}
    findings, metrics, summary_days, docs_index = validate_pending(spark, layout, plans, run_date, cfg.quality,
                                                                   timings)
    failures = [f for f in findings if f["status"] == "failed"]
    warnings = [f for f in findings if f["status"] == "warned"]
    reports_dir = layout.reports(run_date)
    if docs_index is None and io.exists(posixpath.join(reports_dir, "data_docs", "index.html")):
        docs_index = posixpath.join(reports_dir, "data_docs", "index.html")  # from the run that validated D
    summary = {"run_date": run_date, "window": [plans[0].ds, plans[-1].ds],
               "pending_days": pending_days, "skipped_days": len(plans) - len(pending_days),
               "days": summary_days, "quarantine": batch.quarantine_totals(metrics, pending_days),
               "checks": findings, "failures": failures, "warnings": warnings, "passed": not failures,
               "reports": {"data_docs": docs_index, "data_docs_relative": "data_docs/index.html"},
               "timings": timings, "seconds": round(time.time() - started, 1)}
    summary["reports"].update(json=posixpath.join(reports_dir, "validation.json"),
                              html=posixpath.join(reports_dir, "validation.html"))
    io.write_json(summary["reports"]["json"], summary)
    io.write_text(summary["reports"]["html"], report.render_html(summary))
    if failures:
        raise QualityGateError(failures, report=summary["reports"]["json"])
    log.info("validate %s: passed in %.1fs (%d warning(s))", run_date, summary["seconds"], len(warnings))
    return summary
