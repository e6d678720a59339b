"""Stage 8 of 9, rank: candidates -> ranked lists, for each person and for each segment.

Segment lists rank the window's most engaged-with available items per segment (`global`, `country=DE`,
`device_type=ios`, `country=DE/device_type=ios`, ...); a segment needs `segments.min_events` events.
A person's candidates are their MF candidates plus their segment's popular items (so a person with a thin
history or no embedding still gets a full list); pairs `jobs.exclusions` rules out (returned, bought within the
lookback) are dropped from both. Each candidate is scored by the blend of `jobs.ranking.blend` (relevance,
popularity, margin; a demotion past `max_per_category` items of one leaf category). The list-building functions
live in `jobs.ranking`, which the gate uses to rebuild the same lists on its holdout; this module reads, calls
them per A/B arm and writes.
"""
from __future__ import annotations

import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.coldstart import blend_profile_candidates, latest_profiles, persons_with_context, with_profile_dimensions
from jobs.config import RecsConfig
from jobs.coverage import cap_exposure, cap_figures, pool_length
from jobs.exclusions import excluded_pairs
from jobs.ranking.nightly import learned_candidates
from jobs.experiments import arm_column, outside_arm, serves_popularity, serves_previous
from jobs.ranking import ranker_for
from jobs.ranking.lists import ListInputs, assign_segments, fill_length, item_features, segment_popularity
from jobs.segments import EVENT_DIMENSIONS
from jobs.storage.datasets import Datasets
from jobs.storage.layout import window
from quality.activity import without_ids
from schemas import load


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
    rank_lists = ranker_for(cfg)
    with_arm = persons.withColumn("variant", arm_column(exp, F.col("person_id")))
    out = None
    for arm in exp.arms:
        mine = with_arm.where(F.col("variant") == arm.name).drop("variant") if len(exp.arms) > 1 else persons
        r = override_rank(cfg, arm.overrides) if arm.serves == "override" else cfg.rank
        pool = {"model": candidates, "override": candidates, "previous": previous_candidates,
                "popularity": candidates.where(F.lit(False))}[arm.serves]  # popularity: the popular fill alone
        if pool is None:
            raise ValueError(f"arm {arm.name!r} serves the previous model, but no previous candidates were given")
        lists = rank_lists(ListInputs(pool.join(mine.select("person_id"), "person_id", "left_semi"), mine,
                                      segment_items, bought, features, dimensions=dims, top_n=cfg.top_n), r)
        lists = lists.withColumn("variant", F.lit(arm.name))
        out = lists if out is None else out.unionByName(lists)
    return out


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
                                       length=fill_length(bought, cfg.top_n,
                                                           fallback is not None or serves_popularity(cfg.experiment)),
                                       max_weight_per_person_item=cfg.activity.max_weight_per_person_item)
    data.segment_lists.write_spark(segment_items.coalesce(1), run_date)
    segment_items = data.segment_lists.read_spark(spark, run_date).cache()
    persons = persons_with_context(data.persons.read_spark(spark, run_date), profiles,
                                   data.identity_map.read_spark(spark, run_date), dims)
    if fallback and not fallback["per_segment"]:  # the global baseline: everyone gets the `global` list
        persons = persons.select("person_id", *[F.lit(None).cast("string").alias(d) for d in dims])
    candidates = data.candidates.read_spark(spark, run_date)
    ranker = None
    if not fallback:  # the learned ranker re-scores the candidates the blend below then orders (jobs/ranking/)
        candidates, ranker = learned_candidates(spark, cfg, run_date, candidates, interactions, catalog, persons)
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
            "ranker": ranker and {k: ranker[k] for k in ("serves", "reason", "path")},
            "window_days": len(window(run_date, cfg.window_days)),
            **{f"{r['subject_type']}_lists": r["lists"] for r in stats},
            **{f"{r['subject_type']}_rows": r["rows"] for r in stats}, "seconds": round(time.time() - started, 1)}
