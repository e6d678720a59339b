"""The pieces a night's lists are built from, besides the ranking itself: popular items per segment (the fill),
each person's segment, item features, and how long the fill lists are. Pure functions over Spark DataFrames,
shared by the rank stage (the night's lists) and the gate (the same lists rebuilt on its holdout).
"""
from __future__ import annotations

import dataclasses

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.segments import GLOBAL, key_column, segment_keys
from schemas.vocabulary import leaf_category_column


def _all_present(dims: list[str]):
    cond = F.lit(True)
    for d in dims:
        cond = cond & F.col(d).isNotNull()
    return cond


def segment_popularity(events: DataFrame, available_items: DataFrame, *, dimensions: tuple[str, ...],
                       event_weights: dict[str, float], min_events: int, length: int,
                       max_weight_per_person_item: float) -> DataFrame:
    """(segment_key, item_id, pop_score, pop_rank) for the top `length` available items of each segment.

    What one shopper (their user_id, else their anonymous_id) adds to an item is capped at
    `max_weight_per_person_item`, so one cookie sending thousands of events cannot lift an item up a list.
    Aggregates once to (dimensions..., item) and rolls that small table up to every segment key.
    """
    weight = F.lit(0.0)
    for t, w in sorted(event_weights.items()):
        if w > 0:
            weight = F.when(F.col("event_type") == t, F.lit(float(w))).otherwise(weight)
    shopper = F.coalesce(F.concat(F.lit("u:"), "user_id"), F.concat(F.lit("a:"), "anonymous_id"))
    per_shopper = (events.where(F.col("item_id").isNotNull())
                   .groupBy(shopper.alias("shopper"), *dimensions, "item_id")
                   .agg(F.least(F.sum(weight), F.lit(float(max_weight_per_person_item))).alias("w"),
                        F.count("*").alias("n")))
    base = (per_shopper.groupBy(*dimensions, "item_id")
            .agg(F.sum("w").alias("w"), F.sum("n").alias("n")).cache())
    per_key = None
    for dims in segment_keys(dimensions):
        part = (base.where(_all_present(dims)).withColumn("segment_key", key_column(dims))
                .groupBy("segment_key", "item_id").agg(F.sum("w").alias("pop_score"), F.sum("n").alias("n")))
        per_key = part if per_key is None else per_key.unionByName(part)
    seg_events = per_key.groupBy("segment_key").agg(F.sum("n").alias("seg_events"))
    big_enough = seg_events.where((F.col("seg_events") >= min_events) | (F.col("segment_key") == GLOBAL))
    order = Window.partitionBy("segment_key").orderBy(F.desc("pop_score"), F.asc("item_id"))
    return (per_key.join(F.broadcast(big_enough.select("segment_key")), "segment_key")
            .join(F.broadcast(available_items.select("item_id")), "item_id")
            .where(F.col("pop_score") > 0)
            .withColumn("pop_rank", F.row_number().over(order)).where(F.col("pop_rank") <= length)
            .select("segment_key", "item_id", "pop_score", "pop_rank"))


def assign_segments(persons: DataFrame, segment_items: DataFrame, *, dimensions: tuple[str, ...]) -> DataFrame:
    """(person_id, segment_key): the most specific segment with a list that matches the person's context."""
    keys = segment_items.select("segment_key").distinct()
    options = [F.struct(F.lit(i).alias("priority"), key_column(dims).alias("segment_key"))
               for i, dims in enumerate(segment_keys(dimensions))]
    exploded = persons.select("person_id", F.explode(F.array(*options)).alias("o")).select(
        "person_id", "o.priority", "o.segment_key").where(F.col("segment_key").isNotNull())
    best = F.min(F.struct("priority", "segment_key")).alias("best")
    return (exploded.join(F.broadcast(keys), "segment_key").groupBy("person_id").agg(best)
            .select("person_id", F.col("best.segment_key").alias("segment_key")))


def item_features(catalog: DataFrame, interactions: DataFrame) -> DataFrame:
    """item_id, popularity (log-scaled 0..1 over the window), margin_rate, category (leaf of category_path)."""
    pop = interactions.groupBy("item_id").agg(F.log1p(F.sum("weight")).alias("lp"))
    top = pop.agg(F.max("lp").alias("top"))
    return (catalog.where(F.col("is_available")).select(
                "item_id", "margin_rate",
                leaf_category_column(F.col("category_path")).alias("category"))
            .join(pop, "item_id", "left").crossJoin(F.broadcast(top))
            .select("item_id", "margin_rate", "category",
                    F.coalesce(F.col("lp") / F.col("top"), F.lit(0.0)).alias("popularity")))


FALLBACK_EXTRA_MAX = 100  # how far past top_n popular lists reach on a fallback night, for heavy buyers


def fill_length(excluded: DataFrame, top_n: int, fallback: bool) -> int:
    """How many popular items each segment list holds. With the model, 2 x top_n (its candidates fill the
    rest); on a fallback night popular items are all there is, so also as many as anyone has excluded (capped)."""
    if not fallback:
        return 2 * top_n
    most_bought = (excluded.groupBy("person_id").count()
                   .agg(F.max("count")).first()[0]) or 0
    return max(2 * top_n, top_n + min(int(most_bought), FALLBACK_EXTRA_MAX))


@dataclasses.dataclass(frozen=True)
class ListInputs:
    """What the ranking step turns into person lists; the same for the rank stage and the gate's holdout.

    candidates: person_id, item_id, score, source (retrieval's, or none: a popularity night's lists)
    persons: person_id and the segment `dimensions` (who gets a list, and which segment's fill)
    segment_items: segment_key, item_id, pop_score, pop_rank (`segment_popularity`)
    excluded: person_id, item_id (`jobs.exclusions.excluded_pairs`): never in a list
    item_features: `item_features`
    """

    candidates: DataFrame
    persons: DataFrame
    segment_items: DataFrame
    excluded: DataFrame
    item_features: DataFrame
    dimensions: tuple[str, ...]
    top_n: int
