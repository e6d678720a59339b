"""Splitting checked rows into good and quarantined rows, written to a staging folder, with per-day metrics."""
from __future__ import annotations

import posixpath
import time

import fsspec
from pyspark.sql import DataFrame, Observation, SparkSession, functions as F, types as T

from quality import batch, rules
from schemas import load

METRIC_COLUMNS = {"events": ("device_type", "event_type", "anonymous_id", "user_id", "item_id"),
                  "catalog": batch.CATALOG_COVERAGE_FIELDS, "profiles": ()}
ROW_KEY = [rules.SOURCE_FILE, rules.SOURCE_POS]


def has_data(path: str) -> bool:
    """True when the folder holds at least one data file (not only hidden/underscore files)."""
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        return False
    return any(not posixpath.basename(f).startswith(("_", ".")) for f in fs.find(p))


def quarantine_schema() -> T.StructType:
    """The contract `quarantine` schema plus `dt` (the partition column)."""
    return T.StructType(list(load("quarantine").spark().fields) + [T.StructField(rules.DT, T.StringType())])


def split_rows(spark: SparkSession, dataset: str, *, checked: DataFrame | None, rows: DataFrame | None,
               stage: str, unreadable: list[dict], timings: dict | None = None, days: list[str] = (),
               keep_personal: bool = False, salt: str = "") -> dict[str, dict]:
    """Writes the good and the quarantined rows of all pending days to the staging folder; returns metrics.

    Two passes over the raw rows, no cache: pass 1 runs every check and writes only the bad rows (a
    few %) with their row keys (source file, position); pass 2 re-reads the rows, drops those keys with a
    broadcast anti-join and writes the good rows without evaluating a check again. The per-day metrics
    then come from reading a few columns of both outputs.

    Parameters
    ----------
    checked : output of `check_<dataset>_rows` over `rows` (None when no file was readable).
    rows : the normalized raw rows (`quality.raw.read_normalized`).
    stage : the staging folder; outputs go to `<stage>/<dataset>/{bad,good,quarantine}`.
    unreadable : quarantine rows for whole unreadable files (`raw.unreadable_quarantine_rows`).
    timings : when given, receives the seconds of each pass.
    days : the pending days: timestamps without zone are counted per day (`naive_timestamps`) as pass 1 runs.
    keep_personal, salt : see `quality.rules.to_quarantine`.
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
        quarantine_parts.append(spark.createDataFrame(unreadable, schema=quarantine_schema()))
    if checked is None:
        if quarantine_parts:
            quarantine_parts[0].write.mode("overwrite").partitionBy(rules.DT).parquet(f"{base}/quarantine")
        return {}
    keep = METRIC_COLUMNS[dataset] + tuple(ROW_KEY)
    naive = Observation(f"naive_{dataset}")
    counted = checked.observe(naive, F.lit(0).alias("_"), *[
        F.count_if((F.col(rules.DT) == d) & F.col(rules.NAIVE_TIME)).alias(d) for d in days
        if rules.NAIVE_TIME in checked.columns])
    (rules.to_quarantine(counted, dataset, keep=keep, keep_personal=keep_personal, salt=salt)
     .write.mode("overwrite").parquet(f"{base}/bad"))  # pass 1
    lap("checks")
    everything_bad = spark.read.parquet(f"{base}/bad")
    is_dup = F.array_contains(F.col(rules.REASONS), rules.DUPLICATE_EVENT_ID)
    bad = everything_bad.where(~is_dup)
    keys = everything_bad.select(*ROW_KEY).distinct()
    good = rows.join(F.broadcast(keys), on=ROW_KEY, how="left_anti").select(*load(dataset).names, rules.DT)
    good.write.mode("overwrite").partitionBy(rules.DT).parquet(f"{base}/good")  # pass 2
    lap("good")
    quarantine_cols = load("quarantine").names + [rules.DT]
    quarantine = bad.select(*quarantine_cols)
    for extra in quarantine_parts:
        quarantine = quarantine.unionByName(extra)
    quarantine.write.mode("overwrite").partitionBy(rules.DT).parquet(f"{base}/quarantine")
    lap("quarantine")
    good_metrics = {}
    if has_data(f"{base}/good"):  # no file at all when every row was quarantined
        written = spark.read.parquet(f"{base}/good")  # dt comes back as a date (partition discovery)
        good_part = written.select(F.col(rules.DT).cast("string").alias(rules.DT), *METRIC_COLUMNS[dataset])
        good_metrics = batch.day_metrics(good_part, dataset, all_good=True)
    merged = batch.merge_metrics(good_metrics, batch.day_metrics(bad, dataset), dataset)
    dups = {str(r[rules.DT]): r["count"] for r in everything_bad.where(is_dup).groupBy(rules.DT).count().collect()}
    observed = naive.get
    for ds in set(dups) | {d for d, n in observed.items() if n and d != "_"}:
        merged.setdefault(ds, batch.empty_metrics(dataset))
    for ds, m in merged.items():
        m["duplicates_dropped"] = int(dups.get(ds, 0))
        m["naive_timestamps"] = int(observed.get(ds) or 0)
    lap("metrics")
    return merged
