"""Ids whose activity no person could produce: bots, scrapers, load tests, a broken collector looping.

An id (a `user_id` or an `anonymous_id`) that sends more than `max_events_per_id_day` events on one day is
flagged; its events, on every day of the window, are then kept out of training and popularity so that it
cannot push an item up the lists. Kiosks and shared devices are handled by stitching (they are many people);
this check is about volume.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, functions as F

ID_TYPES = ("user_id", "anonymous_id")


def inhuman_ids(events: DataFrame, *, max_events_per_id_day: int) -> DataFrame:
    """(id_type, id, events, busiest_day) of every id over the limit on at least one day. Pure: no I/O.

    `events` needs `event_time` and the id columns.
    """
    day = F.to_date("event_time")
    parts = []
    for id_type in ID_TYPES:
        per_day = (events.where(F.col(id_type).isNotNull())
                   .groupBy(F.col(id_type).alias("id"), day.alias("day")).agg(F.count("*").alias("events")))
        parts.append(per_day.where(F.col("events") > max_events_per_id_day)
                     .groupBy("id").agg(F.sum("events").alias("events"),
                                        F.max_by("day", "events").alias("busiest_day"))
                     .select(F.lit(id_type).alias("id_type"), "id", "events", "busiest_day"))
    return parts[0].unionByName(parts[1])


def without_ids(events: DataFrame, flagged: DataFrame) -> DataFrame:
    """`events` less every event sent by a flagged id (as user_id or as anonymous_id)."""
    for id_type in ID_TYPES:
        ids = flagged.where(F.col("id_type") == id_type).select(F.col("id").alias(id_type))
        events = events.join(F.broadcast(ids), id_type, "left_anti")
    return events
