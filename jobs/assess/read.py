"""The raw inputs as they are, read with the validate stage's reader (`quality.raw`), for the assessment.

Both formats the contract allows (Parquet, JSON Lines) and producers' habits (optional columns left out,
numbers sent as text, zone-less timestamps) are handled by `quality.raw.read_normalized`, exactly as validation
reads them; nothing is quarantined or written here. Rows that cannot be used at all (a JSON line that did not
parse, no event type) are counted and left out.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, functions as F

from jobs.storage import io
from jobs.storage.layout import Layout
from quality import raw, rules

log = logging.getLogger(__name__)

EVENT_COLUMNS = ("event_id", "event_type", "anonymous_id", "user_id", "session_id", "device_type", "item_id", "order_id",
                 "price")
DAY = rules.DT  # the day, `YYYY-MM-DD`: an event's from its event_time (UTC), a catalog's from its partition


@dataclass
class RawInputs:
    """The events of every raw day up to the assessed date and the catalog snapshots read for the trend."""

    events: DataFrame | None
    catalogs: DataFrame | None
    event_days: list[str]
    catalog_days: list[str]  # the snapshots read (weekly, counted back from the latest)
    files: dict[str, int]
    unreadable_files: list[str]


def raw_days(layout: Layout, dataset: str, until: str | None) -> list[str]:
    """The `dt=` days of `raw/<dataset>/` up to `until` (all when None)."""
    return [d for d in io.partition_dates(layout.raw(dataset)) if until is None or d <= until]


def _read(spark: SparkSession, layout: Layout, dataset: str, days: list[str]):
    files = [f for d in days for f in raw.list_raw_files(layout.raw(dataset, d), dataset, d)]
    inspected = raw.inspect_files(files)
    if raw.needs_nanos_as_long(inspected):
        spark.conf.set(raw.NANOS_AS_LONG, "true")
    unreadable = [i.error for i in inspected if i.error]
    return raw.read_normalized(spark, inspected, dataset), len(files), unreadable


def weekly_snapshots(days: list[str], every: int) -> list[str]:
    """Every `every`-th snapshot day counted back from the latest (the latest always), oldest first."""
    return sorted(days[::-1][::every]) if every > 0 else list(days)


def read_raw_inputs(spark: SparkSession, data_root: str, until: str | None, *,
                    catalog_every_days: int) -> RawInputs:
    """Reads the raw events (all days up to `until`) and every `catalog_every_days`-th catalog snapshot.

    Returns events with `EVENT_COLUMNS` plus `DAY`, and catalogs with their contract columns plus `DAY`.
    """
    layout = Layout(data_root)
    event_days = raw_days(layout, "events", until)
    all_catalog_days = raw_days(layout, "catalog", until)
    catalog_days = weekly_snapshots(all_catalog_days, catalog_every_days)
    events, n_event_files, bad_events = _read(spark, layout, "events", event_days)
    catalogs, n_catalog_files, bad_catalogs = _read(spark, layout, "catalog", catalog_days)
    if events is not None:
        # the event's own day, not its partition's: per-row file paths would cost a third of the scan
        day = F.date_format(F.col("event_time"), "yyyy-MM-dd")
        usable = ~F.col(rules.MALFORMED) & F.col("event_type").isNotNull() & F.col("event_time").isNotNull()
        events = events.where(usable).select(*EVENT_COLUMNS, day.alias(DAY))
        if until is not None:
            events = events.where(F.col(DAY) <= until)
    if catalogs is not None:
        catalogs = catalogs.where(~F.col(rules.MALFORMED) & F.col("item_id").isNotNull())
    log.info("assess: %d event days (%d files), %d of %d catalog snapshots", len(event_days), n_event_files,
             len(catalog_days), len(all_catalog_days))
    return RawInputs(events=events, catalogs=catalogs, event_days=event_days, catalog_days=catalog_days,
                     files={"events": n_event_files, "catalog": n_catalog_files},
                     unreadable_files=bad_events + bad_catalogs)
