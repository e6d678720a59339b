"""Per-day metrics of checked rows and the small frames the batch gates judge.

`day_metrics` runs one Spark aggregation over a checked dataset (all pending days at once; in the validate
stage over its persisted copy) and returns a plain dict per day: rows, good rows, quarantined rows, per-reason
counts and, for events, volume per device type and per event type, item events with unknown items and events
without identity. These dicts are stored in each validated day's marker, so the trailing baselines of later runs
come from markers, not from re-reading old data. `events_day_frame` turns them into one pandas row per day with
the shares and ratios that the GX suite `events_days` checks.
"""
from __future__ import annotations

import datetime as dt
import statistics

from pyspark.sql import Column, DataFrame, functions as F

from quality import rules
from schemas import load
from schemas.vocabulary import ITEM_EVENT_TYPES

DEVICE_BUCKETS = tuple(rules.DEVICE_TYPES) + ("other",)
EVENT_TYPE_BUCKETS = tuple(rules.EVENT_TYPES) + ("other",)
BASELINE_DAYS = (7, 28)
CATALOG_BASELINE_DAYS = 7
# catalog fields whose coverage (share of items with a value; blank text = no value) goes into the metrics
CATALOG_COVERAGE_FIELDS = tuple(n for n in load("catalog").names if n not in ("item_id", "title", "is_available"))


def day_metrics(checked: DataFrame, dataset: str, *, dropped: Column | None = None) -> dict[str, dict]:
    """Counts per partition day of a checked frame (output of `check_<dataset>_rows`), in one Spark job.

    Rows matching `dropped` (re-deliveries of an id already seen) are counted only as
    ``duplicates_dropped``; every other figure leaves them out. Timestamps without a zone are counted over
    all rows (``naive_timestamps``) when the frame has the flag column.

    Returns
    -------
    dict
        ``{ds: {"rows", "good", "quarantined", "reasons": {reason: n}, "duplicates_dropped",
        "naive_timestamps"}}``; events add ``"devices"``
        (``{device_type or "other": rows}``), ``"event_types"`` (``{event_type or "other": rows}``),
        ``"item_events"``, ``"unknown_items"``, ``"no_identity"``;
        catalog adds ``"filled"`` (``{field: items with a value}`` for the fields of
        `CATALOG_COVERAGE_FIELDS` that the frame has).
    """
    reasons = rules.possible_reasons(dataset)
    r = F.col(rules.REASONS)
    kept = F.lit(True) if dropped is None else ~dropped

    def count(cond: Column) -> Column:
        return F.count_if(kept & cond)

    aggs = [count(F.lit(True)).alias("rows"), count(F.size(r) == 0).alias("good"),
            (F.lit(0) if dropped is None else F.count_if(dropped)).alias("duplicates_dropped"),
            (F.count_if(F.col(rules.NAIVE_TIME)) if rules.NAIVE_TIME in checked.columns else F.lit(0))
            .alias("naive_timestamps")]
    aggs += [count(F.array_contains(r, name)).alias(f"r{i}") for i, name in enumerate(reasons)]
    if dataset == "events":
        dev = F.col("device_type")
        aggs += [count(dev == d).alias(f"dev_{d}") for d in rules.DEVICE_TYPES]
        et = F.col("event_type")
        aggs += [count(et == t).alias(f"et_{i}") for i, t in enumerate(rules.EVENT_TYPES)]
        blank = lambda c: F.col(c).isNull() | (F.trim(F.col(c)) == "")  # noqa: E731
        item_event = F.col("event_type").isin(*ITEM_EVENT_TYPES) & ~blank("item_id")
        aggs += [count(item_event).alias("item_events"),
                 count(F.array_contains(r, rules.UNKNOWN_ITEM)).alias("unknown_items"),
                 count(blank("anonymous_id") & blank("user_id")).alias("no_identity")]
    filled = [c for c in CATALOG_COVERAGE_FIELDS if c in checked.columns] if dataset == "catalog" else []
    for c in filled:
        value = F.col(c)
        has = value.isNotNull() & (F.trim(value) != "") if load("catalog").field(c).type == "string" else value.isNotNull()
        aggs.append(count(has).alias(f"filled_{c}"))
    out = {}
    for row in checked.groupBy(rules.DT).agg(*aggs).collect():
        d = row.asDict()
        ds = str(d[rules.DT])
        m = {"rows": int(d["rows"]), "good": int(d["good"] or 0)}
        m["quarantined"] = m["rows"] - m["good"]
        m["reasons"] = {name: int(d[f"r{i}"]) for i, name in enumerate(reasons) if d[f"r{i}"]}
        if dataset == "events":
            devices = {k: int(d[f"dev_{k}"] or 0) for k in rules.DEVICE_TYPES}
            devices["other"] = m["rows"] - sum(devices.values())
            m["devices"] = devices
            types = {t: int(d[f"et_{i}"] or 0) for i, t in enumerate(rules.EVENT_TYPES)}
            types["other"] = m["rows"] - sum(types.values())
            m["event_types"] = types
            for k in ("item_events", "unknown_items", "no_identity"):
                m[k] = int(d[k] or 0)
        if filled:
            m["filled"] = {c: int(d[f"filled_{c}"] or 0) for c in filled}
        m["duplicates_dropped"] = int(d["duplicates_dropped"] or 0)
        m["naive_timestamps"] = int(d["naive_timestamps"] or 0)
        out[ds] = m
    return out


def empty_metrics(dataset: str) -> dict:
    """The metrics of a day without rows."""
    m = {"rows": 0, "good": 0, "quarantined": 0, "reasons": {}}
    if dataset == "events":
        m.update(devices=dict.fromkeys(DEVICE_BUCKETS, 0), event_types=dict.fromkeys(EVENT_TYPE_BUCKETS, 0),
                 item_events=0, unknown_items=0, no_identity=0)
    if dataset == "catalog":
        m["filled"] = {}
    return m


def _share(num: int, den: int) -> float | None:
    return None if not den else num / den


def _trailing(day: str, n: int, history: dict[str, dict]) -> list[dict]:
    """Metrics of the `n` days before `day` that had events (days without events are not a baseline)."""
    d0 = dt.date.fromisoformat(day)
    days = [(d0 - dt.timedelta(days=i)).isoformat() for i in range(1, n + 1)]
    return [history[d] for d in days if d in history and history[d].get("rows", 0) > 0]


def baseline(day: str, n: int, history: dict[str, dict], *, min_days: int) -> dict | None:
    """Median total and per-device volume over the trailing `n` days, or None with too little history."""
    past = _trailing(day, n, history)
    if len(past) < max(1, min_days):
        return None
    out = {"days": len(past), "rows": statistics.median(m["rows"] for m in past)}
    out["devices"] = {k: statistics.median(m.get("devices", {}).get(k, 0) for m in past) for k in DEVICE_BUCKETS}
    return out


def device_column(n: int, device: str) -> str:
    return f"device_ratio_{n}d__{device}"


def events_day_frame(days: list[str], run_date: str, history: dict[str, dict], quality_cfg):
    """One pandas row per day in `days`: the figures the `events_days` suite judges.

    Parameters
    ----------
    days : the pending days (the run's own day among them when it is pending).
    run_date : the run's own day: only its row carries `rows_run_day` (an empty past day is normal).
    history : ``{ds: metrics}`` for the pending days and the validated days before them.
    quality_cfg : `cfg.quality` (min_history_days, device_min_share).

    Columns: ds, rows, rows_run_day, quarantine_share (rows quarantined as `duplicate_content` left out),
    content_twin_share (event_ids whose content came first in another file / rows), unknown_item_share,
    no_identity_share,
    median_7d, median_28d, volume_ratio_7d, volume_ratio_28d and one `device_ratio_<n>d__<device>` per
    device type and baseline. A ratio is None (not judged) when the baseline has fewer than
    `min_history_days` days with events, when the day itself is an empty past day, or (devices) when the
    device's median is below `device_min_share` of the total median.
    """
    import pandas as pd

    records = []
    for day in days:
        m = history.get(day) or {}
        rows = m.get("rows", 0)
        copies = m.get("reasons", {}).get(rules.DUPLICATE_CONTENT, 0)
        rec = {"ds": day, "rows": rows, "rows_run_day": rows if day == run_date else None,
               # later copies under new ids are judged by `content_twin_share`, not as bad rows
               "quarantine_share": _share(m.get("quarantined", 0) - copies, rows - copies),
               "content_twin_share": _share(m.get("content_twins", 0), rows),
               "unknown_item_share": _share(m.get("unknown_items", 0), m.get("item_events", 0)),
               "no_identity_share": _share(m.get("no_identity", 0), rows)}
        judged = rows > 0 or day == run_date
        for n in BASELINE_DAYS:
            base = baseline(day, n, history, min_days=quality_cfg.min_history_days)
            rec[f"median_{n}d"] = None if base is None else float(base["rows"])
            rec[f"volume_ratio_{n}d"] = (rows / base["rows"]) if (base and base["rows"] and judged) else None
            for dev in rules.DEVICE_TYPES:
                ratio = None
                if base and judged and base["rows"] and base["devices"][dev] >= quality_cfg.device_min_share * base["rows"]:
                    ratio = m.get("devices", {}).get(dev, 0) / base["devices"][dev]
                rec[device_column(n, dev)] = ratio
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    for c in frame.columns:
        if c != "ds":
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return frame


def all_null_findings(metrics: dict[str, dict], dataset: str) -> list[dict]:
    """Schema findings for always-required columns that are empty in every row of a day.

    JSON Lines have no file schema; a column that is missing from a whole day's delivery shows up here.
    """
    out = []
    for ds, m in metrics.items():
        rows = m.get("rows", 0)
        if not rows:
            continue
        for name in load(dataset).required:
            n = m["reasons"].get(f"{rules.NULL_REQUIRED}:{name}", 0) + m["reasons"].get(f"{rules.BAD_TYPE}:{name}", 0)
            if n >= rows:
                out.append(dict(ds=ds, dataset=dataset, file=None, column=name, expected="values",
                                observed=f"null or unreadable in all {rows} rows", status="missing_required"))
    return out


def quarantine_totals(metrics: dict[str, dict[str, dict]], days: list[str]) -> dict[str, dict[str, int]]:
    """Rows per reason and dataset over `days` (unreadable files counted as files)."""
    out: dict[str, dict[str, int]] = {}
    for name, per_day in metrics.items():
        totals: dict[str, int] = {}
        for ds in days:
            m = per_day.get(ds) or {}
            for reason, n in m.get("reasons", {}).items():
                totals[reason] = totals.get(reason, 0) + n
            if m.get("unreadable_files"):
                totals[rules.UNREADABLE_FILE] = totals.get(rules.UNREADABLE_FILE, 0) + m["unreadable_files"]
        out[name] = dict(sorted(totals.items()))
    return out


def coverage_column(attr: str) -> str:
    return f"coverage_vs_trailing__{attr}"


def catalog_day_frame(days: list[str], run_date: str, history: dict[str, dict], quality_cfg):
    """One pandas row per day in `days` that has a catalog (and the run day): what `catalog_days` judges.

    Columns: ds, items_run_day (items in the run day's snapshot, 0 without one; None on other days),
    category_coverage and price_coverage (required fields: judged against an absolute minimum), and per
    attribute of `quality_cfg.catalog_attributes` its coverage and `coverage_vs_trailing__<attr>`: the
    day's coverage / the median coverage of the trailing `CATALOG_BASELINE_DAYS` days with a catalog.
    That ratio is None (not judged) with fewer than `min_history_days` such days (a new shop), or when
    the trailing median is below `catalog_attribute_min_baseline` (an attribute the shop does not send).
    """
    import pandas as pd

    def coverage(m: dict, field: str) -> float | None:
        return _share(m.get("filled", {}).get(field, 0), m.get("rows", 0))

    unknown = [a for a in quality_cfg.catalog_attributes if a not in CATALOG_COVERAGE_FIELDS]
    if unknown:
        raise ValueError(f"quality.catalog_attributes: {unknown} are not optional catalog fields "
                         f"{list(CATALOG_COVERAGE_FIELDS)}")
    records = []
    for day in [d for d in days if d in history or d == run_date]:
        m = history.get(day) or {}
        rec = {"ds": day, "items_run_day": m.get("rows", 0) if day == run_date else None,
               "category_coverage": coverage(m, "category_path"), "price_coverage": coverage(m, "price")}
        past = _trailing(day, CATALOG_BASELINE_DAYS, history)
        for attr in quality_cfg.catalog_attributes:
            today = coverage(m, attr)
            rec[f"coverage__{attr}"] = today
            base = statistics.median(coverage(p, attr) or 0.0 for p in past) if past else 0.0
            judged = (today is not None and len(past) >= max(1, quality_cfg.min_history_days)
                      and base >= quality_cfg.catalog_attribute_min_baseline and base > 0)
            rec[coverage_column(attr)] = today / base if judged else None
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=["ds", "items_run_day", "category_coverage", "price_coverage"]
                                      + [c for a in quality_cfg.catalog_attributes
                                         for c in (f"coverage__{a}", coverage_column(a))])
    for c in frame.columns:
        if c != "ds":
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return frame
