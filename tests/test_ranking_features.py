import datetime as dt
import math

import pytest
from pyspark.sql import functions as F

from jobs.evaluation.person_split import per_person_cuts
from jobs.ranking.features import (FEATURES, candidate_features, graded_labels, per_person_training_examples,
                                   training_examples)
from jobs.stages.interactions import per_person_split

pytestmark = pytest.mark.spark

T = "person_id string, item_id string, weight double, last_time timestamp"


def _ts(day, hour=12):
    return dt.datetime.fromisoformat(f"{day} {hour:02d}:00:00")


def _catalog(spark, with_optional: bool):
    rows = [("a", "Women > Shoes", 10.0), ("b", "Women > Bags", 100.0), ("c", "Men > Hats", 20.0)]
    if not with_optional:  # the contract's required columns only: no brand, created_at, margin, stock
        return spark.createDataFrame(rows, "item_id string, category_path string, price double")
    return spark.createDataFrame([(*r, "acme", _ts("2026-01-01"), 0.3, 2) for r in rows],
                                 "item_id string, category_path string, price double, brand string, "
                                 "created_at timestamp, margin_rate double, stock_qty int")


def test_graded_labels_keep_the_strongest_reaction(spark):
    events = spark.createDataFrame(
        [("p1", "a", "product_view"), ("p1", "a", "purchase"), ("p1", "b", "add_to_cart"), ("p1", "c", "search"),
         ("p2", "a", "product_view")], "person_id string, item_id string, event_type string")
    got = sorted(tuple(r) for r in graded_labels(events).collect())
    assert got == [("p1", "a", 3), ("p1", "b", 2), ("p2", "a", 1)]  # a search is no reaction to an item


def test_training_examples_label_after_the_cut_and_feature_before_it(spark):
    cut = "2026-03-10"
    # p1 bought `a` before the cut and `b` after it; `b` was touched by nobody before the cut
    interactions = spark.createDataFrame(
        [("p1", "a", 5.0, _ts("2026-03-05")), ("p2", "a", 1.0, _ts("2026-03-06")),
         ("p2", "b", 9.0, _ts("2026-03-12"))], T)  # this row is after the cut: it must not count
    events = spark.createDataFrame(
        [("p1", "a", "purchase", _ts("2026-03-05")), ("p1", "b", "purchase", _ts("2026-03-11")),
         ("p1", "c", "product_view", _ts("2026-03-09"))],  # a view before the cut labels nothing
        "person_id string, item_id string, event_type string, event_time timestamp")
    candidates = spark.createDataFrame([("p1", "b", 2.0), ("p1", "c", 1.0)],
                                       "person_id string, item_id string, score double")
    persons = spark.createDataFrame([("p1", "DE"), ("p2", "DE")], "person_id string, country string")
    out = {r["item_id"]: r for r in training_examples(
        candidates, events, interactions, _catalog(spark, True), persons, cut_day=cut,
        segment_dimensions=("country",)).collect()}
    assert out["b"]["label"] == 3 and out["c"]["label"] == 0
    assert out["b"]["item_popularity"] == 0.0        # p2's interaction with b after the cut is not seen
    assert out["b"]["retrieval_rank"] == 1.0 and out["c"]["retrieval_rank"] == 2.0
    assert out["b"]["category_affinity"] == 0.0      # p1 knew only Shoes before the cut
    assert out["b"]["days_since_category"] is None


def test_per_person_holdout_gives_training_rows_with_nothing_after_each_persons_cut(spark):
    # p1 bought a, b, c, then d (03-08) and e (03-09): the last two are held out, cut day 03-08; on 03-09 p1 also
    # put c in the cart again and viewed g. p2 (too few items to be held out) buys d after p1's cut.
    E = "person_id string, item_id string, event_type string, event_time timestamp"
    events = spark.createDataFrame(
        [("p1", "a", "purchase", _ts("2026-03-01")), ("p1", "b", "purchase", _ts("2026-03-02")),
         ("p1", "c", "purchase", _ts("2026-03-03")), ("p1", "d", "purchase", _ts("2026-03-08")),
         ("p1", "e", "purchase", _ts("2026-03-09")), ("p1", "c", "add_to_cart", _ts("2026-03-09")),
         ("p1", "g", "product_view", _ts("2026-03-09")),
         ("p2", "a", "purchase", _ts("2026-03-02")), ("p2", "d", "purchase", _ts("2026-03-10"))], E)
    cuts, held = per_person_cuts(events, test_event_types=("purchase", "add_to_cart"), share=0.4, min_items=4,
                                 max_persons=10, seed=1)
    assert [(r["person_id"], r["cut_day"].isoformat()) for r in cuts.collect()] == [("p1", "2026-03-08")]
    train, test = per_person_split(events, cuts, held, run_date="2026-03-10", max_weight=100.0,
                                   event_weights={"purchase": 10.0, "add_to_cart": 4.0, "product_view": 1.0},
                                   half_life_days=30.0)
    catalog = spark.createDataFrame([(i, "Films > Drama", 10.0, _ts("2026-01-01")) for i in "abcdeg"],
                                    "item_id string, category_path string, price double, created_at timestamp")
    candidates = spark.createDataFrame([("p1", "d", 3.0), ("p1", "c", 2.0), ("p1", "g", 1.0), ("p2", "b", 1.0)],
                                       "person_id string, item_id string, score double")
    persons = spark.createDataFrame([("p1", "DE"), ("p2", "DE")], "person_id string, country string")
    out = {(r["person_id"], r["item_id"]): r for r in per_person_training_examples(
        candidates, events, train, catalog, persons, cuts=cuts, held=test, as_of="2026-03-11",
        segment_dimensions=("country",)).collect()}
    assert set(out) == {("p1", "d"), ("p1", "c"), ("p1", "g")}  # held-out persons only
    # labels: what the split held out of p1 (d, and e), and p1's reactions after the cut day
    assert out[("p1", "d")]["label"] == 3 and out[("p1", "g")]["label"] == 1
    # features: p1's own history ends with the cut day, and recencies count from its end (03-09 00:00)
    c = out[("p1", "c")]
    assert c["person_items"] == pytest.approx(math.log1p(3))           # a, b, c: not d, e, g
    assert 0.0 < c["item_seen"] < math.log1p(10.0)                      # the purchase, decayed; no cart on top
    assert c["days_since_item"] == pytest.approx(5.5)                  # the purchase on 03-03, not the cart on 03-09
    assert c["days_since_category"] == pytest.approx(5.5) and c["item_age_days"] == pytest.approx(66.5)
    assert out[("p1", "g")]["item_seen"] == 0.0 and out[("p1", "g")]["days_since_item"] is None


def test_features_without_brand_or_price_columns_are_null_or_zero_not_errors(spark):
    interactions = spark.createDataFrame([("p1", "a", 5.0, _ts("2026-03-05")), ("p1", "b", 1.0, _ts("2026-03-06"))], T)
    candidates = spark.createDataFrame([("p1", "b", 2.0), ("p1", "c", 1.0), ("p9", "a", 1.0)],
                                       "person_id string, item_id string, score double")
    persons = spark.createDataFrame([("p1",)], "person_id string")  # no segment column at all
    catalog = _catalog(spark, False).drop("price")
    out = {(r["person_id"], r["item_id"]): r for r in candidate_features(
        candidates, interactions, catalog, persons, as_of="2026-03-10",
        segment_dimensions=("country", "device_type")).collect()}
    assert len(out) == 3
    row = out[("p1", "b")]
    assert row["price_vs_band"] is None and row["brand_affinity"] == 0.0 and row["item_age_days"] is None
    assert row["margin_rate"] is None and row["stock_qty"] is None
    assert row["category_affinity"] == pytest.approx(1.0 / 6.0)
    assert row["days_since_category"] == pytest.approx(3.5)   # b's category last touched 2026-03-06 12:00
    assert out[("p1", "c")]["cooccurrence"] == 0.0             # nobody touched c
    assert out[("p9", "a")]["person_items"] == 0.0             # no history: zeros, not a failure
    assert set(FEATURES) <= set(out[("p1", "b")].asDict())


def test_price_band_is_within_the_category_and_cooccurrence_sees_the_persons_history(spark):
    interactions = spark.createDataFrame(
        [("p1", "a", 1.0, _ts("2026-03-05")), ("p2", "a", 1.0, _ts("2026-03-05")), ("p2", "c", 1.0, _ts("2026-03-05")),
         ("p3", "a", 1.0, _ts("2026-03-05")), ("p3", "c", 1.0, _ts("2026-03-05"))], T)
    candidates = spark.createDataFrame([("p1", "b", 2.0), ("p1", "c", 1.0), ("p1", "b2", 0.5)],
                                       "person_id string, item_id string, score double")
    persons = spark.createDataFrame([("p1", "DE")], "person_id string, country string")
    # p1 paid 10 for the cheapest shoe; b (100) is the cheapest bag, b2 (300) a dear one
    catalog = _catalog(spark, True).unionByName(spark.createDataFrame(
        [(i, path, price, "acme", _ts("2026-01-01"), 0.3, 2) for i, path, price in
         (("a2", "Women > Shoes", 30.0), ("b2", "Women > Bags", 300.0))], _catalog(spark, True).schema))
    out = {r["item_id"]: r for r in candidate_features(
        candidates, interactions, catalog, persons, as_of="2026-03-10",
        segment_dimensions=("country",)).where(F.col("person_id") == "p1").collect()}
    # ten times what p1 paid, but the cheap end of its category as p1's shoe was: in p1's band
    assert out["b"]["price_vs_band"] == pytest.approx(0.0) and out["b2"]["price_vs_band"] > 1.0
    assert out["c"]["cooccurrence"] > 0 and out["b"]["cooccurrence"] == 0.0  # two others had a and c
    assert out["c"]["brand_affinity"] == 1.0 and out["c"]["item_age_days"] == pytest.approx(67.5)


def test_category_item_score_weighs_the_persons_category_taste_by_the_items_share_of_it(spark):
    # p1 lives in Shoes; the other shoppers make b the best seller of Bags and a2 a rare shoe
    interactions = spark.createDataFrame(
        [("p1", "a", 5.0, _ts("2026-03-05")), ("p2", "a", 1.0, _ts("2026-03-05")), ("p2", "a2", 1.0, _ts("2026-03-05")),
         ("p3", "a", 1.0, _ts("2026-03-05")), ("p3", "b", 1.0, _ts("2026-03-05")), ("p4", "b", 1.0, _ts("2026-03-06")),
         ("p5", "b", 1.0, _ts("2026-03-06"))], T)
    catalog = _catalog(spark, True).unionByName(spark.createDataFrame(
        [("a2", "Women > Shoes", 30.0, "acme", _ts("2026-01-01"), 0.3, 2),
         ("a3", "Men > Shoes", 30.0, "acme", _ts("2026-01-01"), 0.3, 2)], _catalog(spark, True).schema))
    candidates = spark.createDataFrame([("p1", "a2", 1.0), ("p1", "b", 1.0), ("p1", "a", 1.0), ("p1", "a3", 1.0),
                                        ("p9", "a2", 1.0), ("p9", "b", 1.0)],
                                       "person_id string, item_id string, score double")
    persons = spark.createDataFrame([("p1", "DE")], "person_id string, country string")
    out = {(r["person_id"], r["item_id"]): r for r in candidate_features(
        candidates, interactions, catalog, persons, as_of="2026-03-10", segment_dimensions=("country",)).collect()}
    # for p1 a rare shoe beats the best-selling bag; for p9 (no history) everyone's shares decide: the bag
    assert out[("p1", "a2")]["category_item_score"] > out[("p1", "b")]["category_item_score"]
    assert out[("p9", "b")]["category_item_score"] > out[("p9", "a2")]["category_item_score"]
    # b is all of its category's traffic, a2 one shoe in eight (weights 5+1+1 on a, 1 on a2)
    assert out[("p1", "b")]["item_category_share"] == pytest.approx(0.0, abs=1e-5)
    assert out[("p1", "a2")]["item_category_share"] == pytest.approx(-2.0794, abs=1e-3)
    # the person's own history with the candidate
    assert out[("p1", "a")]["item_seen"] == pytest.approx(1.7918, abs=1e-4)  # log(1 + 5)
    assert out[("p1", "a")]["days_since_item"] == pytest.approx(4.5)
    assert out[("p1", "b")]["item_seen"] == 0.0 and out[("p1", "b")]["days_since_item"] is None
    # a category is its whole path: p1's shoes are women's, so men's shoes are no taste of theirs
    assert out[("p1", "a3")]["category_affinity"] == 0.0 and out[("p1", "a2")]["category_affinity"] == 1.0
    # all of p1's weight is in Women; one brand is all of Women's weight, so p1 favours it no more than anyone
    assert out[("p1", "b")]["category_top_affinity"] == 1.0 and out[("p1", "a3")]["category_top_affinity"] == 0.0
    assert out[("p1", "b")]["brand_lift"] == pytest.approx(0.0, abs=1e-9)
