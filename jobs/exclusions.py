"""The list filters, one rule for every stage that applies or checks them: what never reaches a person's list.

- `returned`: the person returned the item at least once in the window (`filters.exclude_returned`).
- `bought_recently`: the person's last purchase of the item is within the last N days, D included
  (`filters.bought_lookback_days`; 0 = off, for shops where people buy consumables again).
- unavailable: not available in the run day's catalog: never indexed, so never retrieved (always).

A pair that is both returned and bought recently counts as `returned`. The interactions stage writes the
`purchases` dataset (`purchase_history`); retrieve drops these pairs from its search results (over-fetching so
lists stay full), rank drops them from the popular fill, and publish checks that no list holds one.
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

RETURNED, BOUGHT_RECENTLY = "returned", "bought_recently"
REASONS = (RETURNED, BOUGHT_RECENTLY)  # the index of a reason is its code in jobs.models.ann.search_top_n


def purchase_history(events: DataFrame, *, run_date: str) -> DataFrame:
    """(person_id, item_id, last_purchase_time, returned) for every pair with a purchase or a return up to the end
    of `run_date`, from events that carry a `person_id`. Pure: no I/O."""
    day_end = F.to_timestamp(F.lit(f"{run_date} 23:59:59")) + F.expr("INTERVAL 1 SECOND")
    return (events.where(F.col("person_id").isNotNull() & F.col("item_id").isNotNull()
                         & F.col("event_type").isin("purchase", "return") & (F.col("event_time") < day_end))
            .groupBy("person_id", "item_id")
            .agg(F.max(F.when(F.col("event_type") == "purchase", F.col("event_time"))).alias("last_purchase_time"),
                 F.max(F.col("event_type") == "return").alias("returned")))


def lookback_start(run_date: str, bought_lookback_days: int) -> str:
    """First day (ISO) whose purchases still count as recent: D - (N - 1), so N = 1 means D alone."""
    return (dt.date.fromisoformat(run_date) - dt.timedelta(days=bought_lookback_days - 1)).isoformat()


def excluded_pairs(purchases: DataFrame, *, run_date: str, bought_lookback_days: int,
                   exclude_returned: bool) -> DataFrame:
    """(person_id, item_id, reason): the pairs no list may hold, each with its first reason of `REASONS`."""
    returned = F.coalesce(F.col("returned"), F.lit(False)) & F.lit(bool(exclude_returned))
    if bought_lookback_days > 0:
        since = F.to_timestamp(F.lit(f"{lookback_start(run_date, bought_lookback_days)} 00:00:00"))
        recent = F.coalesce(F.col("last_purchase_time") >= since, F.lit(False))
    else:
        recent = F.lit(False)
    reason = F.when(returned, F.lit(RETURNED)).when(recent, F.lit(BOUGHT_RECENTLY))
    return (purchases.select("person_id", "item_id", reason.alias("reason"))
            .where(F.col("reason").isNotNull()))
