"""Splitting checked rows into good and quarantined rows, written to a staging folder, with per-day metrics."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import DataFrame, SparkSession, functions as F, types as T

from quality import batch, rules
from schemas import load


def quarantine_schema() -> T.StructType:
    """The contract `quarantine` schema plus `dt` (the partition column)."""
    return T.StructType(list(load("quarantine").spark().fields) + [T.StructField(rules.DT, T.StringType())])


def split_rows(spark: SparkSession, dataset: str, *, checked: DataFrame | None, stage: str,
               unreadable: list[dict], timings: dict | None = None, keep_personal: bool = False,
               salt: str = "") -> dict[str, dict]:
    """Writes the good and the quarantined rows of all pending days to the staging folder; returns metrics.

    Three jobs read `checked`: one aggregation for every per-day metric (`batch.day_metrics`: counts per
    reason, device, event type, duplicates dropped, naive timestamps), then the write of the good rows and
    the write of the quarantined rows, which run at the same time (each reads the same copy; together they
    keep two cores busy). `checked` should therefore stand on a persisted copy (the validate stage persists
    the per-row reasons, `quality.rules.add_repeat_reasons` adds the rest), or the raw files are read three
    times. A row whose reasons include `duplicate_event_id` is a re-delivery of an id already seen: it is
    dropped and counted (`duplicates_dropped`), neither good nor quarantined.

    Parameters
    ----------
    checked : output of `check_<dataset>_rows` (None when no file was readable).
    stage : the staging folder; outputs go to `<stage>/<dataset>/{good,quarantine}`.
    unreadable : quarantine rows for whole unreadable files (`raw.unreadable_quarantine_rows`).
    timings : when given, receives the seconds of each step.
    keep_personal, salt : see `quality.rules.to_quarantine`.
    """
    base = f"{stage}/{dataset}"
    timings = {} if timings is None else timings
    started = time.time()

    def lap(name: str) -> None:
        nonlocal started
        timings[f"{dataset}_{name}"] = round(time.time() - started, 2)
        started = time.time()

    unreadable_rows = spark.createDataFrame(unreadable, schema=quarantine_schema()) if unreadable else None
    if checked is None:
        if unreadable_rows is not None:
            unreadable_rows.write.mode("overwrite").partitionBy(rules.DT).parquet(f"{base}/quarantine")
        return {}
    is_dup = F.array_contains(F.col(rules.REASONS), rules.DUPLICATE_EVENT_ID)
    metrics = batch.day_metrics(checked, dataset, dropped=is_dup)  # the first job: materialises the persisted copy
    lap("checks")
    good = checked.where(F.size(rules.REASONS) == 0).select(*load(dataset).names, rules.DT)
    quarantine = (rules.to_quarantine(checked.where(~is_dup), dataset, keep_personal=keep_personal, salt=salt)
                  .select(*load("quarantine").names, rules.DT))
    if unreadable_rows is not None:
        quarantine = quarantine.unionByName(unreadable_rows)
    writes = [(good, f"{base}/good"), (quarantine, f"{base}/quarantine")]
    with ThreadPoolExecutor(max_workers=len(writes)) as pool:
        done = [pool.submit(frame.write.mode("overwrite").partitionBy(rules.DT).parquet, path) for frame, path in writes]
        for future in done:
            future.result()
    lap("writes")
    return metrics
