"""Known-answer tests for jobs.evaluation.metrics: every expected value below is worked out by hand."""
import math

import numpy as np
import pandas as pd
import pytest

from jobs.evaluation import metrics as ev

L2 = math.log2


def frame(rows, cols=("person_id", "item_id")):
    return pd.DataFrame(rows, columns=list(cols))


# --------------------------------------------------------------------------------------------- metrics

@pytest.fixture
def truth():
    # u4 is only in the truth, so every metric must ignore it
    return frame([("u1", "i1"), ("u1", "i2"), ("u1", "i3"),
                  ("u2", "i2"), ("u2", "i5"),
                  ("u3", "i4"),
                  ("u4", "i1")])


@pytest.fixture
def recs():
    # rows deliberately not in score order; u5 is only in the recs and must be ignored
    return frame([("u1", "i2", 0.7), ("u1", "i1", 0.9), ("u1", "i5", 0.6), ("u1", "i4", 0.8),
                  ("u2", "i1", 0.9), ("u2", "i3", 0.8), ("u2", "i4", 0.7), ("u2", "i5", 0.1),
                  ("u3", "i2", 0.5), ("u3", "i4", 0.4),
                  ("u5", "i1", 0.9), ("u5", "i2", 0.8)], cols=("person_id", "item_id", "score"))


# Ranked lists: u1 = i1 i4 i2 i5 (hits at 1, 3), u2 = i1 i3 i4 i5 (hit at 4), u3 = i2 i4 (hit at 2).
# Relevant: u1 3 items, u2 2, u3 1.
TARGET_METRICS = {
    3: {
        "precision_at_k": (2 / 3 + 0 + 1 / 3) / 3,
        "recall_at_k": (2 / 3 + 0 + 1) / 3,
        "ndcg_at_k": ((1 + 1 / L2(4)) / (1 + 1 / L2(3) + 1 / L2(4)) + 0 + (1 / L2(3)) / 1) / 3,
        "map_at_k": ((1 / 1 + 2 / 3) / 3 + 0 + (1 / 2) / 1) / 3,
        "mrr_at_k": (1 + 0 + 1 / 2) / 3,
        "hit_rate_at_k": 2 / 3,
    },
    # K larger than every list and every relevant set
    10: {
        "precision_at_k": (2 / 10 + 1 / 10 + 1 / 10) / 3,
        "recall_at_k": (2 / 3 + 1 / 2 + 1) / 3,
        "ndcg_at_k": ((1 + 1 / L2(4)) / (1 + 1 / L2(3) + 1 / L2(4))
                      + (1 / L2(5)) / (1 + 1 / L2(3))
                      + (1 / L2(3)) / 1) / 3,
        "map_at_k": ((1 / 1 + 2 / 3) / 3 + (1 / 4) / 2 + (1 / 2) / 1) / 3,
        "mrr_at_k": (1 + 1 / 4 + 1 / 2) / 3,
        "hit_rate_at_k": 1.0,
    },
}
METRIC_FUNCTIONS = {"precision_at_k": ev.precision_at_k, "recall_at_k": ev.recall_at_k,
                    "ndcg_at_k": ev.ndcg_at_k, "map_at_k": ev.map_at_k, "mrr_at_k": ev.mrr_at_k,
                    "hit_rate_at_k": ev.hit_rate_at_k}


@pytest.mark.parametrize("k", [3, 10])
@pytest.mark.parametrize("name", list(METRIC_FUNCTIONS))
def test_metric__matches_hand_computed_target(recs, truth, name, k):
    assert METRIC_FUNCTIONS[name](recs, truth, k=k) == pytest.approx(TARGET_METRICS[k][name])


def test_evaluate_all__same_values_as_the_single_metrics(recs, truth):
    result = ev.evaluate_all(recs, truth, k=3)
    assert result["n_users"] == 3 and result["n_recommended_users"] == 4 and result["k"] == 3
    for name, expected in TARGET_METRICS[3].items():
        assert result[name] == pytest.approx(expected), name


def test_map_at_k__denominator_n_relevant_vs_upstream_min_k(recs, truth):
    # k=2: u1 top 2 = i1 (hit) i4, u3 = i2 i4 (hit at 2), u2 no hit
    assert ev.map_at_k(recs, truth, k=2) == pytest.approx((1 / 3 + 0 + (1 / 2) / 1) / 3)
    assert ev.map_at_k(recs, truth, k=2, denominator="min_k_n_relevant") == pytest.approx(
        (1 / 2 + 0 + (1 / 2) / 1) / 3)


def test_users_only_in_one_frame_are_ignored(recs, truth):
    both = ev.evaluate_all(recs[recs.person_id != "u5"], truth[truth.person_id != "u4"], k=3)
    with_extras = ev.evaluate_all(recs, truth, k=3)
    for name in TARGET_METRICS[3]:
        assert with_extras[name] == pytest.approx(both[name]), name
    assert with_extras["n_users"] == both["n_users"] == 3


def test_rank_column_wins_over_score_and_gaps_are_renumbered(truth):
    # rank says i1 first, i2 second (rank values with gaps); the score would say the opposite
    ranked = frame([("u3", "i1", 10, 0.1), ("u3", "i4", 30, 0.3), ("u3", "i2", 20, 0.9)],
                   cols=("person_id", "item_id", "rank", "score"))
    # u3's only relevant item i4 is third by rank
    assert ev.mrr_at_k(ranked, truth, k=3) == pytest.approx(1 / 3)
    assert ev.hit_rate_at_k(ranked, truth, k=2) == 0.0
    top = ev.top_k(ranked, k=2)
    assert top["item_id"].tolist() == ["i1", "i2"] and top["rank"].tolist() == [1, 2]


def test_perfect_prediction_gives_ndcg_map_recall_one(truth):
    perfect = truth.assign(score=1.0)
    for k in (1, 2, 3, 5):
        result = ev.evaluate_all(perfect, truth, k=k)
        # k=1 or 2: u1 has more relevant items than k, so recall < 1 but ndcg and map@min_k stay 1
        assert result["ndcg_at_k"] == pytest.approx(1.0)
        assert result["hit_rate_at_k"] == pytest.approx(1.0)
        assert result["mrr_at_k"] == pytest.approx(1.0)
        assert ev.map_at_k(perfect, truth, k=k, denominator="min_k_n_relevant") == pytest.approx(1.0)
        # precision is capped by the relevant set: mean of min(n_rel, k) / k,
        # n_rel = 3, 2, 1, 1 for u1..u4
        n_rel = np.array([3, 2, 1, 1])
        assert result["precision_at_k"] == pytest.approx(np.mean(np.minimum(n_rel, k) / k))
    at_3 = ev.evaluate_all(perfect, truth, k=3)
    assert at_3["map_at_k"] == pytest.approx(1.0) and at_3["recall_at_k"] == pytest.approx(1.0)


def test_no_common_user_gives_zero_not_an_error(recs):
    other = frame([("nobody", "i1")])
    assert ev.precision_at_k(recs, other, k=3) == 0.0
    assert ev.evaluate_all(recs, other, k=3)["n_users"] == 0


def test_duplicate_truth_rows_count_once_and_duplicate_recs_raise(recs, truth):
    doubled = pd.concat([truth, truth], ignore_index=True)
    assert ev.recall_at_k(recs, doubled, k=3) == pytest.approx(TARGET_METRICS[3]["recall_at_k"])
    with pytest.raises(ValueError, match="1 duplicate"):
        ev.precision_at_k(pd.concat([recs, recs.iloc[[0]]]), truth, k=3)


def test_ties_keep_row_order():
    tied = frame([("u", "a", 1.0), ("u", "b", 1.0), ("u", "c", 1.0)], cols=("person_id", "item_id", "score"))
    assert ev.top_k(tied, k=2)["item_id"].tolist() == ["a", "b"]


def test_column_overrides():
    recs = pd.DataFrame({"subject_id": ["s"], "sku": ["x"], "score": [1.0]})
    truth = pd.DataFrame({"subject_id": ["s"], "sku": ["x"]})
    assert ev.ndcg_at_k(recs, truth, k=5, user_col="subject_id", item_col="sku") == pytest.approx(1.0)


def _naive_metrics(recs, truth, k):
    """Per-user loop straight from the definitions, to check the vectorized code on random data."""
    relevant = truth.groupby("person_id")["item_id"].apply(set).to_dict()
    per_user = []
    for user, group in recs.groupby("person_id", sort=False):
        if user not in relevant:
            continue
        ranked = group.sort_values("score", ascending=False, kind="stable")["item_id"].tolist()[:k]
        rel = relevant[user]
        hits = [r for r, item in enumerate(ranked, start=1) if item in rel]
        idcg = sum(1 / L2(1 + r) for r in range(1, min(k, len(rel)) + 1))
        per_user.append({
            "precision_at_k": len(hits) / k,
            "recall_at_k": len(hits) / len(rel),
            "ndcg_at_k": sum(1 / L2(1 + r) for r in hits) / idcg,
            "map_at_k": sum((n + 1) / r for n, r in enumerate(hits)) / len(rel),
            "mrr_at_k": 1 / hits[0] if hits else 0.0,
            "hit_rate_at_k": float(bool(hits)),
        })
    return pd.DataFrame(per_user).mean().to_dict()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics__equal_a_per_user_loop_on_random_data(seed):
    rng = np.random.default_rng(seed)
    pairs = {(f"u{u}", f"i{i}") for u, i in zip(rng.integers(0, 30, 300), rng.integers(0, 25, 300))}
    recs = frame(sorted(pairs)).sample(frac=1, random_state=seed)
    recs["score"] = rng.integers(0, 5, len(recs)).astype(float)  # many ties: row order must break them
    truth = frame(list(zip([f"u{u}" for u in rng.integers(0, 35, 120)],
                           [f"i{i}" for i in rng.integers(0, 25, 120)])))
    for k in (1, 5, 12):
        expected = _naive_metrics(recs, truth, k)
        result = ev.evaluate_all(recs, truth, k=k)
        for name, value in expected.items():
            assert result[name] == pytest.approx(value), (k, name)


# --------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, column", [
    (lambda r, t: ev.precision_at_k(r.drop(columns="person_id"), t, k=3), "person_id"),
    (lambda r, t: ev.recall_at_k(r, t.drop(columns="item_id"), k=3), "item_id"),
    (lambda r, t: ev.ndcg_at_k(r.drop(columns="score"), t, k=3), "rank' or 'score"),
    (lambda r, t: ev.evaluate_all(r, t, k=3, train=t.drop(columns="person_id")), "person_id"),
    (lambda r, t: ev.catalog_coverage(r.drop(columns="item_id"), ["i1"]), "item_id"),
    (lambda r, t: ev.intra_list_diversity(r, pd.DataFrame({"item_id": ["i1"]})), "category_path"),
])
def test_missing_column_raises_value_error_naming_it(recs, truth, call, column):
    with pytest.raises(ValueError, match=f"missing column '{column}'"):
        call(recs, truth)


def test_bad_values_raise_clear_errors(recs, truth):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ev.precision_at_k(recs, truth, k=0)
    with pytest.raises(ValueError, match="'person_id' has 1 null"):
        ev.precision_at_k(pd.concat([recs, frame([(None, "i9")]).assign(score=1.0)]), truth, k=3)
    with pytest.raises(ValueError, match="'score' has 1 null or non-numeric"):
        ev.precision_at_k(recs.assign(score=[np.nan] + [1.0] * (len(recs) - 1)), truth, k=3)
    with pytest.raises(ValueError, match="'person_id' has dtype int64 in recs but str in truth"):
        ev.precision_at_k(recs.assign(person_id=range(len(recs))), truth, k=3)


# ------------------------------------------------------------------------------------------ beyond accuracy

def test_catalog_coverage__counts_only_catalog_items():
    shown = frame([("u1", "a", 1.0), ("u1", "b", 0.5), ("u2", "a", 1.0), ("u2", "zz", 0.9)],
                  cols=("person_id", "item_id", "score"))
    catalog = pd.DataFrame({"item_id": ["a", "b", "c", "d", "e"]})
    assert ev.catalog_coverage(shown, catalog) == pytest.approx(2 / 5)
    # top 1 only: u1 -> a, u2 -> a
    assert ev.catalog_coverage(shown, catalog["item_id"], k=1) == pytest.approx(1 / 5)


def test_gini_exposure__uniform_is_zero_single_item_is_near_one():
    catalog = [f"i{i:03d}" for i in range(100)]
    uniform = frame([(f"u{i}", item) for i, item in enumerate(catalog)])
    assert ev.gini_exposure(uniform, catalog) == pytest.approx(0.0, abs=1e-12)
    single = frame([(f"u{i}", "i000") for i in range(50)])
    assert ev.gini_exposure(single, catalog) == pytest.approx(99 / 100)
    # two of four items, equal counts: sorted exposure 0 0 1 1 -> G = (2*3-5)+(2*4-5) / (4*2) = 0.5
    assert ev.gini_exposure(frame([("u1", "a"), ("u2", "b")]), ["a", "b", "c", "d"]) == pytest.approx(0.5)


def test_novelty__mean_minus_log2_popularity_share():
    # 4 distinct train pairs (the repeated row counts once): a has 3 users, b 1
    train = frame([("x", "a"), ("y", "a"), ("z", "a"), ("x", "b"), ("x", "b")])
    shown = frame([("u1", "a"), ("u1", "b"), ("u2", "new")])  # "new" is not in train: left out
    assert ev.novelty(shown, train) == pytest.approx((-L2(3 / 4) - L2(1 / 4)) / 2)


def test_intra_list_diversity__share_of_pairs_with_different_categories():
    categories = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "category_path": ["X", "X", "Y", "Y"]})
    shown = frame([("u1", "a"), ("u1", "b"), ("u1", "c"),  # pairs ab ac bc: 2 of 3 differ
                   ("u2", "a"), ("u2", "d"),  # 1 of 1 differs
                   ("u3", "a"),  # a single item: no pair, left out
                   ("u4", "b"), ("u4", "unknown")])  # one categorised item: left out
    assert ev.intra_list_diversity(shown, categories) == pytest.approx((2 / 3 + 1) / 2)
    as_series = categories.set_index("item_id")["category_path"]
    assert ev.intra_list_diversity(shown, as_series) == pytest.approx((2 / 3 + 1) / 2)


def test_evaluate_all__beyond_accuracy_keys_on_the_top_k(recs, truth):
    categories = pd.DataFrame({"item_id": [f"i{i}" for i in range(1, 6)], "category_path": list("AABBC")})
    result = ev.evaluate_all(recs, truth, k=1, train=truth, catalog=[f"i{i}" for i in range(1, 7)],
                             item_categories=categories)
    # top 1: u1 i1, u2 i1, u3 i2, u5 i1 -> 2 of 6 catalog items
    assert result["catalog_coverage"] == pytest.approx(2 / 6)
    assert result["novelty"] == pytest.approx((3 * -L2(2 / 7) - L2(2 / 7)) / 4)
    assert math.isnan(result["intra_list_diversity"])  # lists of one item have no pair
    assert set(result) >= {"gini_exposure", "catalog_coverage", "novelty", "intra_list_diversity"}
