import numpy as np
import pandas as pd
import pytest

from jobs.config import BusinessConfig, DiversityConfig, RankerConfig
from jobs.ranking.features import FEATURES
from jobs.ranking.ltr import ndcg_at_k, ordered_lists, rerank_spark, score, train_ranker

RANKER = RankerConfig(enabled=True, max_train_persons=1000, validation_share=0.3, min_gain=0.0, k=10, trees=60,
                      learning_rate=0.1, num_leaves=7, min_data_in_leaf=5)


def _planted(n_persons: int, signal: bool, seed: int = 0) -> pd.DataFrame:
    """20 candidates a person in retrieval order; with `signal`, what they buy is the candidate with the highest
    category_affinity, which the retrieval order knows nothing of; without it, the label is noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_persons):
        affinity = rng.random(20)
        bought = int(np.argmax(affinity)) if signal else int(rng.integers(20))
        for r in range(20):
            row = {f: 0.0 for f in FEATURES}
            row.update(retrieval_rank=float(r + 1), retrieval_score=1.0 - r / 20, retrieval_score_scaled=1.0 - r / 19,
                       category_affinity=affinity[r] if signal else rng.random())
            rows.append({"person_id": f"p{p:03d}", "item_id": f"i{r:02d}", "label": 3 if r == bought else 0,
                         "category": f"c{r % 4}", "margin_rate": np.nan, "stock_qty": np.nan, **row})
    return pd.DataFrame(rows)


def test_ndcg_is_one_for_the_ideal_order_and_graded():
    groups, labels = ["a"] * 3, [0, 3, 1]
    assert ndcg_at_k(groups, labels, [0.1, 0.9, 0.5], k=10) == pytest.approx(1.0)
    purchase_last = ndcg_at_k(groups, labels, [0.9, 0.1, 0.5], k=10)
    purchase_second = ndcg_at_k(groups, labels, [0.9, 0.5, 0.1], k=10)
    assert 0 < purchase_last < purchase_second < 1


def test_a_ranker_learns_a_planted_signal_and_beats_the_retrieval_order():
    result = train_ranker(_planted(120, signal=True), RANKER, seed=42)
    assert result.serves and result.model is not None
    v = result.validation
    assert v["ranker"]["ndcg"] > 1.5 * v["retrieval"]["ndcg"]
    assert next(iter(result.importances)) == "category_affinity"   # the most important feature is the planted one
    again = train_ranker(_planted(120, signal=True), RANKER, seed=42)
    assert again.model == result.model                            # seeded: the same model twice


def test_without_a_signal_it_falls_back_and_says_so():
    frame = _planted(120, signal=False)
    # the retrieval order is right here: each person buys their first candidate
    frame["label"] = np.where(frame["retrieval_rank"] == 1.0, 3, 0)
    result = train_ranker(frame, RankerConfig(**{**RANKER.__dict__, "min_gain": 0.05}), seed=42)
    assert not result.serves
    assert "falls back to the retrieval order" in result.reason


def test_beyond_noise_a_lucky_validation_split_does_not_serve_but_a_real_signal_does():
    noise = _planted(120, signal=False, seed=4)  # labels are noise; this split's 36 persons favour the ranker
    assert train_ranker(noise, RANKER, seed=42).serves
    careful = train_ranker(noise, RANKER, seed=42, beyond_noise=True)
    assert not careful.serves and "within the noise" in careful.reason
    assert careful.validation["paired_gain"]["lower_bound"] <= 0 < careful.validation["paired_gain"]["mean"]
    assert train_ranker(_planted(120, signal=True), RANKER, seed=42, beyond_noise=True).serves


def test_too_little_data_is_a_fallback_not_an_error():
    result = train_ranker(_planted(2, signal=True), RANKER, seed=1)
    assert not result.serves and "too little training data" in result.reason


def test_validation_reports_the_cost_of_business_terms_and_diversity():
    frame = _planted(120, signal=True)
    result = train_ranker(frame, RANKER, seed=42,
                          business=BusinessConfig(margin_weight=0.05, stock_weight=0.1, low_stock_qty=5,
                                                  max_adjustment=0.1),
                          diversity=DiversityConfig(strength=0.3, depth=10))
    v = result.validation
    assert {"ranker_business", "ranker_business_diversity"} <= set(v)
    assert v["ranker_business_diversity"]["diversity"] > v["ranker"]["diversity"]
    assert "ndcg_cost_vs_ranker" in v["ranker_business_diversity"]


@pytest.mark.spark
def test_spark_partitions_score_as_the_driver_does(spark):
    frame = _planted(40, signal=True)
    result = train_ranker(frame, RANKER, seed=7)
    assert result.model is not None
    frame["source"] = "mf"
    got = rerank_spark(spark.createDataFrame(frame), model=result.model, business=None, diversity=None, spark=spark)
    top = {r["person_id"]: r["item_id"] for r in got.collect() if r["score"] == 1.0}
    on_driver = ordered_lists(frame, score(result.model, frame), business=None, diversity=None)
    expected = dict(on_driver.loc[on_driver["rank"] == 1, ["person_id", "item_id"]].to_numpy())
    assert top == expected and len(top) == 40


@pytest.mark.spark
def test_a_person_split_across_arrow_batches_is_reranked_whole(spark):
    frame = _planted(30, signal=True)
    frame["source"] = "mf"
    result = train_ranker(frame, RANKER, seed=7)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "7")  # 20 rows a person: split across batches
    try:
        got = rerank_spark(spark.createDataFrame(frame).coalesce(1), model=result.model, business=None,
                           diversity=DiversityConfig(strength=0.2, depth=10), spark=spark).toPandas()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert len(got) == len(frame) and got.groupby("person_id")["item_id"].nunique().eq(20).all()
    expected = ordered_lists(frame, score(result.model, frame), business=None,
                             diversity=DiversityConfig(strength=0.2, depth=10))
    first = got.loc[got["score"] == 1.0].set_index("person_id")["item_id"].sort_index()
    assert first.equals(expected.loc[expected["rank"] == 1].set_index("person_id")["item_id"].sort_index())
