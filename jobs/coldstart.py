"""New shoppers and thin histories: profile context for segment lists, lookups and blending.

Segment lists are keyed by any of `KNOWN_DIMENSIONS` (`segments.dimensions`): the context columns events
carry (`country`, `device_type`, `entry_source`) and the profile's (`age_band`, `gender`, `declared_category`,
the first category a person declared at onboarding; `country` comes from the events, else the profile). The
back-off order is `jobs.segments.segment_keys`: every combination of the configured dimensions, the most
specific first, `global` last; a combination has a list only with `segments.min_events` events behind it, so
the first key that exists for a context is the most specific one with enough data.

- Events get the profile dimensions of their `user_id` (`with_profile_dimensions`), so segment popularity can
  be computed for them; persons get them through the identity map (`persons_with_context`).
- A user with a profile and no events (signed up, not yet shopped, or whose events are older than the window)
  has no person list; the key-value export holds their profile context under `profile:<user_id>`
  (`profile_contexts`), and a lookup of their user_id answers the most specific segment list of that context.
- A known person with fewer than `coldstart.thin_history_events` events gets their segment list (their
  profile's) blended into their candidates (`blend_profile_candidates`), weighted
  `profile_weight x (1 - events / thin_history_events)`: all profile for no history, nothing once it is enough.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.segments import PROFILE_DIMENSIONS, PROFILE_KEY_PREFIX


def latest_profiles(profiles: DataFrame | None) -> DataFrame | None:
    """user_id, age_band, gender, declared_category, profile_country: the latest delivery per user_id (by its
    dt= partition, then signup_time)."""
    if profiles is None:
        return None
    day = F.regexp_extract(F.input_file_name(), r"dt=(\d{4}-\d{2}-\d{2})", 1)
    order = Window.partitionBy("user_id").orderBy(F.desc("day"), F.desc_nulls_last("signup_time"))
    return (profiles.withColumn("day", day).withColumn("n", F.row_number().over(order)).where(F.col("n") == 1)
            .select("user_id", "age_band", "gender",
                    F.try_element_at("declared_categories", F.lit(1)).alias("declared_category"),
                    F.col("country").alias("profile_country")))


def _profile_dims(dimensions) -> list[str]:
    return [d for d in dimensions if d in PROFILE_DIMENSIONS]


def with_profile_dimensions(events: DataFrame, profiles: DataFrame | None, dimensions) -> DataFrame:
    """`events` with a column for every configured profile dimension (null without a profile); a missing
    `country` comes from the profile."""
    dims = _profile_dims(dimensions)
    if profiles is None:
        return events.select("*", *[F.lit(None).cast("string").alias(d) for d in dims])
    joined = events.join(profiles.select("user_id", *dims, "profile_country"), "user_id", "left")
    if "country" in events.columns:
        joined = joined.withColumn("country", F.coalesce("country", "profile_country"))
    return joined.drop("profile_country")


def persons_with_context(persons: DataFrame, profiles: DataFrame | None, identity: DataFrame,
                         dimensions) -> DataFrame:
    """The persons table with the configured profile dimensions, through the identity map (a person with
    several profiles takes the one of their smallest user_id: deterministic)."""
    dims = _profile_dims(dimensions)
    if not dims:
        return persons
    if profiles is None:
        return persons.select("*", *[F.lit(None).cast("string").alias(d) for d in dims])
    per_person = (identity.where(F.col("id_type") == "user_id").select("person_id", F.col("id").alias("user_id"))
                  .join(profiles, "user_id")
                  .groupBy("person_id").agg(F.min(F.struct("user_id", *dims, "profile_country")).alias("p"))
                  .select("person_id", *[F.col(f"p.{d}").alias(d) for d in dims],
                          F.col("p.profile_country").alias("profile_country")))
    out = persons.join(per_person, "person_id", "left")
    if "country" in persons.columns:
        out = out.withColumn("country", F.coalesce("country", "profile_country"))
    return out.drop("profile_country")


def profile_contexts(profiles: DataFrame | None, identity: DataFrame, dimensions) -> DataFrame | None:
    """(subject_key `profile:<user_id>`, items = JSON {dimension: value}) for user_ids with a profile that the
    identity map does not know: what the lookup needs to answer them by their profile."""
    if profiles is None:
        return None
    dims = [d for d in dimensions if d in PROFILE_DIMENSIONS or d == "country"]
    if not dims:
        return None
    known = identity.where(F.col("id_type") == "user_id").select(F.col("id").alias("user_id"))
    cols = [F.col("profile_country" if d == "country" else d).alias(d) for d in dims]
    return (profiles.join(known, "user_id", "left_anti")
            .select(F.concat(F.lit(PROFILE_KEY_PREFIX), "user_id").alias("subject_key"),
                    F.to_json(F.struct(*cols)).alias("items")))


def blend_profile_candidates(candidates: DataFrame, persons: DataFrame, person_segments: DataFrame,
                             segment_items: DataFrame, *, thin_history_events: int, profile_weight: float,
                             length: int) -> DataFrame:
    """`candidates` plus, for persons with fewer than `thin_history_events` events, their segment list's items
    (source `profile`) scored into the range of their own candidates' scores: the item at segment rank r gets
    lo + (hi - lo) x w x (1 - (r - 1) / length), w = profile_weight x (1 - events / thin_history_events).
    Persons without candidates get the segment list alone (scores w x ...)."""
    if thin_history_events <= 0 or profile_weight <= 0:
        return candidates
    thin = (persons.where(F.coalesce(F.col("events"), F.lit(0)) < thin_history_events)
            .select("person_id", (F.lit(profile_weight) * (1.0 - F.coalesce(F.col("events"), F.lit(0))
                                                           / F.lit(float(thin_history_events)))).alias("w")))
    ranges = candidates.groupBy("person_id").agg(F.min("score").alias("lo"), F.max("score").alias("hi"))
    lo, hi = F.coalesce("lo", F.lit(0.0)), F.coalesce("hi", F.lit(1.0))
    hi = F.when(hi > lo, hi).otherwise(lo + F.lit(1.0))
    position = 1.0 - (F.col("pop_rank") - 1) / F.lit(float(max(length, 1)))
    profile = (thin.join(person_segments, "person_id").join(segment_items, "segment_key")
               .join(ranges, "person_id", "left")
               .select("person_id", "item_id", (lo + (hi - lo) * F.col("w") * position).alias("score"),
                       F.lit("profile").alias("source")))
    return candidates.select("person_id", "item_id", "score", "source").unionByName(profile)
