"""Checks on the recommendation lists before they are published, as Spark aggregations.

`check_recommendations` returns failures (an empty list = publish); `coverage_figures` returns the
figures worth tracking night to night. Both aggregate per list and then over lists, so only a handful of
numbers reach the driver, whatever the number of people.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, functions as F

GLOBAL_SEGMENT = "global"
_EPS = 1e-9  # float scores: equal within rounding is not an order violation


def _failure(check: str, observed, threshold, comparison: str, message: str, example=None) -> dict:
    return {"dataset": "recommendations", "check": check, "ds": None, "subject": example, "observed": observed,
            "threshold": threshold, "comparison": comparison, "severity": "fail", "status": "failed",
            "message": f"recommendations: {check}: {message}" + (f" (e.g. {example})" if example is not None else "")}


def list_stats(recs: DataFrame) -> DataFrame:
    """One row per list (subject_type, subject_id): sizes, rank range and score-order violations."""
    ordered = F.array_sort(F.collect_list(F.struct(F.col("rank"), F.col("score"))))
    lists = recs.groupBy("subject_type", "subject_id").agg(
        F.count(F.lit(1)).alias("n"),
        F.size(F.collect_set("item_id")).alias("n_items"),
        F.min("rank").alias("min_rank"), F.max("rank").alias("max_rank"),
        F.size(F.collect_set("rank")).alias("n_ranks"),
        F.sum(F.when(F.col("item_id").isNull() | F.col("rank").isNull() | F.col("score").isNull(), 1)
              .otherwise(0)).alias("null_fields"),
        ordered.alias("ordered"))
    # a later rank may not score higher than the one before it
    violations = F.size(F.filter(F.sequence(F.lit(1), F.greatest(F.size("ordered") - 1, F.lit(1))),
                                 lambda i: (F.size("ordered") > 1)
                                 & (F.element_at("ordered", i + 1)["score"] > F.element_at("ordered", i)["score"] + _EPS)))
    return lists.withColumn("score_violations", violations).drop("ordered")


def check_recommendations(recs: DataFrame, *, catalog: DataFrame, purchases: DataFrame, top_n: int) -> list[dict]:
    """Checks the lists before publish; returns the failures (empty when everything holds).

    Parameters
    ----------
    recs : DataFrame
        The contract `recommendations` schema.
    catalog : DataFrame
        The run day's validated catalog (`item_id`, `is_available`).
    purchases : DataFrame
        `(person_id, item_id)` pairs no list may hold: what the person bought within the lookback or returned (the
        publish stage passes `jobs.exclusions.excluded_pairs`); none may be recommended back to them.
    top_n : int
        The list length: every person list has exactly `top_n` distinct items; a segment list at most.

    Returns
    -------
    list of dict
        One dict per failed check: ``dataset`` ("recommendations"), ``check``, ``observed``,
        ``threshold``, ``comparison``, ``subject`` (an example list or item), ``message``.
    """
    person = F.col("subject_type") == "person"
    segment = F.col("subject_type") == "segment"
    n = F.col("n")
    bad_person = person & ((n != top_n) | (F.col("n_items") != n))
    bad_segment = segment & ((n > top_n) | (F.col("n_items") != n))
    bad_rank = (F.col("min_rank") != 1) | (F.col("max_rank") != n) | (F.col("n_ranks") != n)
    count_if = lambda c: F.sum(F.when(c, 1).otherwise(0))  # noqa: E731
    example = lambda c: F.min(F.when(c, F.concat_ws(":", "subject_type", "subject_id")))  # noqa: E731
    stats = list_stats(recs).agg(
        F.count(F.lit(1)).alias("lists"), count_if(person).alias("person_lists"),
        count_if(bad_person).alias("bad_person_lists"), example(bad_person).alias("bad_person_example"),
        count_if(bad_segment).alias("bad_segment_lists"), example(bad_segment).alias("bad_segment_example"),
        count_if(bad_rank).alias("bad_rank_lists"), example(bad_rank).alias("bad_rank_example"),
        count_if(F.col("score_violations") > 0).alias("unordered_lists"),
        example(F.col("score_violations") > 0).alias("unordered_example"),
        count_if(~(person | segment) | F.col("subject_id").isNull()).alias("bad_subjects"),
        F.sum("null_fields").alias("null_fields"),
        count_if(segment & (F.col("subject_id") == GLOBAL_SEGMENT)).alias("global_lists"),
    ).first().asDict()

    items = catalog.groupBy("item_id").agg(F.max(F.col("is_available").cast("int")).alias("available"))
    joined = recs.select("subject_type", "subject_id", "item_id").join(F.broadcast(items), "item_id", "left")
    cat = joined.agg(count_if(F.col("available").isNull()).alias("not_in_catalog"),
                     F.min(F.when(F.col("available").isNull(), F.col("item_id"))).alias("not_in_catalog_example"),
                     count_if(F.col("available") == 0).alias("unavailable"),
                     F.min(F.when(F.col("available") == 0, F.col("item_id"))).alias("unavailable_example")).first()
    bought = (recs.where(person).select(F.col("subject_id").alias("person_id"), "item_id")
              .join(purchases.select("person_id", "item_id").distinct(), ["person_id", "item_id"], "inner")
              .agg(F.count(F.lit(1)).alias("n"), F.min(F.concat_ws(":", "person_id", "item_id")).alias("example"))
              .first())

    failures = []
    if not stats["lists"]:
        return [_failure("lists_present", 0, 1, ">=", "no recommendation lists at all")]
    if stats["bad_person_lists"]:
        failures.append(_failure("person_list_size", stats["bad_person_lists"], 0, "==",
                                 f"{stats['bad_person_lists']} person list(s) do not hold exactly {top_n} distinct items",
                                 stats["bad_person_example"]))
    if stats["bad_segment_lists"]:
        failures.append(_failure("segment_list_size", stats["bad_segment_lists"], 0, "==",
                                 f"{stats['bad_segment_lists']} segment list(s) hold repeated items or more than {top_n}",
                                 stats["bad_segment_example"]))
    if stats["bad_rank_lists"]:
        failures.append(_failure("ranks", stats["bad_rank_lists"], 0, "==",
                                 f"{stats['bad_rank_lists']} list(s) whose ranks are not 1..n", stats["bad_rank_example"]))
    if stats["unordered_lists"]:
        failures.append(_failure("score_order", stats["unordered_lists"], 0, "==",
                                 f"{stats['unordered_lists']} list(s) where a later rank scores higher",
                                 stats["unordered_example"]))
    if stats["bad_subjects"] or stats["null_fields"]:
        failures.append(_failure("required_fields", (stats["bad_subjects"] or 0) + (stats["null_fields"] or 0), 0, "==",
                                 f"{stats['bad_subjects']} list(s) with a bad subject_type/subject_id, "
                                 f"{stats['null_fields']} row(s) with a null item_id/rank/score"))
    if not stats["global_lists"]:
        failures.append(_failure("global_segment", 0, 1, ">=", "no `global` segment list (the last fallback)"))
    if cat["not_in_catalog"]:
        failures.append(_failure("items_in_catalog", cat["not_in_catalog"], 0, "==",
                                 f"{cat['not_in_catalog']} recommended row(s) with an item not in the catalog",
                                 cat["not_in_catalog_example"]))
    if cat["unavailable"]:
        failures.append(_failure("items_available", cat["unavailable"], 0, "==",
                                 f"{cat['unavailable']} recommended row(s) with an unavailable item",
                                 cat["unavailable_example"]))
    if bought["n"]:
        failures.append(_failure("already_bought", bought["n"], 0, "==",
                                 f"{bought['n']} recommended row(s) the person bought within the lookback or returned",
                                 bought["example"]))
    return failures


def coverage_figures(recs: DataFrame, catalog: DataFrame) -> dict:
    """How much of the catalog the lists use, and how concentrated they are.

    Returns
    -------
    dict
        ``lists``, ``person_lists``, ``segment_lists``, ``rows``, ``distinct_items``, ``catalog_items``,
        ``available_items``, ``catalog_coverage`` (distinct recommended items / catalog items),
        ``available_coverage`` (distinct recommended available items / available items),
        ``top_item`` and ``top_item_list_share`` (share of person lists holding the most frequent item), and how
        evenly the person lists expose the available items (`exposure_figures`): ``exposure_gini`` and
        ``exposure_top_shares``.
    """
    items = catalog.groupBy("item_id").agg(F.max(F.col("is_available").cast("int")).alias("available"))
    cat = items.agg(F.count(F.lit(1)).alias("catalog_items"),
                    F.sum(F.coalesce(F.col("available"), F.lit(0))).alias("available_items")).first()
    lists = recs.agg(F.countDistinct("subject_type", "subject_id").alias("lists"),
                     F.countDistinct(F.when(F.col("subject_type") == "person", F.col("subject_id"))).alias("person_lists"),
                     F.countDistinct(F.when(F.col("subject_type") == "segment", F.col("subject_id"))).alias("segment_lists"),
                     F.count(F.lit(1)).alias("rows")).first()
    per_item = (recs.groupBy("item_id")
                .agg(F.countDistinct(F.when(F.col("subject_type") == "person", F.col("subject_id"))).alias("person_lists"))
                .join(F.broadcast(items), "item_id", "left"))
    agg = per_item.agg(F.count(F.lit(1)).alias("distinct_items"),
                       F.sum(F.when(F.col("available") == 1, 1).otherwise(0)).alias("distinct_available"),
                       F.max(F.struct(F.col("person_lists"), F.col("item_id"))).alias("top")).first()
    catalog_items, available_items = int(cat["catalog_items"] or 0), int(cat["available_items"] or 0)
    person_lists = int(lists["person_lists"] or 0)
    top = agg["top"]
    return {"lists": int(lists["lists"] or 0), "person_lists": person_lists,
            "segment_lists": int(lists["segment_lists"] or 0), "rows": int(lists["rows"] or 0),
            "distinct_items": int(agg["distinct_items"] or 0), "catalog_items": catalog_items,
            "available_items": available_items,
            "catalog_coverage": (agg["distinct_items"] or 0) / catalog_items if catalog_items else 0.0,
            "available_coverage": (agg["distinct_available"] or 0) / available_items if available_items else 0.0,
            "top_item": top["item_id"] if top else None,
            "top_item_list_share": (top["person_lists"] / person_lists) if (top and person_lists) else 0.0,
            **exposure_figures(recs, items, available_items)}


# Item shares at which the exposure curve is read: the share of person-list rows held by the top 1% of items, ...
EXPOSURE_TOP_SHARES = (0.01, 0.05, 0.1, 0.2, 0.5)


def exposure_figures(recs: DataFrame, items: DataFrame, available_items: int) -> dict:
    """How concentrated the person lists are over the available items (never-shown items count as 0).

    ``exposure_gini``: Gini coefficient of the rows per available item (0 = every item shown equally often,
    towards 1 = a few items take every slot; the gate's holdout figures use the same definition).
    ``exposure_top_shares``: ``[[item share, row share], ...]``: the share of person-list rows that goes to
    the most shown `item share` of the available items, at `EXPOSURE_TOP_SHARES`. Only the histogram of
    exposure counts (how many items were shown n times) reaches the driver, at most one row per item.
    """
    import math

    import numpy as np

    shown = (recs.where(F.col("subject_type") == "person").groupBy("item_id").agg(F.count(F.lit(1)).alias("shown")))
    available = items.where(F.col("available") == 1).select("item_id")
    histogram = (available.join(shown, "item_id", "left").groupBy(F.coalesce("shown", F.lit(0)).alias("shown"))
                 .agg(F.count(F.lit(1)).alias("items")).collect())
    if not available_items or not histogram:
        return {"exposure_gini": None, "exposure_top_shares": []}
    values = np.repeat(np.array([r["shown"] for r in histogram], np.float64), [r["items"] for r in histogram])
    values.sort()
    n, total = len(values), values.sum()
    if total == 0:
        return {"exposure_gini": None, "exposure_top_shares": []}
    gini = float(np.sum((2 * np.arange(1, n + 1) - n - 1) * values) / (n * total))
    top = np.cumsum(values[::-1])
    shares = [[p, float(top[max(1, math.ceil(p * n)) - 1] / total)] for p in EXPOSURE_TOP_SHARES]
    return {"exposure_gini": gini, "exposure_top_shares": shares}
