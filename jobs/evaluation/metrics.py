"""Ranking metrics at K (NDCG, precision, recall, MAP, MRR, hit rate), beyond-accuracy metrics (catalog
coverage, Gini exposure, novelty, intra-list diversity) and `evaluate_all`, which computes them in one pass.

Recommendations are ranked per user by `rank` (ascending, 1 = shown first) when the frame has that column,
else by `score` (descending). Ties keep the frame's row order, and ranks are re-numbered 1..n per user
after sorting, as Microsoft Recommenders' `get_top_k_items` does.

Ranking metrics follow Microsoft Recommenders' `recommenders/evaluation/python_evaluation.py`
(recommenders-team/recommenders): binary relevance, averaged over the users that appear in BOTH the
recommendations and the ground truth; a common user without any hit counts as 0. Where their code and
this module differ, the function's docstring says so.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ._common import (CATEGORY_COL, ITEM_COL, RANK_COL, USER_COL, _as_id_index, _check_k, _group_positions,
                      _in_sorted, _require_columns, _require_no_nulls, _sorted_unique)
from ._lists import _lists, _Lists

log = logging.getLogger(__name__)

MapDenominator = Literal["n_relevant", "min_k_n_relevant"]


# --------------------------------------------------------------------------------------------- ranking

def top_k(recs: pd.DataFrame, *, k: int, user_col: str = USER_COL, item_col: str = ITEM_COL) -> pd.DataFrame:
    """The first `k` recommendations of each user, sorted by user and a fresh 1-based `rank`.

    Order within a user: `rank` ascending if the frame has it, else `score` descending; ties keep row order.
    Other columns are kept; `rank` is overwritten with the position after sorting.
    """
    lists = _lists(recs, k=_check_k(k), user_col=user_col, item_col=item_col)
    out = recs.iloc[lists.row].reset_index(drop=True)
    out[RANK_COL] = lists.rank
    return out


@dataclass(frozen=True)
class RankedHits:
    """What every ranking metric needs, for the users in both frames (one pass, shared by `evaluate_all`).

    Attributes
    ----------
    k : int
        The cut-off.
    n_relevant : numpy.ndarray
        Per common user: number of distinct ground-truth items.
    n_hits : numpy.ndarray
        Per common user: ground-truth items among the first k recommendations.
    hit_user : numpy.ndarray
        Per hit, the common user's index (into `n_relevant`); hits sorted by user, then rank.
    hit_rank : numpy.ndarray
        Per hit, its 1-based rank in the user's list.
    """

    k: int
    n_relevant: np.ndarray
    n_hits: np.ndarray
    hit_user: np.ndarray
    hit_rank: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.n_relevant)


def _hits(lists: _Lists, truth: pd.DataFrame, *, k: int, user_col: str, item_col: str) -> RankedHits:
    _require_columns(truth, [user_col, item_col], frame="truth")
    _require_no_nulls(truth, [user_col, item_col], frame="truth")
    for col, ids in ((user_col, lists.user_ids), (item_col, lists.item_ids)):
        # numeric ids on one side and strings on the other would silently match nothing
        if pd.api.types.is_numeric_dtype(ids.dtype) != pd.api.types.is_numeric_dtype(truth[col].dtype):
            raise ValueError(f"column {col!r} has dtype {ids.dtype} in recs but {truth[col].dtype} in truth")
    # Ground truth in the recs' user code space (-1: the user has no recommendations -> ignored) and in
    # its own item code space (so that items nobody was recommended still count as relevant). Only the
    # distinct ids are looked up, then expanded through the codes.
    t_user, t_user_ids = pd.factorize(truth[user_col])
    t_user = lists.user_ids.get_indexer(t_user_ids)[t_user]
    t_item, t_item_ids = pd.factorize(truth[item_col])
    n_titems = max(len(t_item_ids), 1)
    known = t_user >= 0
    truth_pairs = _sorted_unique(t_user[known].astype(np.int64) * n_titems + t_item[known])
    n_relevant_all = np.bincount(truth_pairs // n_titems, minlength=len(lists.user_ids))

    common = n_relevant_all > 0
    new_code = np.cumsum(common) - 1  # recs user code -> common user index
    in_common = common[lists.user]
    users, rank = lists.user[in_common], lists.rank[in_common]
    item_in_truth = pd.Index(t_item_ids).get_indexer(lists.item_ids)[lists.item[in_common]]
    candidate = np.flatnonzero(item_in_truth >= 0)
    is_hit = np.zeros(len(users), dtype=bool)
    is_hit[candidate] = _in_sorted(users[candidate].astype(np.int64) * n_titems + item_in_truth[candidate],
                                   truth_pairs)
    hit_user = new_code[users[is_hit]]
    n_users = int(common.sum())
    if n_users == 0:
        log.warning("no user appears in both recs and truth: ranking metrics are 0")
    return RankedHits(k=k, n_relevant=n_relevant_all[common], n_hits=np.bincount(hit_user, minlength=n_users),
                      hit_user=hit_user, hit_rank=rank[is_hit])


def ranked_hits(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, user_col: str = USER_COL,
                item_col: str = ITEM_COL) -> RankedHits:
    """Rank each user's recommendations, cut at `k`, and find the hits against the ground truth.

    Users only in `recs` or only in `truth` are ignored. Duplicate (user, item) rows in `truth` count
    once; a duplicate (user, item) in `recs` raises `ValueError` (it would count a hit twice).
    """
    k = _check_k(k)
    lists = _lists(recs, k=k, user_col=user_col, item_col=item_col)
    return _hits(lists, truth, k=k, user_col=user_col, item_col=item_col)


def _mean_over_users(per_user: np.ndarray) -> float:
    # Upstream returns 0.0 when there is nothing to average; so do we (a gate on it then fails loudly).
    return float(per_user.mean()) if len(per_user) else 0.0


def _precision(h: RankedHits) -> float:
    return _mean_over_users(h.n_hits / h.k)


def _recall(h: RankedHits) -> float:
    return _mean_over_users(h.n_hits / np.maximum(h.n_relevant, 1))


def _ndcg(h: RankedHits) -> float:
    discount = 1.0 / np.log2(np.arange(2, h.k + 2))  # rank r -> 1 / log2(1 + r)
    ideal = np.concatenate(([0.0], np.cumsum(discount)))  # ideal[m] = best DCG with m relevant items
    dcg = np.bincount(h.hit_user, weights=discount[h.hit_rank - 1], minlength=h.n_users)
    return _mean_over_users(dcg / ideal[np.minimum(h.n_relevant, h.k)])


def _map(h: RankedHits, denominator: MapDenominator) -> float:
    if denominator == "n_relevant":
        norm = h.n_relevant
    elif denominator == "min_k_n_relevant":
        norm = np.minimum(h.n_relevant, h.k)
    else:
        raise ValueError(f"denominator must be 'n_relevant' or 'min_k_n_relevant', got {denominator!r}")
    hit_number = _group_positions(h.hit_user) + 1  # 1st, 2nd, ... hit of the user (hits sorted by rank)
    precision_sums = np.bincount(h.hit_user, weights=hit_number / h.hit_rank, minlength=h.n_users)
    return _mean_over_users(precision_sums / np.maximum(norm, 1))


def _mrr(h: RankedHits) -> float:
    first_hit = np.ones(len(h.hit_user), dtype=bool)
    first_hit[1:] = h.hit_user[1:] != h.hit_user[:-1]
    reciprocal = np.zeros(h.n_users)
    reciprocal[h.hit_user[first_hit]] = 1.0 / h.hit_rank[first_hit]
    return _mean_over_users(reciprocal)


def _hit_rate(h: RankedHits) -> float:
    return _mean_over_users((h.n_hits > 0).astype(np.float64))


def precision_at_k(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, user_col: str = USER_COL,
                   item_col: str = ITEM_COL) -> float:
    """Mean over common users of hits@k / k (range 0..1).

    As upstream (and Spark's `precisionAt`), the denominator is k even when a list is shorter than k or
    the user has fewer than k relevant items, so the best achievable value can be below 1.
    """
    return _precision(ranked_hits(recs, truth, k=k, user_col=user_col, item_col=item_col))


def recall_at_k(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, user_col: str = USER_COL,
                item_col: str = ITEM_COL) -> float:
    """Mean over common users of hits@k / the user's number of (distinct) test items (range 0..1)."""
    return _recall(ranked_hits(recs, truth, k=k, user_col=user_col, item_col=item_col))


def ndcg_at_k(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, user_col: str = USER_COL,
              item_col: str = ITEM_COL) -> float:
    """Mean over common users of DCG@k / IDCG@k with binary gain (range 0..1).

    DCG = sum over hits in the top k of 1 / log2(1 + rank); IDCG is the DCG of a list with the user's
    relevant items first, over min(k, n_relevant) positions. The log base cancels in the ratio, so this
    equals upstream's default (natural log). Upstream's `ndcg_at_k` also averages in, as 0, the users
    that are only in the ground truth (its outer merge with the full truth frame); here they are ignored,
    like in every other metric.
    """
    return _ndcg(ranked_hits(recs, truth, k=k, user_col=user_col, item_col=item_col))


def map_at_k(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, user_col: str = USER_COL,
             item_col: str = ITEM_COL, denominator: MapDenominator = "n_relevant") -> float:
    """Mean average precision at k (range 0..1).

    Per common user: the sum of precision@rank at each hit rank within the top k, divided by the user's
    number of (distinct) test items, as the benchmark protocol requires. That is upstream's `map`
    restricted to the top k. Upstream's current `map_at_k` (like Spark's `meanAveragePrecisionAt`) divides
    by min(k, n_relevant) instead: pass ``denominator="min_k_n_relevant"`` for that.
    """
    return _map(ranked_hits(recs, truth, k=k, user_col=user_col, item_col=item_col), denominator)


def mrr_at_k(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, user_col: str = USER_COL,
             item_col: str = ITEM_COL) -> float:
    """Mean over common users of 1 / rank of the first hit within the top k (0 without a hit)."""
    return _mrr(ranked_hits(recs, truth, k=k, user_col=user_col, item_col=item_col))


def hit_rate_at_k(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, user_col: str = USER_COL,
                  item_col: str = ITEM_COL) -> float:
    """Share of common users with at least one hit within the top k."""
    return _hit_rate(ranked_hits(recs, truth, k=k, user_col=user_col, item_col=item_col))


# ------------------------------------------------------------------------------------------ beyond accuracy

def _optional_lists(recs: pd.DataFrame, k: int | None, user_col: str, item_col: str) -> _Lists:
    return _lists(recs, k=None if k is None else _check_k(k), user_col=user_col, item_col=item_col)


def _catalog_index(catalog_items, *, item_col: str) -> pd.Index:
    catalog = _as_id_index(catalog_items, col=item_col, name="catalog_items")
    if len(catalog) == 0:
        raise ValueError("catalog_items is empty")
    return catalog


def _coverage(lists: _Lists, catalog: pd.Index) -> float:
    shown = lists.item_ids[np.bincount(lists.item, minlength=len(lists.item_ids)) > 0]
    return float(catalog.isin(shown).sum() / len(catalog))


def _gini(lists: _Lists, catalog: pd.Index) -> float:
    codes = catalog.get_indexer(lists.item_ids)[lists.item]
    exposure = np.sort(np.bincount(codes[codes >= 0], minlength=len(catalog))).astype(np.float64)
    total = exposure.sum()
    if total == 0:
        return float("nan")
    n = len(exposure)
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * exposure) / (n * total))


def _novelty(lists: _Lists, train: pd.DataFrame, *, user_col: str, item_col: str) -> float:
    _require_columns(train, [user_col, item_col], frame="train")
    _require_no_nulls(train, [user_col, item_col], frame="train")
    t_user, _ = pd.factorize(train[user_col])
    t_item, train_items = pd.factorize(train[item_col])
    pairs = _sorted_unique(t_user.astype(np.int64) * max(len(train_items), 1) + t_item)
    if len(pairs) == 0:
        return float("nan")
    users_per_item = np.bincount(pairs % max(len(train_items), 1), minlength=len(train_items))
    with np.errstate(divide="ignore"):
        item_novelty = -np.log2(users_per_item / len(pairs))
    codes = pd.Index(train_items).get_indexer(lists.item_ids)[lists.item]
    known = codes >= 0
    return float(item_novelty[codes[known]].mean()) if known.any() else float("nan")


def _category_codes(item_categories, item_ids: pd.Index, *, item_col: str, category_col: str) -> np.ndarray:
    """Category code of each id in `item_ids` (-1: unknown item or null category)."""
    if isinstance(item_categories, pd.Series):
        lookup = item_categories
    else:
        _require_columns(item_categories, [item_col, category_col], frame="item_categories")
        lookup = item_categories.set_index(item_col)[category_col]
    n_dup = int(lookup.index.duplicated().sum())
    if n_dup:
        raise ValueError(f"item_categories: {n_dup} duplicate item id(s); each item needs one category")
    category_codes, _ = pd.factorize(lookup)  # null category -> -1
    position = lookup.index.get_indexer(item_ids)
    return np.where(position >= 0, category_codes[np.maximum(position, 0)], -1)


def _intra_list_diversity(lists: _Lists, item_categories, *, item_col: str, category_col: str) -> float:
    category = _category_codes(item_categories, lists.item_ids, item_col=item_col,
                               category_col=category_col)[lists.item]
    known = category >= 0
    users, category = lists.user[known], category[known]
    n_users = len(lists.user_ids)
    n_items = np.bincount(users, minlength=n_users).astype(np.float64)
    # Pairs with the same category, from counts per (user, category): sum c * (c - 1) / 2.
    cell, cells = pd.factorize(users.astype(np.int64) * (category.max(initial=0) + 1) + category)
    per_cell = np.bincount(cell, minlength=len(cells)).astype(np.float64)
    cell_user = np.asarray(cells) // (category.max(initial=0) + 1)
    same_pairs = np.bincount(cell_user, weights=per_cell * (per_cell - 1) / 2.0, minlength=n_users)
    all_pairs = n_items * (n_items - 1) / 2.0
    eligible = n_items >= 2
    if not eligible.any():
        return float("nan")
    return float(np.mean(1.0 - same_pairs[eligible] / all_pairs[eligible]))


def catalog_coverage(recs: pd.DataFrame, catalog_items, *, k: int | None = None, user_col: str = USER_COL,
                     item_col: str = ITEM_COL) -> float:
    """Share of catalog items recommended to at least one user (range 0..1).

    `catalog_items` is a DataFrame with `item_col`, or a Series / Index / array / list of item ids.
    Recommended ids outside the catalog are not counted. With `k`, only each user's top k count.
    (Upstream's `catalog_coverage` divides by the distinct items in train instead of a catalog.)
    """
    catalog = _catalog_index(catalog_items, item_col=item_col)
    return _coverage(_optional_lists(recs, k, user_col, item_col), catalog)


def gini_exposure(recs: pd.DataFrame, catalog_items, *, k: int | None = None, user_col: str = USER_COL,
                  item_col: str = ITEM_COL) -> float:
    """Gini coefficient of how often each catalog item is recommended (0 = even, towards 1 = concentrated).

    Every catalog item counts, those never recommended with exposure 0; recommended ids outside the
    catalog are ignored. With n catalog items and all exposure on one item the value is (n - 1) / n.
    NaN when no catalog item is recommended at all. With `k`, only each user's top k count.
    """
    catalog = _catalog_index(catalog_items, item_col=item_col)
    return _gini(_optional_lists(recs, k, user_col, item_col), catalog)


def novelty(recs: pd.DataFrame, train: pd.DataFrame, *, k: int | None = None, user_col: str = USER_COL,
            item_col: str = ITEM_COL) -> float:
    """Mean over recommendations of -log2(popularity share of the item in train), in bits.

    Share of item i = distinct train users of i / distinct (user, item) pairs in train (upstream's
    `historical_item_novelty`, which assumes a duplicate-free train; duplicates are dropped here).
    Recommended items absent from train have no defined share and are left out of the mean (upstream
    keeps them in the denominator with novelty 0). NaN when no recommended item appears in train.
    """
    return _novelty(_optional_lists(recs, k, user_col, item_col), train, user_col=user_col, item_col=item_col)


def intra_list_diversity(recs: pd.DataFrame, item_categories, *, k: int | None = None,
                         user_col: str = USER_COL, item_col: str = ITEM_COL,
                         category_col: str = CATEGORY_COL) -> float:
    """Mean over lists of the share of item pairs whose categories differ (range 0..1).

    `item_categories`: a DataFrame with `item_col` and `category_col`, or a Series of categories indexed by
    item id. Items without a known category are left out of their list; lists with fewer than two
    categorised items are left out of the mean. Computed from category counts per list (pairs with the
    same category = sum c * (c - 1) / 2), so no pair is materialised. NaN when no list qualifies.
    """
    return _intra_list_diversity(_optional_lists(recs, k, user_col, item_col), item_categories,
                                 item_col=item_col, category_col=category_col)


# --------------------------------------------------------------------------------------------- all at once

def evaluate_all(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, train: pd.DataFrame | None = None,
                 catalog=None, item_categories=None, user_col: str = USER_COL, item_col: str = ITEM_COL,
                 category_col: str = CATEGORY_COL, map_denominator: MapDenominator = "n_relevant") -> dict:
    """Every metric at `k` from one ranking pass, as a JSON-ready dict (plain floats and ints).

    Keys: ``k``, ``n_users`` (users in both frames), ``n_recommended_users``, ``precision_at_k``,
    ``recall_at_k``, ``ndcg_at_k``, ``map_at_k``, ``mrr_at_k``, ``hit_rate_at_k``; with `catalog`:
    ``catalog_coverage`` and ``gini_exposure``; with `train`: ``novelty``; with `item_categories`:
    ``intra_list_diversity``. Beyond-accuracy metrics use every recommended user's top k (they need no
    ground truth); ranking metrics only the users in both frames.
    """
    started = time.perf_counter()
    k = _check_k(k)
    lists = _lists(recs, k=k, user_col=user_col, item_col=item_col)
    hits = _hits(lists, truth, k=k, user_col=user_col, item_col=item_col)
    result: dict = {
        "k": k,
        "n_users": hits.n_users,
        "n_recommended_users": len(lists.user_ids),
        "precision_at_k": _precision(hits),
        "recall_at_k": _recall(hits),
        "ndcg_at_k": _ndcg(hits),
        "map_at_k": _map(hits, map_denominator),
        "mrr_at_k": _mrr(hits),
        "hit_rate_at_k": _hit_rate(hits),
    }
    if catalog is not None:
        catalog_index = _catalog_index(catalog, item_col=item_col)
        result["catalog_coverage"] = _coverage(lists, catalog_index)
        result["gini_exposure"] = _gini(lists, catalog_index)
    if train is not None:
        result["novelty"] = _novelty(lists, train, user_col=user_col, item_col=item_col)
    if item_categories is not None:
        result["intra_list_diversity"] = _intra_list_diversity(lists, item_categories, item_col=item_col,
                                                               category_col=category_col)
    log.debug("evaluate_all: %d rows, %d common users, %.2f s", len(recs), hits.n_users,
              time.perf_counter() - started)
    return result
