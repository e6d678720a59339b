"""Stage 8 of 9, rank: candidates -> ranked lists, for each person and for each segment.

Segment lists rank the window's most engaged-with available items per segment (`global`, `country=DE`,
`device_type=ios`, `country=DE/device_type=ios`, ...); a segment needs `segments.min_events` events.
A person's candidates are their MF candidates plus their segment's popular items (so a person with a thin
history or no embedding still gets a full list); pairs `jobs.exclusions` rules out (returned, bought within the
lookback) are dropped from both. Each candidate is scored

    relevance_weight * mf_relevance + popularity_weight * popularity + margin_weight * margin_rate

where mf_relevance is the MF score min-max scaled within the person's candidates (0 for popular fill)
and popularity is log-scaled to 0..1. Diversity: beyond `max_per_category` items of one leaf category an
item is demoted below every item that is not, never dropped, so lists stay full.
"""
from __future__ import annotations

import time

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.coldstart import blend_profile_candidates, latest_profiles, persons_with_context, with_profile_dimensions
from jobs.config import RecsConfig
from jobs.coverage import cap_exposure, cap_figures, pool_length
from jobs.exclusions import excluded_pairs
from jobs.experiments import arm_column, outside_arm, serves_popularity, serves_previous
from jobs.segments import EVENT_DIMENSIONS, GLOBAL, key_column, segment_keys
from jobs.storage.datasets import Datasets
from jobs.storage.layout import window
from quality.activity import without_ids
from schemas import load
from schemas.vocabulary import leaf_category_column

DEMOTION = 10.0  # larger than any score spread, so demoted items sort after all others


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


def override_rank(cfg: RecsConfig, overrides: tuple[str, ...]):
    """The rank settings of an `override` arm: the config's with the arm's `rank.<key>=<value>` strings applied
    (even over keys the user pinned: the arm exists to differ from them)."""
    import yaml

    settings = {k.strip(): yaml.safe_load(v.strip()) for k, v in (o.split("=", 1) for o in overrides)}
    return cfg.replace(pinned=()).with_settings(settings).rank


def arm_person_lists(candidates: DataFrame, persons: DataFrame, segment_items: DataFrame, bought: DataFrame,
                     features: DataFrame, cfg: RecsConfig, *, previous_candidates: DataFrame | None = None) -> DataFrame:
    """(person_id, rank, item_id, score, source, variant): each person's list computed for their A/B arm only.

    `model`: the night's candidates ranked with `cfg.rank`; `override`: the same candidates ranked with the arm's
    overrides; `popularity`: no model candidates, only the popular fill (what a fallback night publishes: their
    segment's and the global popular items minus what they bought); `previous`: the last published model's
    candidates (`previous_candidates`), ranked with `cfg.rank`."""
    exp, dims = cfg.experiment, tuple(cfg.segments.dimensions)
    with_arm = persons.withColumn("variant", arm_column(exp, F.col("person_id")))
    out = None
    for arm in exp.arms:
        mine = with_arm.where(F.col("variant") == arm.name).drop("variant") if len(exp.arms) > 1 else persons
        r = override_rank(cfg, arm.overrides) if arm.serves == "override" else cfg.rank
        pool = {"model": candidates, "override": candidates, "previous": previous_candidates,
                "popularity": candidates.where(F.lit(False))}[arm.serves]  # popularity: the popular fill alone
        if pool is None:
            raise ValueError(f"arm {arm.name!r} serves the previous model, but no previous candidates were given")
        lists = rank_person_lists(
            pool.join(mine.select("person_id"), "person_id", "left_semi"), mine, segment_items, bought, features,
            dimensions=dims, top_n=cfg.top_n, relevance_weight=r.relevance_weight,
            popularity_weight=r.popularity_weight, margin_weight=r.margin_weight, max_per_category=r.max_per_category)
        lists = lists.withColumn("variant", F.lit(arm.name))
        out = lists if out is None else out.unionByName(lists)
    return out


FALLBACK_EXTRA_MAX = 100  # how far past top_n popular lists reach on a fallback night, for heavy buyers


def _fill_length(excluded: DataFrame, top_n: int, fallback: bool) -> int:
    """How many popular items each segment list holds. With the model, 2 x top_n (its candidates fill the
    rest); on a fallback night popular items are all there is, so also as many as anyone has excluded (capped)."""
    if not fallback:
        return 2 * top_n
    most_bought = (excluded.groupBy("person_id").count()
                   .agg(F.max("count")).first()[0]) or 0
    return max(2 * top_n, top_n + min(int(most_bought), FALLBACK_EXTRA_MAX))


def run(spark: SparkSession, cfg: RecsConfig, run_date: str) -> dict:
    started = time.time()
    data = Datasets(cfg.data_root)
    fallback = data.gate_fallback(run_date)
    catalog = data.validated_catalog.read_spark(spark, run_date)
    available = catalog.where(F.col("is_available")).select("item_id")
    interactions = data.interactions.read_spark(spark, run_date)
    bought = excluded_pairs(data.purchases.read_spark(spark, run_date), run_date=run_date,
                            bought_lookback_days=cfg.filters.bought_lookback_days,
                            exclude_returned=cfg.filters.exclude_returned).select("person_id", "item_id")
    dims = tuple(cfg.segments.dimensions)
    window_days = (fallback or {}).get("window_days") or cfg.window_days
    events = data.window_events(spark, run_date, min(window_days, cfg.window_days),
                                columns=["event_type", "item_id", "user_id", "anonymous_id",
                                         *[d for d in dims if d in EVENT_DIMENSIONS]])
    events = without_ids(events, data.flagged_ids.read_spark(spark, run_date))
    profiles = latest_profiles(data.profiles_until(spark, run_date))  # profile dimensions (jobs.coldstart)
    events = with_profile_dimensions(events, profiles, dims)
    segment_items = segment_popularity(events, available, dimensions=dims,
                                       event_weights=cfg.event_weights.as_dict(),
                                       min_events=cfg.segments.min_events,
                                       # a popularity arm's lists are popular items alone, as on a fallback night
                                       length=_fill_length(bought, cfg.top_n,
                                                           fallback is not None or serves_popularity(cfg.experiment)),
                                       max_weight_per_person_item=cfg.activity.max_weight_per_person_item)
    data.segment_lists.write_spark(segment_items.coalesce(1), run_date)
    segment_items = data.segment_lists.read_spark(spark, run_date).cache()
    persons = persons_with_context(data.persons.read_spark(spark, run_date), profiles,
                                   data.identity_map.read_spark(spark, run_date), dims)
    if fallback and not fallback["per_segment"]:  # the global baseline: everyone gets the `global` list
        persons = persons.select("person_id", *[F.lit(None).cast("string").alias(d) for d in dims])
    candidates = data.candidates.read_spark(spark, run_date)
    previous = data.previous_candidates.read_spark(spark, run_date) if serves_previous(cfg.experiment) else None
    if not fallback:  # thin histories get their profile's segment list blended in
        candidates = blend_profile_candidates(
            candidates, persons, assign_segments(persons, segment_items, dimensions=dims), segment_items,
            thin_history_events=cfg.coldstart.thin_history_events, profile_weight=cfg.coldstart.profile_weight,
            length=2 * cfg.top_n)
    cov = cfg.coverage  # ranked past top_n, then no item in more than max_item_share of the lists
    pooled = cfg.replace(top_n=pool_length(cfg.top_n, cov.max_item_share, cov.pool_extra))
    person_lists, coverage = cap_exposure(
        arm_person_lists(candidates, persons, segment_items, bought, item_features(catalog, interactions),
                         pooled, previous_candidates=previous),
        persons=persons.count(), top_n=cfg.top_n, max_item_share=cov.max_item_share, seed=cfg.seed)
    segment_lists = segment_items.where(F.col("pop_rank") <= cfg.top_n).select(
        F.col("segment_key").alias("subject_id"), F.col("pop_rank").cast("int").alias("rank"), "item_id",
        F.col("pop_score").cast("double").alias("score"), F.lit("popular").alias("source"))
    version = (f"popularity-{run_date}-{cfg.fingerprint()}" if fallback
               else data.models.meta(run_date)["model_version"])
    lists = (person_lists.select(F.lit("person").alias("subject_type"), F.col("person_id").alias("subject_id"),
                                 "rank", "item_id", "score", "source", "variant")
             .unionByName(segment_lists.withColumn("subject_type", F.lit("segment"))
                          .withColumn("variant", F.lit(outside_arm(cfg.experiment))))
             .withColumn("model_version", F.lit(version))
             .withColumn("run_id", F.lit(f"nightly-{run_date}-{cfg.fingerprint()}")))
    out = data.staged_lists.write_spark(lists.select(*load("recommendations").names)
                                        .repartition(cfg.spark.shuffle_partitions, "subject_id")
                                        .sortWithinPartitions("subject_type", "subject_id", "rank"), run_date)
    written = data.staged_lists.read_spark(spark, run_date)
    stats = written.groupBy("subject_type").agg(F.countDistinct("subject_id").alias("lists"),
                                                F.count("*").alias("rows")).collect()
    segment_items.unpersist()
    coverage = cap_figures(written.where(F.col("subject_type") == "person")
                           .select(F.col("subject_id").alias("person_id"), "item_id"), coverage)
    return {"path": out, "model_version": version, "fallback": fallback, "coverage_cap": coverage,
            "window_days": len(window(run_date, cfg.window_days)),
            **{f"{r['subject_type']}_lists": r["lists"] for r in stats},
            **{f"{r['subject_type']}_rows": r["rows"] for r in stats}, "seconds": round(time.time() - started, 1)}
