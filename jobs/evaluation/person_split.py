"""Which holdout tune and gate judge on, and the per-person split (README "Which holdout").

`temporal` (the default on shops): train before a day, test = what persons then put in the cart or bought
(`jobs.stages.interactions.holdout_split`). It judges tomorrow's behaviour, which is what nightly lists are for,
but only persons who come back can be tested. Where few do (MovieLens: 64% of raters are seen on one day only,
39 persons with earlier history act in its last 7 days, 124 in 56), the holdout has to stretch far and then
judges a few heavy users' next actions, not what most persons' lists are for.

`per_person`: leave-last-out per person (Meng et al. 2020, "Exploring data splitting strategies for the
evaluation of recommendation models"): for a seeded sample of persons with at least `min_items` items they
carted or bought, their last `share` of those items (ordered by the day of the first such event) is held out as
test; everything else, every other person's events included, is train. The order is taken at the pipeline's
time resolution, the day: a nightly batch cannot act between two events of one day, and inside a visit the order
of events is the order the storefront showed things (on MovieLens the last-entered ratings of a session are its
obscure movies: all-time popularity scores NDCG@10 0.079 on them and 0.125 on a by-day cut of the same persons),
so the items of the day the cut falls on are drawn by a seeded hash. Known bias: other persons' later events stay
in train (the global timeline leaks, which Meng et al. measure); it is the fallback where a temporal holdout
cannot be drawn, not a replacement for it.

`auto` (`choose_holdout`): temporal when at least `min_test_persons` returning persons act within
`holdout_days` x `auto_max_stretch` days; otherwise per_person, when it has that many persons to hold out;
otherwise temporal (too little data either way: the gate then passes by rule, as before).

Pure functions over Spark DataFrames, shared by the interactions stage (the cut) and the gate's rebuilt lists
(`night_lists`: held-out events are kept out of popularity too).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # Spark is imported by the two Spark functions only: the holdout loader reads the constants
    from pyspark.sql import DataFrame

AUTO, TEMPORAL, PER_PERSON = "auto", "temporal", "per_person"


def choose_holdout(mode: str, *, returning: dict[int, int], holdout_days: int, max_stretch: int,
                   min_test_persons: int, per_person_persons: Callable[[], int]) -> tuple[str, str]:
    """(kind, reason): the holdout to cut for `mode` (auto | temporal | per_person). Pure.

    `returning`: {days: persons with an item event before the last `days` days who carted or bought in them}
    (`jobs.stages.interactions.returning_persons`). `per_person_persons()`: how many persons a per-person split
    could hold out; called only when auto needs it.
    """
    if mode == TEMPORAL:
        return TEMPORAL, "gate.holdout is temporal"
    if mode == PER_PERSON:
        return PER_PERSON, "gate.holdout is per_person"
    if mode != AUTO:
        raise ValueError(f"gate.holdout must be one of auto, temporal, per_person, got {mode!r}")
    within = holdout_days * max_stretch
    counts = ", ".join(f"{n} in {d} days" for d, n in sorted(returning.items()))
    enough = sorted(d for d, n in returning.items() if d <= within and n >= min_test_persons)
    if enough:
        return TEMPORAL, (f"auto: {returning[enough[0]]} persons with earlier history carted or bought in the last "
                          f"{enough[0]} days (>= gate.min_test_persons {min_test_persons} within {within} days = "
                          f"gate.holdout_days x gate.auto_max_stretch): temporal")
    held = per_person_persons()
    if held >= min_test_persons:
        return PER_PERSON, (f"auto: too few persons come back for a temporal holdout (returning persons: {counts}; "
                            f"{min_test_persons} needed within {within} days): per_person, leave-last-out for "
                            f"{held} persons")
    return TEMPORAL, (f"auto: too little data for either holdout (returning persons: {counts}; {held} persons with "
                      f"enough items to hold out; {min_test_persons} needed): temporal")


def per_person_cuts(events: DataFrame, *, test_event_types: tuple[str, ...], share: float, min_items: int,
                    max_persons: int, seed: int) -> tuple[DataFrame, DataFrame]:
    """(cuts, held): the per-person split of attributed `events` (person_id, item_id, event_type, event_time).

    A person's items are those they carted or bought (`test_event_types`), ordered by the day of their first such
    event, ties by a hash of (person, item, seed). The last ceil(`share` x items) are held out when the person has at
    least `min_items`; of those persons, the `max_persons` with the smallest hash of (person, seed) are.
    cuts: person_id, cut_day (day of the earliest held-out item), items, held_out. held: person_id, item_id.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    seed_col = F.lit(int(seed))
    pairs = (events.where(F.col("person_id").isNotNull() & F.col("item_id").isNotNull()
                          & F.col("event_type").isin(*test_event_types))
             .groupBy("person_id", "item_id").agg(F.min(F.to_date("event_time")).alias("day")))
    person = Window.partitionBy("person_id")
    # the draw is per (person, item): a hash of the item alone would hold out the same items for everyone
    latest_first = person.orderBy(F.desc("day"), F.desc(F.xxhash64("person_id", "item_id", seed_col)),
                                  F.desc("item_id"))
    ranked = (pairs.withColumn("items", F.count(F.lit(1)).over(person))
              .where(F.col("items") >= min_items)
              .withColumn("position", F.row_number().over(latest_first))
              .withColumn("held_out", F.ceil(F.col("items") * F.lit(float(share))).cast("long")))
    held_rows = ranked.where(F.col("position") <= F.col("held_out"))
    cuts = (held_rows.groupBy("person_id")
            .agg(F.min("day").alias("cut_day"), F.first("items").alias("items"), F.first("held_out").alias("held_out"))
            .orderBy(F.xxhash64("person_id", seed_col), "person_id").limit(int(max_persons)))
    held = held_rows.join(cuts.select("person_id"), "person_id").select("person_id", "item_id")
    return cuts, held


def _marked(events: DataFrame, cuts: DataFrame, held: DataFrame, how: str):
    """(`events` with the person's cut_day and a `_held` mark on held-out pairs, whether an event is inside the
    held-out part: after the person's cut day, or on it on a held-out item)."""
    from pyspark.sql import functions as F

    marked = (events.join(cuts.select("person_id", "cut_day"), "person_id", how)
              .join(held.select("person_id", "item_id", F.lit(True).alias("_held")), ["person_id", "item_id"], "left"))
    day = F.to_date("event_time")
    return marked, (day > F.col("cut_day")) | ((day == F.col("cut_day")) & F.col("_held").isNotNull())


def outside_holdout(events: DataFrame, cuts: DataFrame, held: DataFrame) -> DataFrame:
    """`events` without what a per-person split holds out: a held-out person's events after their cut day, and
    on the cut day their events on held-out items. Everyone else's events are all kept."""
    from pyspark.sql import functions as F

    marked, inside = _marked(events, cuts, held, "left")
    return marked.where(F.col("cut_day").isNull() | ~inside).drop("cut_day", "_held")


def inside_holdout(events: DataFrame, cuts: DataFrame, held: DataFrame) -> DataFrame:
    """The held-out persons' events that `outside_holdout` leaves out: after their cut day, and on it those on
    held-out items (what the learned ranker is labelled with, `jobs.ranking.features`)."""
    marked, inside = _marked(events, cuts, held, "inner")
    return marked.where(inside).drop("cut_day", "_held")
