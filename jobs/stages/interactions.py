"""Stage 3 of 9, interactions: events -> decay-weighted person x item confidence.

Each item event contributes `event_weights[event_type] * 0.5 ** (age_days / half_life_days)`, where age is
counted from the end of the run's day. Weights are summed per (person, item); pairs whose sum is not
positive are dropped (a viewed-then-removed item, a purchase that was returned). `purchased` is true when
the person's purchases of the item outnumber their returns in the window (the gate's holdout uses it). What
lists leave out (bought within `filters.bought_lookback_days`, returned) comes from the `purchases` dataset this
stage also writes (`jobs.exclusions`): `purchased` alone would let an item bought and returned come back.

With the gate on it also cuts the holdout tune and gate judge on (`write_holdout`): temporal, or per person where
few persons come back (`gate.holdout`, `jobs.evaluation.person_split`).
"""
from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.segments import EVENT_DIMENSIONS
from jobs.config import RecsConfig
from jobs.decay import HALF_LIFE_GRID_DAYS
from jobs.exclusions import purchase_history
from jobs.evaluation.person_split import AUTO, PER_PERSON, choose_holdout, outside_holdout, per_person_cuts
from jobs.evaluation.splits import holdout_test_start
from jobs.identity import attribute_events, load_state_nodes
from jobs.storage.datasets import Datasets
from quality.activity import inhuman_ids, without_ids
from schemas.vocabulary import ITEM_EVENT_TYPES

log = logging.getLogger(__name__)


def build_interactions(events: DataFrame, *, run_date: str, event_weights: dict[str, float],
                       half_life_days: float, max_weight: float) -> DataFrame:
    """Decay-weighted (person_id, item_id) confidence from events that carry a `person_id`. Pure: no I/O.

    A pair's weight is capped at `max_weight`, so no one person can make one item weigh without bound.
    Returns columns person_id, item_id, weight (> 0), weights (the weight under each half-life of
    `HALF_LIFE_GRID_DAYS`, capped the same way and never below 0), purchased (bool), last_time.
    """
    weighted = {t: w for t, w in event_weights.items() if t in ITEM_EVENT_TYPES and w != 0}
    weight_of = F.lit(0.0)
    for event_type, w in sorted(weighted.items()):
        weight_of = F.when(F.col("event_type") == event_type, F.lit(float(w))).otherwise(weight_of)
    day_end = F.to_timestamp(F.lit(f"{run_date} 23:59:59"))
    age_days = (F.unix_timestamp(day_end) - F.unix_timestamp("event_time")) / 86400.0
    age = F.greatest(age_days, F.lit(0.0))

    def decay(days: float):
        return F.pow(F.lit(0.5), age / F.lit(float(days)))

    item_events = (events
                   .where(F.col("person_id").isNotNull() & F.col("item_id").isNotNull()
                          & F.col("event_type").isin(*ITEM_EVENT_TYPES))
                   .where(F.col("event_time") < day_end + F.expr("INTERVAL 1 SECOND")))
    per_pair = (item_events
                .groupBy("person_id", "item_id")
                .agg(F.sum(weight_of * decay(half_life_days)).alias("weight"),
                     *[F.sum(weight_of * decay(h)).alias(f"w{i}") for i, h in enumerate(HALF_LIFE_GRID_DAYS)],
                     F.sum(F.when(F.col("event_type") == "purchase", 1).when(F.col("event_type") == "return", -1)
                           .otherwise(0)).alias("net_purchases"),
                     F.max("event_time").alias("last_time")))
    cap = F.lit(float(max_weight))
    weights = F.array(*[F.greatest(F.least(F.col(f"w{i}"), cap), F.lit(0.0)).cast("double")
                        for i in range(len(HALF_LIFE_GRID_DAYS))])
    return (per_pair.where(F.col("weight") > 0)
            .select("person_id", "item_id",
                    F.least(F.col("weight"), cap).cast("double").alias("weight"), weights.alias("weights"),
                    (F.col("net_purchases") > 0).alias("purchased"), "last_time"))


def holdout_split(events: DataFrame, *, run_date: str, holdout_days: int, event_weights: dict[str, float],
                  half_life_days: float, max_weight: float, test_event_types: tuple[str, ...]
                  ) -> tuple[DataFrame, DataFrame]:
    """(train interactions before the cutoff, test pairs on/after it) for the model gate. Pure.

    The cutoff is the start of `holdout_test_start(D, holdout_days)`. Test pairs are items a person acted on
    (`test_event_types`) in the holdout days and had not bought before the cutoff.
    """
    import datetime as dt

    test_start = holdout_test_start(run_date, holdout_days)
    cutoff = F.to_timestamp(F.lit(f"{test_start} 00:00:00"))
    last_train_day = test_start - dt.timedelta(days=1)
    train = build_interactions(events.where(F.col("event_time") < cutoff), run_date=last_train_day.isoformat(),
                               event_weights=event_weights, half_life_days=half_life_days,
                               max_weight=max_weight)
    test = (events.where((F.col("event_time") >= cutoff) & F.col("person_id").isNotNull()
                         & F.col("item_id").isNotNull() & F.col("event_type").isin(*test_event_types))
            .select("person_id", "item_id").distinct()
            .join(train.where(F.col("purchased")).select("person_id", "item_id"), ["person_id", "item_id"],
                  "left_anti"))
    return train, test


def doublings(holdout_days: int, max_days: int) -> list[int]:
    """`holdout_days`, doubled while the double is at most `max_days`: the holdout lengths tried."""
    lengths = [holdout_days]
    while lengths[-1] * 2 <= max_days:
        lengths.append(lengths[-1] * 2)
    return lengths


def returning_persons(events: DataFrame, *, run_date: str, lengths: list[int],
                      test_event_types: tuple[str, ...]) -> dict[int, int]:
    """{days: persons who acted (`test_event_types`) in the last `days` days and had an item event before them}
    for each of `lengths`. One aggregation for every length."""
    per_person = (events.where(F.col("person_id").isNotNull() & F.col("item_id").isNotNull()
                               & F.col("event_type").isin(*ITEM_EVENT_TYPES))
                  .groupBy("person_id")
                  .agg(F.min("event_time").alias("first"),
                       F.max(F.when(F.col("event_type").isin(*test_event_types), F.col("event_time"))).alias("last")))

    def testable(days: int):
        cutoff = F.to_timestamp(F.lit(f"{holdout_test_start(run_date, days)} 00:00:00"))
        return F.sum(F.when((F.col("first") < cutoff) & (F.col("last") >= cutoff), 1).otherwise(0)).alias(f"d{days}")

    row = per_person.agg(*[testable(days) for days in lengths]).first()
    return {days: int(row[f"d{days}"] or 0) for days in lengths}


def holdout_days_for(events: DataFrame, *, run_date: str, holdout_days: int, max_holdout_days: int,
                     min_test_persons: int, test_event_types: tuple[str, ...]) -> tuple[int, dict[int, int]]:
    """The holdout length to cut: `holdout_days`, doubled (up to `max_holdout_days`) while fewer than
    `min_test_persons` persons acted (`test_event_types`) in the holdout days and had an item event before
    them. Returns (days, {days tried: such persons}). A shop where few people come back within a week
    still gets a holdout to judge and tune on (and `gate.holdout: auto` cuts a per-person one instead when
    the week has to stretch far, `jobs.evaluation.person_split`)."""
    lengths = doublings(holdout_days, max_holdout_days)
    if len(lengths) == 1:
        return holdout_days, {}
    counts = returning_persons(events, run_date=run_date, lengths=lengths, test_event_types=test_event_types)
    return temporal_length(counts, lengths, min_test_persons), counts


def temporal_length(counts: dict[int, int], lengths: list[int], min_test_persons: int) -> int:
    """The first of `lengths` with `min_test_persons` returning persons, else the longest."""
    return next((days for days in lengths if counts[days] >= min_test_persons), lengths[-1])


def per_person_split(events: DataFrame, cuts: DataFrame, held: DataFrame, *, run_date: str,
                     event_weights: dict[str, float], half_life_days: float, max_weight: float
                     ) -> tuple[DataFrame, DataFrame]:
    """(train interactions, test pairs) of a per-person holdout (`jobs.evaluation.person_split`). Pure.

    Train is every event outside the held-out part, weighted as of D as the night's model is; test is the
    held-out (person, item) pairs, none of which the person bought before (their first cart or purchase of
    the item is on or after their cut day)."""
    train = build_interactions(outside_holdout(events, cuts, held), run_date=run_date, event_weights=event_weights,
                               half_life_days=half_life_days, max_weight=max_weight)
    test = held.join(train.where(F.col("purchased")).select("person_id", "item_id"), ["person_id", "item_id"],
                     "left_anti")
    return train, test


def active_persons(events: DataFrame) -> DataFrame:
    """One row per person seen in the window: the latest known value of each event context dimension
    (`jobs.coldstart.EVENT_DIMENSIONS`: country, device_type, entry_source), first and last time."""
    def latest(c: str):
        if c not in events.columns:  # a context the events do not carry (older frames): unknown
            return F.lit(None).cast("string").alias(c)
        return F.max_by(F.col(c), F.when(F.col(c).isNotNull(), F.col("event_time"))).alias(c)

    return (events.where(F.col("person_id").isNotNull())
            .groupBy("person_id")
            .agg(*[latest(d) for d in EVENT_DIMENSIONS], F.min("event_time").alias("first_seen"),
                 F.max("event_time").alias("last_seen"), F.count("*").alias("events")))


def run(spark: SparkSession, cfg: RecsConfig, run_date: str) -> dict:

    started = time.time()
    data = Datasets(cfg.data_root)
    events = data.window_events(spark, run_date, cfg.window_days, columns=[
        "anonymous_id", "user_id", "session_id", "event_time", "event_type", "item_id", *EVENT_DIMENSIONS])
    flagged = inhuman_ids(events, max_events_per_id_day=cfg.activity.max_events_per_id_day)
    data.flagged_ids.write_spark(flagged.coalesce(1), run_date)
    flagged = data.flagged_ids.read_spark(spark, run_date).cache()
    events = without_ids(events, flagged)
    attributed = (attribute_events(events, load_state_nodes(spark, data.layout, run_date))
                  .select("person_id", "item_id", "event_type", "event_time", *EVENT_DIMENSIONS).cache())
    cap = cfg.activity.max_weight_per_person_item
    interactions = build_interactions(attributed, run_date=run_date, event_weights=cfg.event_weights.as_dict(),
                                      half_life_days=cfg.interactions.half_life_days, max_weight=cap)
    out = data.interactions.write_spark(interactions.repartition(cfg.spark.shuffle_partitions, "person_id"),
                                        run_date)
    data.persons.write_spark(active_persons(attributed).coalesce(1), run_date)
    data.purchases.write_spark(purchase_history(attributed, run_date=run_date)
                               .repartition(cfg.spark.shuffle_partitions, "person_id"), run_date)
    holdout_days = holdout_choice = None
    if cfg.gate.enabled:
        holdout_days, holdout_choice = write_holdout(spark, cfg, data, attributed, run_date)
    attributed.unpersist()
    flagged_counts = {r["id_type"]: r["n"] for r in flagged.groupBy("id_type").agg(F.count("*").alias("n")).collect()}
    flagged.unpersist()
    written = data.interactions.read_spark(spark, run_date)
    stats = written.agg(F.count("*").alias("pairs"), F.countDistinct("person_id").alias("persons"),
                        F.countDistinct("item_id").alias("items"),
                        F.sum(F.col("purchased").cast("int")).alias("purchased_pairs")).first().asDict()
    return {"path": out, **stats, "flagged_ids": flagged_counts, "holdout_days": holdout_days,
            **(holdout_choice or {}), "seconds": round(time.time() - started, 1)}


def write_holdout(spark: SparkSession, cfg: RecsConfig, data: Datasets, attributed: DataFrame,
                  run_date: str) -> tuple[int | None, dict]:
    """Chooses the holdout (`gate.holdout`, `jobs.evaluation.person_split.choose_holdout`), cuts and writes it:
    holdout/dt=D/{train, test, holdout.json} and, for a per-person holdout, cuts. Returns (the temporal length
    cut or None, {holdout, holdout_reason})."""
    gate = cfg.gate
    weights = dict(event_weights=cfg.event_weights.as_dict(), half_life_days=cfg.interactions.half_life_days,
                   max_weight=cfg.activity.max_weight_per_person_item)
    temporal_lengths = doublings(gate.holdout_days, gate.max_holdout_days)
    lengths = doublings(gate.holdout_days, max(gate.max_holdout_days, gate.holdout_days * gate.auto_max_stretch))
    returning = (returning_persons(attributed, run_date=run_date, lengths=lengths,
                                   test_event_types=gate.test_event_types)
                 if gate.holdout != PER_PERSON and (len(lengths) > 1 or gate.holdout == AUTO) else {})
    split = {}

    def cut_per_person() -> int:
        if "cuts" not in split:
            cuts, held = per_person_cuts(attributed, test_event_types=gate.test_event_types,
                                         share=gate.per_person_share, min_items=gate.per_person_min_items,
                                         max_persons=gate.max_test_persons, seed=cfg.seed)
            data.holdout_cuts.write_spark(cuts.coalesce(1), run_date)
            split["cuts"] = data.holdout_cuts.read_spark(spark, run_date)
            split["held"] = held
        return data.holdout_cuts.read_arrow(run_date, ["person_id"]).num_rows

    kind, reason = choose_holdout(gate.holdout, returning=returning, holdout_days=gate.holdout_days,
                                  max_stretch=gate.auto_max_stretch, min_test_persons=gate.min_test_persons,
                                  per_person_persons=cut_per_person)
    choice = {"holdout": kind, "holdout_reason": reason}
    info = {"run_date": run_date, **choice, "configured_holdout_days": gate.holdout_days,
            "test_persons_by_days": {str(d): n for d, n in returning.items()}}
    if kind == PER_PERSON:
        cut_per_person()
        cuts = split["cuts"].cache()
        train, test = per_person_split(attributed, cuts, split["held"], run_date=run_date, **weights)
        counts = cuts.agg(F.count("*").alias("persons"), F.sum("held_out").alias("held_out_items"),
                          F.sum("items").alias("items")).first()
        days = None
        info.update(holdout_days=None, train_end=run_date,
                    per_person={"persons": int(counts["persons"] or 0), "items": int(counts["items"] or 0),
                                "held_out_items": int(counts["held_out_items"] or 0),
                                "share": gate.per_person_share, "min_items": gate.per_person_min_items})
    else:
        days = temporal_length(returning, temporal_lengths, gate.min_test_persons) if len(temporal_lengths) > 1 \
            else gate.holdout_days
        train, test = holdout_split(attributed, run_date=run_date, holdout_days=days,
                                    test_event_types=gate.test_event_types, **weights)
        info.update(holdout_days=days, test_start=holdout_test_start(run_date, days).isoformat())
    data.holdout_train.write_spark(train.coalesce(cfg.spark.shuffle_partitions), run_date)
    data.holdout_test.write_spark(test.coalesce(1), run_date)
    data.holdout_info.write(run_date, info)
    if kind == PER_PERSON:
        split["cuts"].unpersist()
    log.info("holdout for %s: %s (%s)", run_date, kind, reason)
    return days, choice
