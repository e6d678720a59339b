import pytest
from pyspark.sql import functions as F

from jobs.config import ArmConfig, ExperimentConfig
from jobs.ranking.blend import rank_person_lists
from jobs.ranking.lists import assign_segments, segment_popularity
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


def test_arms_are_stable_across_nights_and_shares_hold_within_1_percent_over_100k_persons(spark):
    from jobs.experiments import arm_column, arm_of

    exp = ExperimentConfig(id="home-1", arms=(ArmConfig("control", 0.5, "model"), ArmConfig("popular", 0.3, "popularity"),
                                              ArmConfig("margin", 0.2, "override", ("rank.margin_weight=0.5",))))
    persons = spark.range(100_000).select(F.concat(F.lit("p"), F.col("id").cast("string")).alias("person_id"))
    night1 = persons.select("person_id", arm_column(exp, F.col("person_id")).alias("arm")).cache()
    shares = {r["arm"]: r["count"] / 100_000 for r in night1.groupBy("arm").count().collect()}
    assert shares.keys() == {"control", "popular", "margin"}
    assert all(abs(shares[a.name] - a.share) < 0.01 for a in exp.arms), shares
    # the next night: other persons beside them, another order and partitioning; nobody moves
    night2 = (persons.unionByName(spark.createDataFrame([("new-person",)], "person_id string")).repartition(7)
              .select("person_id", arm_column(exp, F.col("person_id")).alias("arm2")))
    assert night1.join(night2, "person_id").where("arm != arm2").count() == 0
    sample = night1.orderBy("person_id").limit(300).collect()
    assert all(arm_of(exp, r["person_id"]) == r["arm"] for r in sample)  # Python agrees with Spark
    other = ExperimentConfig(id="home-2", arms=exp.arms)  # a new experiment reshuffles
    assert sum(arm_of(other, r["person_id"]) != r["arm"] for r in sample) > 100
    single = ExperimentConfig(id="", arms=(ArmConfig("control", 1.0, "model"),))
    assert {r["a"] for r in persons.limit(10).select(arm_column(single, F.col("person_id")).alias("a")).collect()} \
        == {"control"}


def test_each_person_gets_the_list_of_their_arm_only(spark, cfg):
    from jobs.experiments import arm_of
    from jobs.stages.rank import arm_person_lists

    persons = spark.createDataFrame([(f"p{n}", "DE", "ios") for n in range(40)],
                                    "person_id string, country string, device_type string")
    items = [f"i{n}" for n in range(12)]
    cands = spark.createDataFrame([(f"p{n}", i, float((n * 7 + k * 3) % 11), "mf") for n in range(40)
                                   for k, i in enumerate(items[:8])], "person_id string, item_id string, score double, "
                                                                      "source string")
    seg = spark.createDataFrame([(key, i, 20.0 - k, k + 1) for key in ("global", "country=DE")
                                 for k, i in enumerate(reversed(items))],
                                "segment_key string, item_id string, pop_score double, pop_rank int")
    feats = spark.createDataFrame([(i, (k % 5) / 4, f"c{k % 4}", k / 12) for k, i in enumerate(items)],
                                  "item_id string, margin_rate double, category string, popularity double")
    bought = spark.createDataFrame([], "person_id string, item_id string")
    exp = ExperimentConfig(id="e1", arms=(ArmConfig("control", 0.4, "model"), ArmConfig("popular", 0.3, "popularity"),
                                          ArmConfig("margin", 0.3, "override", ("rank.margin_weight=5.0",))))
    night = cfg.replace(experiment=exp, top_n=5)
    got = arm_person_lists(cands, persons, seg, bought, feats, night).toPandas()
    assert got.groupby("person_id").variant.nunique().max() == 1 and got.person_id.nunique() == 40
    arms = got.groupby("person_id").variant.first()
    assert all(arms[p] == arm_of(exp, p) for p in arms.index) and set(arms) == {"control", "popular", "margin"}

    def ranked(margin_weight, candidates=cands):
        r = night.rank
        out = rank_person_lists(candidates, persons, seg, bought, feats, dimensions=("country", "device_type"), top_n=5,
                                relevance_weight=r.relevance_weight, popularity_weight=r.popularity_weight,
                                margin_weight=margin_weight, max_per_category=r.max_per_category).toPandas()
        return out.sort_values("rank").groupby("person_id").item_id.apply(list)

    model, margin = ranked(night.rank.margin_weight), ranked(5.0)
    popular = ranked(night.rank.margin_weight, cands.limit(0))  # the popular fill alone, as on a fallback night
    lists = got.sort_values("rank").groupby("person_id").item_id.apply(list)
    for person, arm in arms.items():
        expected = {"control": model[person], "popular": popular[person], "margin": margin[person]}[arm]
        assert lists[person] == expected, (person, arm)
    assert (model != margin).any() and (model != popular).any()  # the arms' lists differ as configured
    assert set(got[got.variant == "popular"].source) == {"popular"}
