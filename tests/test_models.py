import numpy as np
import pytest

from jobs.models.als import Factors, to_csr, train_als
from jobs.config import load_config
from jobs.models.ann import index_plan, search_top_n, top_n

INDEX = load_config().candidates.index  # the default table


def retrieve(pv, iv, *, index_settings=INDEX, **kwargs):
    return top_n(pv, iv, index_settings=index_settings, **kwargs)


def checker_board(n_persons=40, n_items=40):
    """Two taste groups; each person likes every item of their group's parity except one withheld item."""
    rows, cols = [], []
    for p in range(n_persons):
        for i in range(n_items):
            if i % 2 == p % 2 and i != p:
                rows.append(p)
                cols.append(i)
    return np.array(rows), np.array(cols)


def test_als_recovers_the_withheld_item_of_a_checker_board():
    rows, cols = checker_board()
    persons = np.array([f"p{r:03d}" for r in rows], dtype=object)
    items = np.array([f"i{c:03d}" for c in cols], dtype=object)
    matrix, person_ids, item_ids = to_csr(persons, items, np.ones(len(rows)))
    pv, iv = train_als(matrix, factors=8, regularization=0.01, alpha=5.0, iterations=15, threads=1, seed=23)
    p, i, s = retrieve(pv, iv, bought_rows=rows, bought_cols=cols, n=1)
    # the only unseen item of the person's own parity is the withheld one (index == person index)
    assert np.mean(i == p) >= 0.9


def test_als_is_reproducible_with_a_seed():
    rows, cols = checker_board(10, 10)
    matrix, _, _ = to_csr(rows.astype(str).astype(object), cols.astype(str).astype(object), np.ones(len(rows)))
    a = train_als(matrix, factors=4, regularization=0.1, alpha=2.0, iterations=5, threads=1, seed=7)
    b = train_als(matrix, factors=4, regularization=0.1, alpha=2.0, iterations=5, threads=1, seed=7)
    np.testing.assert_array_equal(a[1], b[1])


def test_to_csr_accepts_numeric_and_arrow_ids():
    import pyarrow as pa

    m, persons, items = to_csr(np.array([7, 3, 7]), pa.chunked_array([["x", "y"], ["x"]]), np.ones(3))
    assert list(persons) == [3, 7] and list(items) == ["x", "y"] and m[1, 0] == pytest.approx(2.0)


def test_to_csr_sums_duplicate_pairs_and_sorts_ids():
    m, persons, items = to_csr(np.array(["b", "a", "b"], dtype=object), np.array(["x", "y", "x"], dtype=object),
                               np.array([1.0, 2.0, 3.0]))
    assert list(persons) == ["a", "b"] and list(items) == ["x", "y"]
    assert m[1, 0] == pytest.approx(4.0) and m[0, 1] == pytest.approx(2.0) and m.nnz == 2


@pytest.mark.parametrize("seed", [1, 2])
def test_retrieve_matches_brute_force_without_bought_items(seed):
    rng = np.random.default_rng(seed)
    pv = rng.normal(size=(300, 16)).astype(np.float32)
    iv = rng.normal(size=(500, 16)).astype(np.float32)
    bought_rows = rng.integers(0, 300, 900)
    bought_cols = rng.integers(0, 500, 900)
    p, i, s = retrieve(pv, iv, bought_rows=bought_rows, bought_cols=bought_cols, n=10)
    scores = pv @ iv.T
    scores[bought_rows, bought_cols] = -np.inf
    expected = -np.sort(-scores, axis=1)[:, :10]
    assert len(p) == 300 * 10
    np.testing.assert_allclose(s.reshape(300, 10), expected, rtol=1e-4, atol=1e-4)  # scores, not ids
    bought = set(zip(bought_rows.tolist(), bought_cols.tolist()))
    assert not any((a, b) in bought for a, b in zip(p.tolist(), i.tolist()))
    assert np.all(np.diff(s.reshape(300, 10), axis=1) <= 1e-6)


def test_retrieve_approximate_index_keeps_recall():
    rng = np.random.default_rng(3)
    pv = rng.normal(size=(200, 16)).astype(np.float32)
    iv = rng.normal(size=(3000, 16)).astype(np.float32)
    none = np.zeros(0, np.int64)
    import dataclasses

    p, i, s = retrieve(pv, iv, bought_rows=none, bought_cols=none, n=10,
                       index_settings=dataclasses.replace(INDEX, exact_below=1000, leaves_to_search=15))
    exact = np.argsort(-(pv @ iv.T), axis=1)[:, :10]
    recall = np.mean([len(set(exact[r]) & set(i[p == r])) / 10 for r in range(200)])
    assert recall >= 0.9


def test_factors_round_trip_through_arrow():
    f = Factors(np.array(["a", "b"], dtype=object), np.arange(6, dtype=np.float32).reshape(2, 3))
    back = Factors.from_table(f.table("item_id"), "item_id")
    assert list(back.ids) == ["a", "b"]
    np.testing.assert_array_equal(back.vectors, f.vectors)


def test_content_vectors_place_items_with_too_little_history_by_their_attributes():
    """Only the required catalog columns (no brand, no description): the category path alone places a new item;
    an item with too few interactions is searched by its content vector too; an unavailable one not at all."""
    import pandas as pd

    from jobs.models.content import content_items

    catalog = pd.DataFrame({
        "item_id": ["a", "b", "c", "d", "thin", "new1", "new2", "gone"],
        "title": ["Red boots", "Black boots", "Wool cap", "Cotton cap", "Blue boots", "Green boots", "Straw cap",
                  "Old boots"],
        "category_path": ["W > Shoes > Boots", "W > Shoes > Boots", "M > Hats > Caps", "M > Hats > Caps",
                          "W > Shoes > Boots", "W > Shoes > Boots", "M > Hats > Caps", "W > Shoes > Boots"],
        "price": [50.0, 60.0, 10.0, 12.0, 55.0, 58.0, 11.0, 40.0],
        "is_available": [True, True, True, True, True, True, True, False]})
    ids = np.array(["a", "b", "c", "d", "thin"], dtype=object)
    vecs = np.array([[1, 0], [1, 0.2], [0, 1], [0.2, 1], [-5, -5]], dtype=np.float32)
    keep, cold_ids, cold_vecs, summary = content_items(
        catalog, ids, vecs, {"a": 9, "b": 9, "c": 9, "d": 9, "thin": 1}, min_interactions=5, alpha=0.1,
        max_features=100, norm_quantile=0.5)
    assert sorted(keep) == ["a", "b", "c", "d"] and sorted(cold_ids) == ["new1", "new2", "thin"]
    got = dict(zip(cold_ids, cold_vecs))
    assert got["new1"][0] > got["new1"][1] and got["new2"][1] > got["new2"][0]  # boots like boots, caps like caps
    assert got["thin"][0] > 0  # its few interactions' vector (-5, -5) is replaced
    assert summary["fitted_on"] == 4 and summary["replaced_learned"] == 1
    learned = np.linalg.norm(vecs[:4], axis=1)  # rescaled to the median length of the learned vectors
    np.testing.assert_allclose(np.linalg.norm(cold_vecs, axis=1), np.quantile(learned, 0.5), rtol=1e-5)


def test_content_tokens_tell_two_new_items_of_one_category_apart():
    import pandas as pd

    from jobs.models.content import item_tokens

    catalog = pd.DataFrame({"item_id": ["x", "y"], "category_path": ["W > Shoes", "W > Shoes"],
                            "brand": ["Acme", None], "price": [5.0, 500.0],
                            "description": ["Soft leather", None]})
    x, y = item_tokens(catalog)
    assert "c1:w>shoes" in x and "c1:w>shoes" in y
    assert {"brand:acme", "w:soft", "w:leather"} <= set(x) and not any(t.startswith("brand:") for t in y)
    assert [t for t in x if t.startswith("price:")] != [t for t in y if t.startswith("price:")]


def test_index_plan_follows_the_table_and_the_overrides():
    import dataclasses

    assert index_plan(20_000, INDEX).method == "exact"
    assert index_plan(150_000, INDEX).method == "exact"
    big = index_plan(1_000_000, INDEX)
    assert (big.method, big.leaves, big.leaves_to_search, big.soar_lambda, big.reorder) == ("tree", 1000, 200, 1.5, 2000)
    assert big.training_sample_size == 250_000
    forced = index_plan(20_000, dataclasses.replace(INDEX, method="tree", leaves=50, reorder=300))
    assert (forced.method, forced.leaves, forced.leaves_to_search, forced.reorder) == ("tree", 50, 10, 300)
    assert index_plan(20_000, dataclasses.replace(INDEX, method="ah")).reorder == 800
    with pytest.raises(ValueError, match="candidates.index.method"):
        index_plan(20_000, dataclasses.replace(INDEX, method="hnsw"))


def test_search_top_n_counts_what_each_filter_removed_and_refills():
    from jobs.models.ann import build_searcher

    rng = np.random.default_rng(5)
    pv = rng.normal(size=(50, 8)).astype(np.float32)
    iv = rng.normal(size=(200, 8)).astype(np.float32)
    best = np.argsort(-(pv @ iv.T), axis=1)
    # person r: their best item excluded for reason 0, their 2nd and their 150th best for reason 1
    rows = np.repeat(np.arange(50), 3)
    cols = np.stack([best[:, 0], best[:, 1], best[:, 150]], axis=1).reshape(-1)
    reasons = np.tile([0, 1, 1], 50)
    plan = index_plan(200, INDEX)
    searcher = build_searcher(iv, k=10, plan=plan)
    p, i, s, dropped = search_top_n(searcher, plan, pv, n_items=200, excluded_rows=rows, excluded_cols=cols,
                                    excluded_reasons=reasons, n=10, n_reasons=2)
    assert dropped.tolist() == [50, 50]  # the 150th best was never going to be listed: not counted
    assert np.array_equal(i.reshape(50, 10), best[:, 2:12])
