"""The long-tail control: no item may take more than `coverage.max_item_share` of the person lists.

The rank stage ranks `top_n + coverage.pool_extra` items per person; then every item's appearances are ordered
by how high it ranks in each list (ties: a hash of the person, so the choice is seeded and spread evenly), and
only the first `floor(max_item_share x person lists)` of them keep it. The others drop it and the next item of
the person's pool moves up. When a pool runs out of uncapped items the list is filled with its capped ones
anyway, placed last: a list is never short, so the cap holds wherever the pools leave a choice (the rank
stage's summary counts the lists where it could not). Why a cap rather than debiased scores: it changes
nothing for the many lists whose items are not over-exposed, it is one number a merchandiser can read, and
it bounds the exposure Gini's worst case directly.
"""
from __future__ import annotations

import math

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def pool_length(top_n: int, max_item_share: float, pool_extra: int) -> int:
    """How many items per person the rank stage ranks before the cap (just `top_n` with the cap off)."""
    return top_n + pool_extra if max_item_share > 0 else top_n


def cap_exposure(lists: DataFrame, *, persons: int, top_n: int, max_item_share: float, seed: int = 0
                 ) -> tuple[DataFrame, dict]:
    """(lists cut to `top_n` per person with the cap applied, figures). `lists` holds person_id, rank (1 =
    best), item_id, score and any other columns, up to `pool_length` rows per person, for `persons` persons.
    Spark windows over items and persons: nothing per person comes to the driver."""
    if max_item_share <= 0 or persons == 0:
        return lists.where(F.col("rank") <= top_n), {"max_item_share": max_item_share, "applied": False}
    cap = max(1, math.floor(max_item_share * persons))
    by_item = Window.partitionBy("item_id").orderBy("rank", F.xxhash64("person_id", F.lit(seed)))
    by_person = Window.partitionBy("person_id").orderBy("over_cap", "rank")
    running = by_person.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    capped = (lists.withColumn("over_cap", F.row_number().over(by_item) > cap)
              .withColumn("new_rank", F.row_number().over(by_person))
              .where(F.col("new_rank") <= top_n)
              # a capped item filling a short list sits last: its score may not exceed those above it
              .withColumn("score", F.min("score").over(running)))
    columns = [c for c in lists.columns if c != "rank"]
    out = capped.select(*columns, F.col("new_rank").cast("int").alias("rank"))
    return out, {"max_item_share": max_item_share, "applied": True, "persons": persons,
                 "max_lists_per_item": cap}


def cap_figures(person_lists: DataFrame, figures: dict) -> dict:
    """`figures` plus what the written lists show: items over the cap and the list entries beyond it (left
    only where a pool had too few other items), read back from the written rows."""
    if not figures.get("applied"):
        return figures
    per_item = person_lists.groupBy("item_id").agg(F.countDistinct("person_id").alias("lists"))
    row = per_item.agg(F.max("lists").alias("most"),
                       F.sum(F.when(F.col("lists") > figures["max_lists_per_item"], 1).otherwise(0)).alias("items"),
                       F.sum(F.greatest(F.col("lists") - F.lit(figures["max_lists_per_item"]), F.lit(0)))
                       .alias("entries")).first()
    return {**figures, "most_lists_per_item": int(row["most"] or 0), "items_over_cap": int(row["items"] or 0),
            "entries_over_cap": int(row["entries"] or 0)}
