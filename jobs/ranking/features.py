"""The learned ranker's inputs, computed on Spark: graded labels after a cut, and one feature row per candidate
from data before it.

Two callers use the same functions with a different `as_of`: training (the candidates of a model fitted on the
holdout's train part, labelled with what each person did after their cut: `training_examples` for a temporal
holdout, one cut for everyone; `per_person_training_examples` for a per-person one, a cut per person) and scoring
(tonight's candidates, the window's interactions, as of the end of the run date). Nothing here reads files or
collects a table to the driver.

Every feature is a double; a catalog column the contract leaves optional (brand, created_at) or a person without
the history a feature needs gives a null, never an error (LightGBM routes nulls down its own branch).
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.segments import key_column
from schemas.vocabulary import CATEGORY_SEPARATOR, leaf_category_column

# What a person did with a candidate after the cut, as a relevance grade (0: no reaction, a negative).
GRADES: dict[str, int] = {"purchase": 3, "add_to_cart": 2, "product_view": 1, "rec_click": 1}

# The ranker's features in model order (README "Ranking": one line each).
FEATURES: tuple[str, ...] = (
    "retrieval_score", "retrieval_rank", "retrieval_score_scaled",
    "item_popularity", "item_popularity_recent", "item_trend", "item_popularity_segment",
    "item_age_days", "price_vs_band",
    "category_affinity", "brand_affinity", "days_since_category",
    "person_items", "person_weight", "cooccurrence",
    "item_seen", "days_since_item", "item_category_share", "category_item_score",
    "category_top_affinity", "brand_lift",
)

# How many "average persons' worth" of the population's category shares a person's own category weights are
# smoothed with in `category_item_score` (a share of the median person's total weight): a person with a thin
# history leans on what everyone browses, a heavy one on their own history.
CATEGORY_PRIOR_SHARE = 0.25

SECONDS_PER_DAY = 86400.0



def graded_labels(events: DataFrame) -> DataFrame:
    """(person_id, item_id, label): the highest `GRADES` grade of each person's item events. Pure.

    `events` are person-attributed events (person_id, item_id, event_type) of the period after the cut only;
    the caller picks that period, so no event before the cut can label a pair."""
    grade = F.lit(0)
    for event_type, g in sorted(GRADES.items()):
        grade = F.when(F.col("event_type") == event_type, F.lit(g)).otherwise(grade)
    return (events.where(F.col("person_id").isNotNull() & F.col("item_id").isNotNull())
            .select("person_id", "item_id", grade.alias("g"))
            .groupBy("person_id", "item_id").agg(F.max("g").cast("int").alias("label"))
            .where(F.col("label") > 0))


def labelled(candidates: DataFrame, labels: DataFrame) -> DataFrame:
    """The candidates with `label` (0 where the person did nothing with the item after the cut)."""
    return (candidates.join(labels, ["person_id", "item_id"], "left")
            .withColumn("label", F.coalesce(F.col("label"), F.lit(0)).cast("int")))


def _column_or_null(df: DataFrame, name: str, cast: str):
    return F.col(name).cast(cast) if name in df.columns else F.lit(None).cast(cast)


def _days_before(as_of_end, when):
    return (F.unix_timestamp(as_of_end) - F.unix_timestamp(when)) / F.lit(SECONDS_PER_DAY)


def candidate_features(candidates: DataFrame, interactions: DataFrame, catalog: DataFrame, persons: DataFrame, *,
                       as_of: str, segment_dimensions: tuple[str, ...], recent_items: int = 5,
                       history_items: int = 20, person_as_of: DataFrame | None = None) -> DataFrame:
    """`candidates` (person_id, item_id, score, any other columns kept) with every column of `FEATURES`, and the
    item's leaf `category`, `margin_rate` and `stock_qty` (null when the catalog lacks them) for the re-rank. Pure.

    Parameters
    ----------
    interactions : DataFrame
        person_id, item_id, weight, last_time, optionally `weights` (the half-life grid of `jobs.decay`; its first
        entry, the 7-day half-life, is the recent weight): only interactions before `as_of`.
    catalog : DataFrame
        item_id, category_path, optionally price, brand, created_at.
    persons : DataFrame
        person_id and the segment dimensions (a missing dimension column counts as unknown).
    as_of : str
        The day (YYYY-MM-DD) features are computed as of: the start of it (the cut) for training, the end of
        the run date for scoring; ages and recencies count from it.
    recent_items : int
        How many of the person's latest items the co-occurrence feature compares each candidate with.
    history_items : int
        How many of each person's latest items co-occurrence is counted over.
    person_as_of : DataFrame, optional
        person_id, as_of_time (timestamp): for these persons the person's own moment (a per-person holdout's
        cut) that `item_age_days`, `days_since_category` and `days_since_item` count from instead of `as_of`.
        The item-level figures (popularity, trend, category shares) stay as of `as_of`: they sum the whole
        `interactions` table, whose timeline ends there.
    """
    as_of_end = F.to_timestamp(F.lit(f"{as_of} 00:00:00"))
    path = F.transform(F.split(F.col("category_path"), CATEGORY_SEPARATOR), lambda part: F.trim(part))
    items = catalog.select(
        "item_id",
        leaf_category_column(F.col("category_path")).alias("category"),
        # a category is its whole path: `Women > Shoes > Sneakers` and `Men > Shoes > Sneakers` are two
        F.array_join(path, CATEGORY_SEPARATOR).alias("category_key"),
        F.element_at(path, 1).alias("category_top"),
        _column_or_null(catalog, "brand", "string").alias("brand"),
        F.log(_column_or_null(catalog, "price", "double")).alias("log_price"),
        _column_or_null(catalog, "created_at", "timestamp").alias("created_at"),
        _column_or_null(catalog, "margin_rate", "double").alias("margin_rate"),
        _column_or_null(catalog, "stock_qty", "double").alias("stock_qty")).dropDuplicates(["item_id"])
    # price within the category: log price minus the category's median log price, so that a person's usual band
    # ("the cheap end of whatever they browse") is not confused with the price level of the categories they browse
    medians = items.groupBy("category_key").agg(F.percentile_approx("log_price", 0.5).alias("category_log_price"))
    items = (items.join(F.broadcast(medians), "category_key", "left")
             .withColumn("log_price", F.col("log_price") - F.col("category_log_price")).drop("category_log_price"))
    recent = (F.col("weights")[0] if "weights" in interactions.columns else F.col("weight")).cast("double")
    pairs = (interactions.select("person_id", "item_id", F.col("weight").cast("double").alias("weight"),
                                 recent.alias("recent"), "last_time")
             .join(F.broadcast(items), "item_id", "left"))

    # Item level, one row per catalog item, broadcast to the candidates (no shuffle of the big side).
    pop = pairs.groupBy("item_id").agg(F.log1p(F.sum("weight")).alias("item_popularity"),
                                       F.log1p(F.sum("recent")).alias("item_popularity_recent"),
                                       (F.sum("recent") / F.sum("weight")).alias("item_trend"),
                                       F.sum("weight").alias("item_weight"))
    # the item's share of its category's traffic, per day it was listed in the data's period (an item listed
    # last week is not a tenth as popular as one listed all period)
    start = pairs.agg(F.min("last_time").alias("period_start"))
    listed_from = F.greatest(F.coalesce(F.col("created_at"), F.col("period_start")), F.col("period_start"))
    rates = (items.select("item_id", "category_key", "created_at").join(pop.select("item_id", "item_weight"), "item_id")
             .crossJoin(F.broadcast(start))
             .withColumn("item_rate", F.col("item_weight")
                         / F.greatest(F.lit(1.0), _days_before(as_of_end, listed_from))))
    category_rates = rates.groupBy("category_key").agg(F.sum("item_rate").alias("category_rate"))
    item_share = (rates.join(category_rates, "category_key")
                  .select("item_id", F.log((F.col("item_rate") + F.lit(1e-6))
                                           / (F.col("category_rate") + F.lit(1e-6))).alias("item_category_share")))
    # everyone's weight on each category and top-level category, and on each brand inside one (the brand's lift)
    top_all = pairs.groupBy("category_top").agg(F.sum("weight").alias("category_top_all"))
    category_all = pairs.groupBy("category_key").agg(F.sum("weight").alias("category_key_all"))
    top_brand_all = (pairs.where(F.col("brand").isNotNull()).groupBy("category_top", "brand")
                     .agg(F.sum("weight").alias("top_brand_all")))
    item_table = (items.join(pop.drop("item_weight"), "item_id", "left").join(item_share, "item_id", "left")
                  .join(top_all, "category_top", "left").join(category_all, "category_key", "left")
                  .join(top_brand_all, ["category_top", "brand"], "left"))
    totals = pairs.groupBy("person_id").agg(F.sum("weight").alias("total_weight"))
    prior = totals.agg((F.lit(CATEGORY_PRIOR_SHARE) * F.percentile_approx("total_weight", 0.5))
                       .alias("category_prior")).crossJoin(pairs.agg(F.sum("weight").alias("all_weight")))

    # Person level, only for the candidates' persons, one row per person with their histories as maps (one join
    # of the candidates by person instead of one per grouping): clustered by person once, so every grouping
    # below and the join reuse that partitioning.
    own = pairs.join(candidates.select("person_id").distinct(), "person_id", "left_semi").repartition("person_id")

    def history(key, name: str, **values):
        """{key: struct(values)} per person, over their rows with a key."""
        keyed = own.where(F.col(key).isNotNull()) if isinstance(key, str) else own
        key_col = F.col(key) if isinstance(key, str) else key
        grouped = keyed.groupBy("person_id", key_col.alias("_key")).agg(
            *[agg.alias(v) for v, agg in values.items()])
        return grouped.groupBy("person_id").agg(
            F.map_from_entries(F.collect_list(F.struct("_key", F.struct(*values)))).alias(name))

    profile = own.groupBy("person_id").agg(
        F.log1p(F.count("*")).alias("person_items"), F.sum("weight").alias("total_weight"),
        F.avg("log_price").alias("band_mean"), F.stddev_pop("log_price").alias("band_std"))
    histories = [
        history("category_key", "by_category", w=F.sum("weight"), last=F.max("last_time")),
        history("brand", "by_brand", w=F.sum("weight")),
        history("category_top", "by_top", w=F.sum("weight")),
        history(F.struct("category_top", "brand"), "by_top_brand", w=F.sum("weight")),
        history("item_id", "by_item", w=F.sum("weight"), last=F.max("last_time"))]
    person_table = profile
    for h in histories:
        person_table = person_table.join(h, "person_id", "left")
    person_cols = [F.col(d) if d in persons.columns else F.lit(None).cast("string").alias(d)
                   for d in segment_dimensions]
    segment_of = persons.select("person_id", *person_cols).select(
        "person_id", key_column(list(segment_dimensions)).alias("segment"))
    seg_pop = (pairs.join(segment_of, "person_id").where(F.col("segment").isNotNull())
               .groupBy("segment", "item_id").agg(F.log1p(F.sum("weight")).alias("item_popularity_segment")))

    # co-occurrence: how many persons interacted with both the candidate and one of the person's latest items,
    # summed over those items (log-scaled). Counted over everyone's latest `history_items` items: the self-join
    # grows with the square of a history (the 100k-shopper shop: 348M pairs uncapped, 32M at 20), and recent
    # co-occurrence is the one that predicts. Every pair is counted: on the 100k-shopper shop the self-join's
    # 12M distinct pairs cost less than first narrowing it to the 24M (person, seed, candidate) rows' pairs.
    latest = Window.partitionBy("person_id").orderBy(F.desc("last_time"), F.asc("item_id"))
    ordered = pairs.select("person_id", "item_id", F.row_number().over(latest).alias("r"))
    by_item = ordered.where(F.col("r") <= history_items).select(F.col("person_id").alias("other"), "item_id")
    mine = (ordered.where(F.col("r") <= recent_items).join(candidates.select("person_id").distinct(), "person_id",
                                                           "left_semi")
            .select("person_id", F.col("item_id").alias("seed_item")))
    # each candidate beside the person's seed items first (candidates x recent_items rows), never a seed's
    # co-occurring items beside every person who has it as a seed
    wanted = (candidates.select("person_id", "item_id").join(mine, "person_id")
              .where(F.col("seed_item") != F.col("item_id")))
    co_pairs = (by_item.withColumnRenamed("item_id", "seed_item").join(by_item, "other")
                .where(F.col("seed_item") != F.col("item_id"))
                .groupBy("seed_item", "item_id").agg(F.count("*").alias("n")))
    cooc = (wanted.join(co_pairs, ["seed_item", "item_id"])
            .groupBy("person_id", "item_id").agg(F.log1p(F.sum("n")).alias("cooccurrence")))

    by_person = Window.partitionBy("person_id")
    rank_order = Window.partitionBy("person_id").orderBy(F.desc("score"), F.asc("item_id"))
    lo, hi = F.min("score").over(by_person), F.max("score").over(by_person)
    def looked_up(name: str, key):
        return F.try_element_at(F.col(name), key)

    category, seen = looked_up("by_category", F.col("category_key")), looked_up("by_item", F.col("item_id"))
    # the item's columns first (broadcast, no shuffle), so that each person's histories are looked up at the join
    # and dropped there: carried on, they made every candidate row as wide as its person's whole history
    with_person = (candidates.join(F.broadcast(item_table), "item_id", "left")
                   .join(person_table, "person_id", "left")
                   .withColumn("cat_weight", category["w"]).withColumn("cat_last", category["last"])
                   .withColumn("brand_weight", looked_up("by_brand", F.col("brand"))["w"])
                   .withColumn("category_top_person", looked_up("by_top", F.col("category_top"))["w"])
                   .withColumn("top_brand_person", looked_up("by_top_brand", F.struct("category_top", "brand"))["w"])
                   .withColumn("seen_weight", seen["w"]).withColumn("seen_last", seen["last"])
                   .drop("by_category", "by_brand", "by_top", "by_top_brand", "by_item"))
    person_end = as_of_end
    if person_as_of is not None:
        with_person = with_person.join(
            person_as_of.select("person_id", F.col("as_of_time").alias("_person_as_of")), "person_id", "left")
        person_end = F.coalesce(F.col("_person_as_of"), as_of_end)
    out = (with_person
           .join(segment_of, "person_id", "left")
           # after the joins by person: the windows reuse their partitioning
           .withColumn("retrieval_score", F.col("score").cast("double"))
           .withColumn("retrieval_rank", F.row_number().over(rank_order).cast("double"))
           .withColumn("retrieval_score_scaled",
                       F.when(hi > lo, (F.col("score") - lo) / (hi - lo)).otherwise(F.lit(1.0)).cast("double"))
           .join(seg_pop, ["segment", "item_id"], "left")
           .join(cooc, ["person_id", "item_id"], "left")
           .crossJoin(F.broadcast(prior)))
    # P(category | person), the person's weights smoothed towards everyone's (`CATEGORY_PRIOR_SHARE`), times
    # P(item | category): the two-step choice "which category, then which item in it", on a log scale. (Smoothing
    # down the path, a leaf towards the person's share of its top-level category, ordered worse on the synthetic
    # shop: a shopper's few leaves of a top-level category do not make its other leaves likely.)
    m = F.coalesce(F.col("category_prior"), F.lit(0.0))
    category_prob = F.log((F.coalesce(F.col("cat_weight"), F.lit(0.0))
                           + m * F.col("category_key_all") / F.col("all_weight"))
                          / (F.coalesce(F.col("total_weight"), F.lit(0.0)) + m))
    # the person's share of the brand within the item's top-level category over everyone's share there
    # (smoothed alike): a brand the person favours, not a big brand of the categories they browse
    brand_share_all = F.col("top_brand_all") / F.col("category_top_all")
    brand_lift = F.log((F.coalesce(F.col("top_brand_person"), F.lit(0.0)) + m * brand_share_all)
                       / ((F.coalesce(F.col("category_top_person"), F.lit(0.0)) + m) * brand_share_all))
    weight_share = F.when(F.col("total_weight") > 0, F.lit(1.0) / F.col("total_weight"))
    return (out
            .withColumn("item_popularity", F.coalesce("item_popularity", F.lit(0.0)))
            .withColumn("item_popularity_recent", F.coalesce("item_popularity_recent", F.lit(0.0)))
            .withColumn("item_popularity_segment", F.coalesce("item_popularity_segment", F.lit(0.0)))
            .withColumn("item_age_days", _days_before(person_end, F.col("created_at")))
            .withColumn("price_vs_band", (F.col("log_price") - F.col("band_mean"))
                        / (F.coalesce(F.col("band_std"), F.lit(0.0)) + F.lit(0.25)))
            .withColumn("category_affinity", F.coalesce(F.col("cat_weight") * weight_share, F.lit(0.0)))
            .withColumn("brand_affinity", F.coalesce(F.col("brand_weight") * weight_share, F.lit(0.0)))
            .withColumn("days_since_category", _days_before(person_end, F.col("cat_last")))
            .withColumn("person_items", F.coalesce("person_items", F.lit(0.0)))
            .withColumn("person_weight", F.log1p(F.coalesce("total_weight", F.lit(0.0))))
            .withColumn("cooccurrence", F.coalesce("cooccurrence", F.lit(0.0)))
            .withColumn("item_seen", F.log1p(F.coalesce(F.col("seen_weight"), F.lit(0.0))))
            .withColumn("days_since_item", _days_before(person_end, F.col("seen_last")))
            .withColumn("category_item_score", category_prob + F.col("item_category_share"))
            .withColumn("category_top_affinity", F.coalesce(F.col("category_top_person") * weight_share,
                                                            F.lit(0.0)))
            .withColumn("brand_lift", brand_lift)
            .select(*candidates.columns, "category", "margin_rate", "stock_qty",
                    *[F.col(f).cast("double").alias(f) for f in FEATURES]))


def training_examples(candidates: DataFrame, events: DataFrame, interactions: DataFrame, catalog: DataFrame,
                      persons: DataFrame, *, cut_day: str, segment_dimensions: tuple[str, ...]) -> DataFrame:
    """The ranker's training rows for candidates produced as of `cut_day`: features from interactions whose
    last event is before the cut (as of the cut), `label` from person-attributed `events` on or after it. Pure.

    The cut is applied here, to both inputs, so no caller can leak what happened after it into a feature."""
    cut = F.to_timestamp(F.lit(f"{cut_day} 00:00:00"))
    features = candidate_features(candidates, interactions.where(F.col("last_time") < cut), catalog, persons,
                                  as_of=cut_day, segment_dimensions=segment_dimensions)
    return labelled(features, graded_labels(events.where(F.col("event_time") >= cut)))


def per_person_training_examples(candidates: DataFrame, events: DataFrame, interactions: DataFrame,
                                 catalog: DataFrame, persons: DataFrame, *, cuts: DataFrame, held: DataFrame,
                                 as_of: str, segment_dimensions: tuple[str, ...]) -> DataFrame:
    """The ranker's training rows on a per-person holdout (`jobs.evaluation.person_split`): only the candidates
    of held-out persons; `label` from the events the split took out of train (`inside_holdout`: after the
    person's cut day, and on it those of held-out items). Pure.

    Features as of each person's own cut: their interactions are only those that end by the end of their cut
    day (the holdout train already holds nothing later of them; rows that do are dropped here all the same), and
    their recencies and item ages count from the end of that day, the night that would have followed it. The
    end of the day, not its start: the split keeps the cut day's events on items it did not hold out in train.
    Item-level figures stay as of `as_of` (the end of the run date, D + 1): everyone else's events to D are
    train, the global timeline the holdout's ALS is fitted on too (the per-person split's known bias).

    cuts: person_id, cut_day (date). held: person_id, item_id (the held-out pairs: the holdout's test part).
    """
    from jobs.evaluation.person_split import inside_holdout

    person_as_of = cuts.select("person_id", F.to_timestamp(F.date_add(F.col("cut_day"), 1)).alias("as_of_time"))
    own = (interactions.join(person_as_of, "person_id", "left")
           .where(F.col("as_of_time").isNull() | (F.col("last_time") < F.col("as_of_time"))).drop("as_of_time"))
    mine = candidates.join(cuts.select("person_id"), "person_id", "left_semi")
    features = candidate_features(mine, own, catalog, persons, as_of=as_of, segment_dimensions=segment_dimensions,
                                  person_as_of=person_as_of)
    return labelled(features, graded_labels(inside_holdout(events, cuts, held)))
