"""From attributed events to per-arm sufficient statistics, on Spark: pure functions over DataFrames.

`exposures` finds each person's first exposure to the experiment (their first `rec_impression` carrying its
`experiment_id`) and the arm shown then; people whose impressions or clicks of the experiment carry two arms are
counted and dropped. `person_outcomes` sums each exposed person's events after (and, for CUPED, before) that
moment. `arm_moments` aggregates the per-person table to one row per arm of counts and sums (n, Σy, Σy², Σx, Σx²,
Σxy per metric): the only rows that reach the driver, a handful per arm however many people were exposed.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.abtest.stats import CUPED, DIAGNOSTIC, GUARDRAIL, MEAN, RATIO, SUCCESS

EVENT_COLUMNS = ("event_id", "person_id", "event_type", "event_time", "item_id", "quantity", "price", "order_id",
                 "experiment_id", "variant")
DAY_SECONDS = 86400

# name -> (kind, role, y column, x column or None, the people it counts: a boolean column or None for all)
METRICS: dict[str, tuple[str, str, str, str | None, str | None]] = {
    "revenue_per_person": (CUPED, SUCCESS, "revenue_capped", "pre_revenue_capped", None),
    "conversion_rate": (MEAN, SUCCESS, "converted", None, None),
    "retention": (MEAN, GUARDRAIL, "retained", None, "retention_eligible"),
    "ctr": (RATIO, DIAGNOSTIC, "clicks", "impressions", None),
    "aov": (RATIO, DIAGNOSTIC, "revenue", "orders", None),
    "add_to_cart_rate": (MEAN, DIAGNOSTIC, "added_to_cart", None, None),
    "attributed_revenue_per_person": (MEAN, DIAGNOSTIC, "attributed_revenue", None, None),
    "revenue_per_person_uncapped": (MEAN, DIAGNOSTIC, "revenue", None, None),
}
SUMS = ("n", "sy", "syy", "sx", "sxx", "sxy")


def _seconds(col: Column) -> Column:
    return F.unix_timestamp(col)


def exposures(events: DataFrame, experiment_id: str, start: str, end: str) -> tuple[DataFrame, DataFrame]:
    """(exposed, two_arms): one row per person first exposed in [start, end] (days, UTC, inclusive), with
    `variant` and `first_exposure` (timestamp); and one row per person whose events of the experiment in that
    period carry more than one arm (`variants`), who are not in `exposed`."""
    in_experiment = (events.where((F.col("experiment_id") == experiment_id) & F.col("person_id").isNotNull()
                                  & F.col("event_type").isin("rec_impression", "rec_click")
                                  & (F.to_date("event_time") >= F.lit(start).cast("date"))
                                  & (F.to_date("event_time") <= F.lit(end).cast("date"))))
    per_person = (in_experiment.groupBy("person_id").agg(
        F.array_sort(F.collect_set("variant")).alias("variants"),
        F.min(F.when(F.col("event_type") == "rec_impression", F.col("event_time"))).alias("first_exposure"),
        F.min_by(F.col("variant"), F.when(F.col("event_type") == "rec_impression",
                                          F.col("event_time"))).alias("variant")))
    two_arms = per_person.where(F.size("variants") > 1).select("person_id", "variants")
    exposed = (per_person.where((F.size("variants") == 1) & F.col("first_exposure").isNotNull())
               .select("person_id", "variant", "first_exposure"))
    return exposed, two_arms


def person_outcomes(events: DataFrame, exposed: DataFrame, *, experiment_id: str, end: str, pre_period_days: int,
                    attribution_days: int, retention_days: int) -> DataFrame:
    """One row per exposed person: `variant`, `first_exposure`, and their outcomes up to the end of day `end`.

    revenue: purchases after the first exposure, less returns of those orders; orders: distinct orders bought;
    converted: bought at least once; pre_revenue: purchases in the `pre_period_days` before the first exposure;
    impressions, clicks: of this experiment's lists; added_to_cart: any add_to_cart; attributed_revenue:
    purchases of an item within `attribution_days` after a click on it in this experiment's list (each purchase
    once); retention_eligible: first exposed at least `retention_days` before the end; retained: an event in
    [exposure + 1 day, exposure + retention_days days)."""
    end_s = _seconds(F.date_add(F.lit(end).cast("date"), 1).cast("timestamp"))
    t = _seconds(F.col("event_time"))
    t0 = _seconds(F.col("first_exposure"))
    # the arm is the exposure's; an event's own variant is not needed after exposures()
    joined = (events.select(*(c for c in EVENT_COLUMNS if c != "variant")).join(exposed, "person_id")
              .where(t < end_s)
              .withColumn("_post", t >= t0)
              .withColumn("_pre", (t < t0) & (t >= t0 - pre_period_days * DAY_SECONDS))
              .withColumn("_amount", F.coalesce(F.col("price"), F.lit(0.0))
                          * F.coalesce(F.col("quantity"), F.lit(1)).cast("double")))
    is_purchase, is_return = F.col("event_type") == "purchase", F.col("event_type") == "return"
    ours = F.col("experiment_id") == experiment_id

    # net revenue per order bought after exposure: returns count only against those orders
    orders = (joined.where(F.col("_post") & (is_purchase | is_return) & F.col("order_id").isNotNull())
              .groupBy("person_id", "order_id")
              .agg(F.sum(F.when(is_purchase, F.col("_amount")).otherwise(0.0)).alias("_bought"),
                   F.sum(F.when(is_return, F.col("_amount")).otherwise(0.0)).alias("_returned"))
              .where(F.col("_bought") > 0)
              .groupBy("person_id")
              .agg(F.sum(F.col("_bought") - F.least(F.col("_returned"), F.col("_bought"))).alias("revenue"),
                   F.count("*").alias("orders")))

    clicks = (joined.where(F.col("_post") & ours & (F.col("event_type") == "rec_click") & F.col("item_id").isNotNull())
              .select("person_id", "item_id", t.alias("_click_s")))
    buys = (joined.where(F.col("_post") & is_purchase & F.col("item_id").isNotNull())
            .select("person_id", "item_id", "event_id", t.alias("_buy_s"), "_amount"))
    attributed = (buys.join(clicks, ["person_id", "item_id"])
                  .where((F.col("_buy_s") >= F.col("_click_s"))
                         & (F.col("_buy_s") < F.col("_click_s") + attribution_days * DAY_SECONDS))
                  .dropDuplicates(["person_id", "event_id"])
                  .groupBy("person_id").agg(F.sum("_amount").alias("attributed_revenue")))

    back = (t >= t0 + DAY_SECONDS) & (t < t0 + retention_days * DAY_SECONDS)
    activity = (joined.groupBy("person_id", "variant", "first_exposure").agg(
        F.sum(F.when(F.col("_pre") & is_purchase, F.col("_amount")).otherwise(0.0)).alias("pre_revenue"),
        F.count(F.when(F.col("_post") & ours & (F.col("event_type") == "rec_impression"), 1)).alias("impressions"),
        F.count(F.when(F.col("_post") & ours & (F.col("event_type") == "rec_click"), 1)).alias("clicks"),
        F.max(F.when(F.col("_post") & (F.col("event_type") == "add_to_cart"), 1).otherwise(0)).alias("added_to_cart"),
        F.max(F.when(back, 1).otherwise(0)).alias("retained")))
    out = (activity.join(orders, "person_id", "left").join(attributed, "person_id", "left")
           .fillna(0.0, ["revenue", "attributed_revenue"]).fillna(0, ["orders"])
           .withColumn("converted", (F.col("orders") > 0).cast("int"))
           .withColumn("retention_eligible", t0 + retention_days * DAY_SECONDS <= end_s))
    return out


def caps(outcomes: DataFrame, percentile: float, accuracy: int = 10000) -> dict[str, float | None]:
    """The pooled `percentile` of revenue and pre-period revenue (Spark's percentile_approx): values above are cut
    to it, so a few very large baskets do not swamp the arms' means. None at percentile 1 (no cap)."""
    if percentile >= 1:
        return {"revenue": None, "pre_revenue": None}
    row = outcomes.agg(F.percentile_approx("revenue", percentile, accuracy).alias("revenue"),
                       F.percentile_approx("pre_revenue", percentile, accuracy).alias("pre_revenue")).first()
    return {"revenue": None if row is None else row["revenue"], "pre_revenue": None if row is None else row["pre_revenue"]}


def with_caps(outcomes: DataFrame, cap: dict[str, float | None]) -> DataFrame:
    def capped(name: str) -> Column:
        value = cap.get(name)
        return F.col(name) if value is None else F.least(F.col(name), F.lit(float(value)))

    return (outcomes.withColumn("revenue_capped", capped("revenue"))
            .withColumn("pre_revenue_capped", capped("pre_revenue")))


def arm_moments(outcomes: DataFrame) -> DataFrame:
    """One row per arm: `variant` and, per metric of `METRICS`, `<metric>__n`, `__sy`, `__syy`, `__sx`, `__sxx`,
    `__sxy` (x sums 0 when the metric has no x)."""
    aggs = []
    for name, (_, _, y, x, who) in METRICS.items():
        keep = F.lit(True) if who is None else F.col(who)
        yv = F.when(keep, F.col(y).cast("double"))
        xv = F.when(keep, F.col(x).cast("double") if x else F.lit(0.0))
        aggs += [F.count(yv).alias(f"{name}__n"), F.coalesce(F.sum(yv), F.lit(0.0)).alias(f"{name}__sy"),
                 F.coalesce(F.sum(yv * yv), F.lit(0.0)).alias(f"{name}__syy"),
                 F.coalesce(F.sum(xv), F.lit(0.0)).alias(f"{name}__sx"),
                 F.coalesce(F.sum(xv * xv), F.lit(0.0)).alias(f"{name}__sxx"),
                 F.coalesce(F.sum(xv * yv), F.lit(0.0)).alias(f"{name}__sxy")]
    return outcomes.groupBy("variant").agg(*aggs)


def daily_exposures(exposed: DataFrame) -> DataFrame:
    """New exposed people per arm and day: (variant, day, people); arms x days rows."""
    return (exposed.groupBy("variant", F.date_format("first_exposure", "yyyy-MM-dd").alias("day"))
            .agg(F.count("*").alias("people")))
