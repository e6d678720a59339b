"""The fixed blend ranker: candidates plus the popular fill -> one ranked list per person (see `rank_person_lists`).

    relevance_weight * mf_relevance + popularity_weight * popularity + margin_weight * margin_rate

where mf_relevance is the MF score min-max scaled within the person's candidates (0 for popular fill)
and popularity is log-scaled to 0..1. Diversity: beyond `max_per_category` items of one leaf category an
item is demoted below every item that is not, never dropped, so lists stay full.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.config import RankConfig
from jobs.ranking.lists import ListInputs, assign_segments
from jobs.segments import GLOBAL

DEMOTION = 10.0  # larger than any score spread, so demoted items sort after all others


def rank_person_lists(candidates: DataFrame, persons: DataFrame, segment_items: DataFrame, bought: DataFrame,
                      item_features: DataFrame, *, dimensions: tuple[str, ...], top_n: int, relevance_weight: float,
                      popularity_weight: float, margin_weight: float, max_per_category: int) -> DataFrame:
    """(person_id, rank, item_id, score, source): exactly `top_n` distinct items per person when the segment
    lists are long enough. Pure: no I/O.

    item_features: item_id, popularity (0..1), margin_rate (nullable), category (leaf).
    """
    person_seg = assign_segments(persons, segment_items, dimensions=dimensions)
    # the person's segment list, and the `global` one behind it: a small segment may not fill a list alone
    with_global = person_seg.select("person_id", F.lit(GLOBAL).alias("segment_key")).unionByName(person_seg)
    popular = (with_global.join(segment_items, "segment_key")
               .select("person_id", "item_id", F.lit(0.0).alias("relevance"), F.lit("popular").alias("source")))
    by_person = Window.partitionBy("person_id")
    lo, hi = F.min("score").over(by_person), F.max("score").over(by_person)
    mf = candidates.select("person_id", "item_id",
                           F.when(hi > lo, (F.col("score") - lo) / (hi - lo)).otherwise(F.lit(1.0)).alias("relevance"),
                           F.col("source"))
    pool = (mf.unionByName(popular)
            .groupBy("person_id", "item_id")
            .agg(F.max("relevance").alias("relevance"),
                 F.min(F.when(F.col("source") != "popular", F.col("source"))).alias("mf_source"))
            .withColumn("source", F.coalesce("mf_source", F.lit("popular"))).drop("mf_source")
            .join(bought.select("person_id", "item_id"), ["person_id", "item_id"], "left_anti")
            .join(F.broadcast(item_features), "item_id"))
    score = (F.lit(relevance_weight) * F.col("relevance") + F.lit(popularity_weight) * F.col("popularity")
             + F.lit(margin_weight) * F.coalesce(F.col("margin_rate"), F.lit(0.0)))
    in_category = Window.partitionBy("person_id", "category").orderBy(F.desc("s"), F.asc("item_id"))
    in_person = Window.partitionBy("person_id").orderBy(F.desc("score"), F.asc("item_id"))
    return (pool.withColumn("s", score)
            .withColumn("score", F.col("s") - F.when(F.row_number().over(in_category) > max_per_category,
                                                     F.lit(DEMOTION)).otherwise(F.lit(0.0)))
            .withColumn("rank", F.row_number().over(in_person)).where(F.col("rank") <= top_n)
            .select("person_id", F.col("rank").cast("int"), "item_id", "score", "source"))


def blend_lists(inputs: ListInputs, rank: RankConfig) -> DataFrame:
    """The ranking step with the blend: `rank_person_lists` over `inputs` with the weights of `rank`."""
    return rank_person_lists(inputs.candidates, inputs.persons, inputs.segment_items, inputs.excluded,
                             inputs.item_features, dimensions=inputs.dimensions, top_n=inputs.top_n,
                             relevance_weight=rank.relevance_weight, popularity_weight=rank.popularity_weight,
                             margin_weight=rank.margin_weight, max_per_category=rank.max_per_category)
