import pytest
from pyspark.sql import functions as F

from jobs.stages.rank import assign_segments, assign_variant, rank_person_lists, segment_popularity
from tests.conftest import rows

pytestmark = pytest.mark.spark


def test_segment_popularity_rolls_up_and_skips_small_segments(spark):
    events = spark.createDataFrame(
        [("purchase", "a", f"c{n}", "DE", "ios") for n in range(3)] + [("product_view", "b", "c9", "DE", "ios")] * 2
        + [("product_view", "c", "c9", "FR", "desktop")] + [("purchase", "x", "c9", "DE", "ios")],
        "event_type string, item_id string, anonymous_id string, country string, device_type string"
    ).withColumn("user_id", F.lit(None).cast("string"))
    available = spark.createDataFrame([("a",), ("b",), ("c",)], "item_id string")
    seg = segment_popularity(events, available, dimensions=("country", "device_type"),
                             event_weights={"purchase": 10.0, "product_view": 1.0}, min_events=2, length=5,
                             max_weight_per_person_item=100.0)
    got = rows(seg, "segment_key", "item_id", "pop_rank")
    assert ("global", "a", 1) in got and ("global", "b", 2) in got and ("global", "c", 3) in got
    assert ("country=DE/device_type=ios", "a", 1) in got
    assert not any(k.startswith("country=FR") for k, _, _ in got)  # 1 event < min_events
    assert not any(i == "x" for _, i, _ in got)                    # unavailable


def test_one_cookie_flooding_an_item_cannot_top_the_global_list(spark):
    # 3 shoppers bought `a`; one cookie viewed `z` 5,000 times
    events = spark.createDataFrame(
        [("purchase", "a", f"c{n}", None) for n in range(3)] + [("product_view", "z", "bot", None)] * 5000,
        "event_type string, item_id string, anonymous_id string, user_id string"
    ).withColumn("country", F.lit("DE")).withColumn("device_type", F.lit("ios"))
    available = spark.createDataFrame([("a",), ("z",)], "item_id string")
    seg = segment_popularity(events, available, dimensions=("country", "device_type"),
                             event_weights={"purchase": 10.0, "product_view": 1.0}, min_events=1, length=5,
                             max_weight_per_person_item=20.0)
    assert rows(seg.where(F.col("segment_key") == "global"), "pop_rank", "item_id") == [(1, "a"), (2, "z")]


def test_assign_segments_picks_most_specific_existing(spark):
    seg = spark.createDataFrame([("global", "a"), ("country=DE", "a"), ("country=DE/device_type=ios", "a")],
                                "segment_key string, item_id string")
    persons = spark.createDataFrame([("p1", "DE", "ios"), ("p2", "DE", "android"), ("p3", None, None)],
                                    "person_id string, country string, device_type string")
    got = rows(assign_segments(persons, seg, dimensions=("country", "device_type")))
    assert got == [("p1", "country=DE/device_type=ios"), ("p2", "country=DE"), ("p3", "global")]


def test_rank_fills_from_popular_drops_bought_and_diversifies(spark):
    cands = spark.createDataFrame([("p1", "i1", 3.0, "mf"), ("p1", "i2", 2.0, "mf"), ("p1", "i3", 1.0, "mf"),
                                   ("p1", "i4", 0.5, "mf")], "person_id string, item_id string, score double, source string")
    persons = spark.createDataFrame([("p1", "DE", "ios"), ("p2", "FR", "ios")],
                                    "person_id string, country string, device_type string")
    seg = spark.createDataFrame([("global", f"i{i}", 10.0 - i, i) for i in range(1, 9)],
                                "segment_key string, item_id string, pop_score double, pop_rank int")
    bought = spark.createDataFrame([("p1", "i5"), ("p2", "i1")], "person_id string, item_id string")
    cat = {"i1": "shoes", "i2": "shoes", "i3": "shoes", "i4": "bags", "i5": "bags", "i6": "hats", "i7": "hats",
           "i8": "hats"}
    feats = spark.createDataFrame([(i, 0.5, c, 0.0) for i, c in cat.items()],
                                  "item_id string, margin_rate double, category string, popularity double")
    out = rank_person_lists(cands, persons, seg, bought, feats, dimensions=("country", "device_type"), top_n=5,
                            relevance_weight=1.0, popularity_weight=0.0, margin_weight=0.0, max_per_category=2)
    p1 = [(r["rank"], r["item_id"], r["source"]) for r in out.where("person_id = 'p1'").orderBy("rank").collect()]
    # i3 is the third shoe: demoted below every non-demoted item; i5 was bought
    assert [i for _, i, _ in p1] == ["i1", "i2", "i4", "i6", "i7"]
    assert p1[0][2] == "mf" and p1[3][2] == "popular"
    p2 = [r["item_id"] for r in out.where("person_id = 'p2'").orderBy("rank").collect()]
    assert len(p2) == 5 and "i1" not in p2                      # no embedding: segment list minus bought
    scores = [r["score"] for r in out.where("person_id = 'p1'").orderBy("rank").collect()]
    assert scores == sorted(scores, reverse=True)


def test_variant_is_stable_and_control_without_experiment(spark):
    df = spark.createDataFrame([(f"p{i}",) for i in range(200)], "subject_id string")
    a = df.select(assign_variant(F.col("subject_id"), experiment_id="exp1", variants=("control", "treatment"))
                  .alias("v")).groupBy("v").count().collect()
    shares = {r["v"]: r["count"] for r in a}
    assert set(shares) == {"control", "treatment"} and 60 < shares["control"] < 140
    none = df.select(assign_variant(F.col("subject_id"), experiment_id="", variants=("control",)).alias("v"))
    assert {r["v"] for r in none.collect()} == {"control"}
