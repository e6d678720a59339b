"""Offline evaluation: splits, ranking metrics at K, beyond-accuracy metrics and popularity baselines.

Engine-light on purpose (numpy + pandas, no Spark): the nightly quality gate and the benchmarks call it on
bounded frames (a held-out sample, or the benchmark's 100k users x 20 items), and every computation is a
sort, a `bincount` or a hash lookup over integer codes: no Python loop per user.

Frames are pandas DataFrames whose columns are named by the module constants below; every public function
takes `user_col=` / `item_col=` overrides (e.g. `user_col="subject_id"` for the contract's recommendation
lists). A missing column raises `ValueError` naming the frame and the column.

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
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

USER_COL = "person_id"
ITEM_COL = "item_id"
SCORE_COL = "score"
RANK_COL = "rank"
TIME_COL = "event_time"
CATEGORY_COL = "category_path"  # the catalog contract's category field
SEGMENT_COL = "segment"

MapDenominator = Literal["n_relevant", "min_k_n_relevant"]
StratifiedMethod = Literal["per_group_sample", "global_random_rank"]


# --------------------------------------------------------------------------------------------- checks

def _require_columns(df: pd.DataFrame, columns: Iterable[str], *, frame: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{frame} must be a pandas DataFrame, got {type(df).__name__}")
    for col in columns:
        if col not in df.columns:
            raise ValueError(f"{frame} is missing column {col!r} (it has: {list(df.columns)})")


def _require_no_nulls(df: pd.DataFrame, columns: Iterable[str], *, frame: str) -> None:
    for col in columns:
        n_null = int(df[col].isna().sum())
        if n_null:
            raise ValueError(f"{frame}: column {col!r} has {n_null} null value(s) out of {len(df)} rows")


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_ratio(ratio: float) -> float:
    if not isinstance(ratio, (float, int, np.floating)) or not 0 < float(ratio) < 1:
        raise ValueError(f"ratio must be a number strictly between 0 and 1, got {ratio!r}")
    return float(ratio)


def _order_key(recs: pd.DataFrame, *, frame: str) -> np.ndarray:
    """Ascending sort key of a recommendations frame: `rank` if present, else minus `score`."""
    if RANK_COL in recs.columns:
        col, sign = RANK_COL, 1.0
    elif SCORE_COL in recs.columns:
        col, sign = SCORE_COL, -1.0
    else:
        raise ValueError(f"{frame} is missing column {RANK_COL!r} or {SCORE_COL!r}: one is needed to order "
                         f"each user's list (it has: {list(recs.columns)})")
    values = pd.to_numeric(recs[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    n_bad = int(np.isnan(values).sum())
    if n_bad:
        raise ValueError(f"{frame}: column {col!r} has {n_bad} null or non-numeric value(s) "
                         f"out of {len(recs)} rows")
    return sign * values


def _as_id_index(ids, *, col: str, name: str) -> pd.Index:
    """Distinct ids from a DataFrame (its `col`), Series, Index, array or list."""
    if isinstance(ids, pd.DataFrame):
        _require_columns(ids, [col], frame=name)
        values = ids[col]
    else:
        values = pd.Series(ids) if not isinstance(ids, (pd.Series, pd.Index)) else ids
    n_null = int(pd.isna(values).sum())
    if n_null:
        raise ValueError(f"{name}: {n_null} null id(s) out of {len(values)}")
    return pd.Index(pd.unique(values))


def _group_positions(sorted_codes: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal codes (input sorted by code)."""
    n = len(sorted_codes)
    idx = np.arange(n)
    if n == 0:
        return idx
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(sorted_codes[1:], sorted_codes[:-1], out=starts[1:])
    return idx - np.maximum.accumulate(np.where(starts, idx, 0))


def _in_sorted(keys: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """Membership of int keys in a sorted unique int array (faster than np.isin for our sizes)."""
    if len(sorted_unique) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.searchsorted(sorted_unique, keys)
    pos[pos == len(sorted_unique)] = 0
    return sorted_unique[pos] == keys


def _round_half_even(x: np.ndarray) -> np.ndarray:
    # Python's round() and numpy's rint both round half to even (round(4.5) == 4); the reference
    # implementations use them, so the split sizes here must too.
    return np.rint(x).astype(np.int64)


# --------------------------------------------------------------------------------------------- splits

def temporal_holdout(interactions: pd.DataFrame, *, cutoff, time_col: str = TIME_COL
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split interactions at a point in time: train strictly before `cutoff`, test on or after it.

    Parameters
    ----------
    interactions : pandas.DataFrame
        Any frame with a datetime column `time_col`.
    cutoff : str, datetime or pandas.Timestamp
        The boundary. A naive cutoff against a tz-aware column is read as UTC (the contract's days are
        UTC); an aware cutoff against a naive column is converted to UTC and compared naively.
    time_col : str
        The datetime column.

    Returns
    -------
    (train, test) : tuple of pandas.DataFrame
        Row subsets of `interactions` (index and columns kept).
    """
    _require_columns(interactions, [time_col], frame="interactions")
    _require_no_nulls(interactions, [time_col], frame="interactions")
    times = interactions[time_col]
    if not pd.api.types.is_datetime64_any_dtype(times):
        raise ValueError(f"interactions: column {time_col!r} must be a datetime column, got dtype {times.dtype}")
    ts = pd.Timestamp(cutoff)
    column_tz = getattr(times.dtype, "tz", None)
    if column_tz is not None and ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    elif column_tz is None and ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    before = (times < ts).to_numpy()
    return interactions[before], interactions[~before]


def random_split_per_user(df: pd.DataFrame, *, ratio: float = 0.75, seed: int = 42,
                          user_col: str = USER_COL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user, a seeded shuffle of the user's rows; the first round(ratio * n) go to train.

    `round` is round-half-to-even (a user with 2 rows and ratio 0.75 keeps round(1.5) = 2 in train and
    has no test row). One `numpy.random.default_rng(seed)` draw per row decides the shuffle, so the
    split depends on the frame's row order and on `seed` only.

    Returns
    -------
    (train, test) : tuple of pandas.DataFrame
        Row subsets of `df` in their original order (index and columns kept).
    """
    ratio = _check_ratio(ratio)
    _require_columns(df, [user_col], frame="df")
    _require_no_nulls(df, [user_col], frame="df")
    codes, _ = pd.factorize(df[user_col])
    random_key = np.random.default_rng(seed).random(len(df))
    order = np.lexsort((random_key, codes))
    position = np.empty(len(df), dtype=np.int64)
    position[order] = _group_positions(codes[order])
    n_train = _round_half_even(ratio * np.bincount(codes))
    to_train = position < n_train[codes]
    return df[to_train], df[~to_train]


def python_stratified_split(df: pd.DataFrame, *, ratio: float = 0.75, filter_by: str = "item", seed: int = 42,
                            min_rating: int = 1, user_col: str = USER_COL, item_col: str = ITEM_COL,
                            method: StratifiedMethod = "per_group_sample"
                            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Re-implementation of Microsoft Recommenders' `python_stratified_split` for one ratio.

    Reference: recommenders-team/recommenders, `recommenders/datasets/python_splitters.py`
    (`_do_stratification(..., is_random=True)`) and `recommenders/datasets/split_utils.py`.
    Both upstream algorithms are replicated row for row (same rows in train/test, same output order,
    same index labels), vectorized:

    ``method="per_group_sample"`` (default; upstream before PR #1802, July 2022, i.e. `reco_utils` and
    early `recommenders`): group by the `filter_by` column (groups in sorted key order, rows of a group in
    their frame order); shuffle each group with ``group.sample(frac=1, random_state=seed)``; the first
    ``round(ratio * n)`` shuffled rows go to train, the rest to test (`split_pandas_data_with_ratios`,
    `np.split`). A fresh `RandomState(seed)` per group means a group of n rows is always permuted by
    ``RandomState(seed).permutation(n)``; that is computed once per distinct group size.

    ``method="global_random_rank"`` (upstream since PR #1802, the current code): one
    ``np.random.seed(seed); np.random.rand(len(df))`` draw for the whole frame; sort by
    ``[filter_by column, random]``; a row goes to train when its 1-based rank within its group is
    ``<= round(ratio * group size)``. Same group sizes as the other method, different rows.

    Common to both: `round` is round-half-to-even (a group of 2 with ratio 0.75 puts both rows in train;
    a group of 6 puts round(4.5) = 4 in train); `min_rating` keeps only groups (by `filter_by`) with at
    least that many rows, before the random draw (upstream default 1 = no filtering).

    Deliberate differences from upstream: the default `filter_by` is ``"item"`` here (upstream:
    ``"user"``); only a single float ratio (no list of ratios); a null key in the `filter_by` column raises
    `ValueError` (upstream's groupby silently drops those rows); the input frame is never modified
    (current upstream adds a ``random`` column to the caller's frame when `min_rating` is 1).

    Parameters
    ----------
    df : pandas.DataFrame
        Interactions with `user_col` and `item_col`.
    ratio : float
        Share of each group that goes to train, strictly between 0 and 1.
    filter_by : {"user", "item"}
        The column the split is stratified on.
    seed : int
        Random seed.
    min_rating : int
        Minimum rows per group; smaller groups are dropped from both outputs.
    user_col, item_col : str
        Column names.
    method : {"per_group_sample", "global_random_rank"}
        Which upstream version to reproduce (see above).

    Returns
    -------
    (train, test) : tuple of pandas.DataFrame
        Row subsets of `df`, in upstream's output order, index and columns kept.
    """
    ratio = _check_ratio(ratio)
    if filter_by not in ("user", "item"):
        raise ValueError(f"filter_by must be 'user' or 'item', got {filter_by!r}")
    if method not in ("per_group_sample", "global_random_rank"):
        raise ValueError(f"method must be 'per_group_sample' or 'global_random_rank', got {method!r}")
    if isinstance(min_rating, bool) or not isinstance(min_rating, (int, np.integer)) or min_rating < 1:
        raise ValueError(f"min_rating must be an integer >= 1, got {min_rating!r}")
    _require_columns(df, [user_col, item_col], frame="df")
    split_col = user_col if filter_by == "user" else item_col
    _require_no_nulls(df, [split_col], frame="df")

    if min_rating > 1:
        codes, _ = pd.factorize(df[split_col])
        df = df[np.bincount(codes)[codes] >= min_rating]
    # sort=True: codes follow the sorted key order, which is the order groupby / sort_values give upstream
    codes, _ = pd.factorize(df[split_col], sort=True)
    sizes = np.bincount(codes)
    n_train = _round_half_even(ratio * sizes)

    if method == "per_group_sample":
        stable = np.argsort(codes, kind="stable")
        frame_position = np.empty(len(df), dtype=np.int64)  # position of the row within its group
        frame_position[stable] = _group_positions(codes[stable])
        row_size = sizes[codes]
        shuffled_position = np.empty(len(df), dtype=np.int64)
        for size in np.unique(sizes):
            rows = np.flatnonzero(row_size == size)
            # sample(frac=1) == RandomState(seed).choice(size, size, replace=False) == permutation(size);
            # the row at frame position p lands at shuffled position argsort(permutation)[p].
            where_it_lands = np.argsort(np.random.RandomState(seed).permutation(int(size)))
            shuffled_position[rows] = where_it_lands[frame_position[rows]]
        order = np.lexsort((shuffled_position, codes))
        rank_in_group = shuffled_position[order]  # 0-based
    else:
        random_key = np.random.RandomState(seed).rand(len(df))  # == np.random.seed(seed); np.random.rand(n)
        order = np.lexsort((random_key, codes))
        rank_in_group = _group_positions(codes[order])
    ordered = df.iloc[order]
    to_train = rank_in_group < n_train[codes[order]]
    return ordered[to_train], ordered[~to_train]


# --------------------------------------------------------------------------------------------- ranking

def top_k(recs: pd.DataFrame, *, k: int, user_col: str = USER_COL, item_col: str = ITEM_COL) -> pd.DataFrame:
    """The first `k` recommendations of each user, sorted by user and a fresh 1-based `rank`.

    Order within a user: `rank` ascending if the frame has it, else `score` descending; ties keep row order.
    Other columns are kept; `rank` is overwritten with the position after sorting.
    """
    k = _check_k(k)
    _require_columns(recs, [user_col, item_col], frame="recs")
    _require_no_nulls(recs, [user_col, item_col], frame="recs")
    key = _order_key(recs, frame="recs")
    codes, _ = pd.factorize(recs[user_col])
    order = np.lexsort((key, codes))
    position = _group_positions(codes[order]) + 1
    keep = position <= k
    out = recs.iloc[order[keep]].reset_index(drop=True)
    out[RANK_COL] = position[keep].astype(np.int64)
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


def ranked_hits(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, user_col: str = USER_COL,
                item_col: str = ITEM_COL) -> RankedHits:
    """Rank each user's recommendations, cut at `k`, and find the hits against the ground truth.

    Users only in `recs` or only in `truth` are ignored. Duplicate (user, item) rows in `truth` count
    once; a duplicate (user, item) in `recs` raises `ValueError` (it would count a hit twice).
    """
    k = _check_k(k)
    _require_columns(recs, [user_col, item_col], frame="recs")
    _require_columns(truth, [user_col, item_col], frame="truth")
    _require_no_nulls(recs, [user_col, item_col], frame="recs")
    _require_no_nulls(truth, [user_col, item_col], frame="truth")
    key = _order_key(recs, frame="recs")

    r_user, user_ids = pd.factorize(recs[user_col])
    r_item, item_ids = pd.factorize(recs[item_col])
    pair = r_user.astype(np.int64) * max(len(item_ids), 1) + r_item
    n_dup = len(pair) - len(pd.unique(pair))
    if n_dup:
        raise ValueError(f"recs: {n_dup} duplicate ({user_col}, {item_col}) row(s); each item may appear "
                         "once per user list")

    # Ground truth in the recs' user code space (-1: the user has no recommendations -> ignored) and in
    # its own item code space (so that items nobody was recommended still count as relevant).
    t_user = pd.Index(user_ids).get_indexer(truth[user_col])
    t_item, truth_item_ids = pd.factorize(truth[item_col])
    n_titems = max(len(truth_item_ids), 1)
    known = t_user >= 0
    truth_pairs = np.unique(t_user[known].astype(np.int64) * n_titems + t_item[known])
    n_relevant_all = np.bincount(truth_pairs // n_titems, minlength=len(user_ids))

    common = n_relevant_all > 0
    new_code = np.cumsum(common) - 1  # recs user code -> common user index
    rows = np.flatnonzero(common[r_user])
    order = rows[np.lexsort((key[rows], r_user[rows]))]
    users_sorted = r_user[order]
    rank = _group_positions(users_sorted) + 1
    in_top = rank <= k
    order, users_sorted, rank = order[in_top], users_sorted[in_top], rank[in_top]

    item_in_truth = pd.Index(truth_item_ids).get_indexer(item_ids)[r_item[order]]
    candidate = item_in_truth >= 0
    is_hit = np.zeros(len(order), dtype=bool)
    is_hit[candidate] = _in_sorted(users_sorted[candidate].astype(np.int64) * n_titems + item_in_truth[candidate],
                                   truth_pairs)
    hit_user = new_code[users_sorted[is_hit]]
    n_users = int(common.sum())
    if n_users == 0:
        log.warning("no user appears in both recs and truth: ranking metrics are 0")
    return RankedHits(k=k, n_relevant=n_relevant_all[common], n_hits=np.bincount(hit_user, minlength=n_users),
                      hit_user=hit_user, hit_rank=rank[is_hit])


def _mean_over_users(per_user: np.ndarray) -> float:
    # Upstream returns 0.0 when there is nothing to average; so do we (the gate then fails loudly).
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


def _average_precision_sums(h: RankedHits) -> np.ndarray:
    hit_number = _group_positions(h.hit_user) + 1  # 1st, 2nd, ... hit of the user (hits sorted by rank)
    return np.bincount(h.hit_user, weights=hit_number / h.hit_rank, minlength=h.n_users)


def _map(h: RankedHits, denominator: MapDenominator) -> float:
    if denominator == "n_relevant":
        norm = h.n_relevant
    elif denominator == "min_k_n_relevant":
        norm = np.minimum(h.n_relevant, h.k)
    else:
        raise ValueError(f"denominator must be 'n_relevant' or 'min_k_n_relevant', got {denominator!r}")
    return _mean_over_users(_average_precision_sums(h) / np.maximum(norm, 1))


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
    by min(k, n_relevant) instead: pass ``denominator="min_k_n_relevant"`` to get that.
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


# --------------------------------------------------------------------------------------------- beyond accuracy

def _maybe_top_k(recs: pd.DataFrame, k: int | None, user_col: str, item_col: str) -> pd.DataFrame:
    if k is None:
        _require_columns(recs, [user_col, item_col], frame="recs")
        _require_no_nulls(recs, [user_col, item_col], frame="recs")
        return recs
    return top_k(recs, k=k, user_col=user_col, item_col=item_col)


def catalog_coverage(recs: pd.DataFrame, catalog_items, *, k: int | None = None, user_col: str = USER_COL,
                     item_col: str = ITEM_COL) -> float:
    """Share of catalog items recommended to at least one user (range 0..1).

    `catalog_items` is a DataFrame with `item_col`, or a Series / Index / array / list of item ids.
    Recommended ids outside the catalog are not counted. With `k`, only each user's top k count.
    Upstream's `catalog_coverage` divides by the items seen in train instead of a catalog.
    """
    recs = _maybe_top_k(recs, k, user_col, item_col)
    catalog = _as_id_index(catalog_items, col=item_col, name="catalog_items")
    if len(catalog) == 0:
        raise ValueError("catalog_items is empty")
    shown = pd.unique(recs[item_col])
    return float(catalog.isin(shown).sum() / len(catalog))


def gini_exposure(recs: pd.DataFrame, catalog_items, *, k: int | None = None, user_col: str = USER_COL,
                  item_col: str = ITEM_COL) -> float:
    """Gini coefficient of how often each catalog item is recommended (0 = even, towards 1 = concentrated).

    Every catalog item counts, those never recommended with exposure 0; recommended ids outside the
    catalog are ignored. With n catalog items and all exposure on one item the value is (n - 1) / n.
    NaN when no catalog item is recommended at all.
    """
    recs = _maybe_top_k(recs, k, user_col, item_col)
    catalog = _as_id_index(catalog_items, col=item_col, name="catalog_items")
    if len(catalog) == 0:
        raise ValueError("catalog_items is empty")
    codes = catalog.get_indexer(recs[item_col])
    exposure = np.sort(np.bincount(codes[codes >= 0], minlength=len(catalog))).astype(np.float64)
    total = exposure.sum()
    if total == 0:
        return float("nan")
    n = len(exposure)
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * exposure) / (n * total))


def novelty(recs: pd.DataFrame, train: pd.DataFrame, *, k: int | None = None, user_col: str = USER_COL,
            item_col: str = ITEM_COL) -> float:
    """Mean over recommendations of -log2(popularity share of the item in train), in bits.

    Share of item i = distinct train users of i / distinct (user, item) pairs in train (upstream's
    `historical_item_novelty`, which assumes a duplicate-free train; duplicates are dropped here).
    Recommended items absent from train have no defined share and are left out of the mean (upstream
    keeps them in the denominator with novelty 0). NaN when no recommended item appears in train.
    """
    recs = _maybe_top_k(recs, k, user_col, item_col)
    _require_columns(train, [user_col, item_col], frame="train")
    _require_no_nulls(train, [user_col, item_col], frame="train")
    pairs = train[[user_col, item_col]].drop_duplicates()
    if len(pairs) == 0:
        return float("nan")
    item_codes, train_items = pd.factorize(pairs[item_col])
    item_novelty = -np.log2(np.bincount(item_codes) / len(pairs))
    codes = pd.Index(train_items).get_indexer(recs[item_col])
    known = codes >= 0
    return float(item_novelty[codes[known]].mean()) if known.any() else float("nan")


def _category_lookup(item_categories, *, item_col: str, category_col: str) -> pd.Series:
    """Item id -> category, from a DataFrame (item_col, category_col) or a Series indexed by item id."""
    if isinstance(item_categories, pd.Series):
        lookup = item_categories
    else:
        _require_columns(item_categories, [item_col, category_col], frame="item_categories")
        lookup = item_categories.set_index(item_col)[category_col]
    n_dup = int(lookup.index.duplicated().sum())
    if n_dup:
        raise ValueError(f"item_categories: {n_dup} duplicate item id(s); each item needs one category")
    return lookup


def intra_list_diversity(recs: pd.DataFrame, item_categories, *, k: int | None = None,
                         user_col: str = USER_COL, item_col: str = ITEM_COL,
                         category_col: str = CATEGORY_COL) -> float:
    """Mean over lists of the share of item pairs whose categories differ (range 0..1).

    `item_categories`: a DataFrame with `item_col` and `category_col`, or a Series category by item id.
    Items without a known category are left out of their list; lists with fewer than two categorised
    items are left out of the mean. Computed from category counts per list (pairs with the same
    category = sum c * (c - 1) / 2), so no pair is materialised. NaN when no list qualifies.
    """
    recs = _maybe_top_k(recs, k, user_col, item_col)
    lookup = _category_lookup(item_categories, item_col=item_col, category_col=category_col)
    category_codes, _ = pd.factorize(lookup)  # a null category -> -1, treated as unknown
    codes = lookup.index.get_indexer(recs[item_col])
    known = codes >= 0
    known[known] = category_codes[codes[known]] >= 0
    user_codes, users = pd.factorize(recs[user_col])
    user_codes, cats = user_codes[known], category_codes[codes[known]]
    n_items = np.bincount(user_codes, minlength=len(users)).astype(np.float64)
    user_category = user_codes.astype(np.int64) * (cats.max(initial=0) + 1) + cats
    _, first, same_cat_counts = np.unique(user_category, return_index=True, return_counts=True)
    same_pairs = np.bincount(user_codes[first], weights=same_cat_counts * (same_cat_counts - 1) / 2.0,
                             minlength=len(users))
    all_pairs = n_items * (n_items - 1) / 2.0
    eligible = n_items >= 2
    if not eligible.any():
        return float("nan")
    return float(np.mean(1.0 - same_pairs[eligible] / all_pairs[eligible]))


# --------------------------------------------------------------------------------------------- all at once

def evaluate_all(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, train: pd.DataFrame | None = None,
                 catalog=None, item_categories=None, user_col: str = USER_COL, item_col: str = ITEM_COL,
                 category_col: str = CATEGORY_COL, map_denominator: MapDenominator = "n_relevant") -> dict:
    """Every metric at `k` in one pass, as a JSON-ready dict (plain floats and ints).

    Keys: ``k``, ``n_users`` (users in both frames), ``n_recommended_users``, ``precision_at_k``,
    ``recall_at_k``, ``ndcg_at_k``, ``map_at_k``, ``mrr_at_k``, ``hit_rate_at_k``; with `catalog`:
    ``catalog_coverage`` and ``gini_exposure``; with `train`: ``novelty``; with `item_categories`:
    ``intra_list_diversity``. Beyond-accuracy metrics use every recommended user's top k (they need no
    ground truth), ranking metrics only the users in both frames.
    """
    started = time.perf_counter()
    hits = ranked_hits(recs, truth, k=k, user_col=user_col, item_col=item_col)
    result: dict = {
        "k": hits.k,
        "n_users": hits.n_users,
        "precision_at_k": _precision(hits),
        "recall_at_k": _recall(hits),
        "ndcg_at_k": _ndcg(hits),
        "map_at_k": _map(hits, map_denominator),
        "mrr_at_k": _mrr(hits),
        "hit_rate_at_k": _hit_rate(hits),
    }
    shown = top_k(recs[[c for c in (user_col, item_col, RANK_COL, SCORE_COL) if c in recs.columns]],
                  k=hits.k, user_col=user_col, item_col=item_col)
    result["n_recommended_users"] = int(shown[user_col].nunique())
    if catalog is not None:
        result["catalog_coverage"] = catalog_coverage(shown, catalog, user_col=user_col, item_col=item_col)
        result["gini_exposure"] = gini_exposure(shown, catalog, user_col=user_col, item_col=item_col)
    if train is not None:
        result["novelty"] = novelty(shown, train, user_col=user_col, item_col=item_col)
    if item_categories is not None:
        result["intra_list_diversity"] = intra_list_diversity(shown, item_categories, user_col=user_col,
                                                              item_col=item_col, category_col=category_col)
    log.debug("evaluate_all: %d rows, %d common users, %.2f s", len(recs), hits.n_users,
              time.perf_counter() - started)
    return result


# --------------------------------------------------------------------------------------------- baselines

def _user_index(users, *, user_col: str, name: str) -> pd.Index:
    return _as_id_index(users, col=user_col, name=name)


def _ranked_lists_to_recs(user_ids: pd.Index, user_list: np.ndarray, lists: list[tuple[np.ndarray, np.ndarray]],
                          item_ids: pd.Index, exclude: pd.DataFrame | None, *, k: int, user_col: str,
                          item_col: str) -> pd.DataFrame:
    """K recommendations per user from ranked candidate lists, skipping the user's excluded items.

    `lists[j]` = (item codes into `item_ids`, scores), best first; user u reads list `user_list[u]`.
    User u takes the first k + e_u candidates of its list, e_u = its number of excluded items, drops the
    excluded ones and keeps the first k: at most e_u are dropped, so k remain whenever the list is long
    enough. Rows: (number of users) x k + (excluded pairs), built with repeat/cumsum, no loop per user.
    """
    n_users, n_items = len(user_ids), max(len(item_ids), 1)
    excluded = np.empty(0, dtype=np.int64)
    if exclude is not None:
        _require_columns(exclude, [user_col, item_col], frame="exclude")
        _require_no_nulls(exclude, [user_col, item_col], frame="exclude")
        e_user = user_ids.get_indexer(exclude[user_col])
        e_item = item_ids.get_indexer(exclude[item_col])
        relevant = (e_user >= 0) & (e_item >= 0)
        excluded = np.unique(e_user[relevant].astype(np.int64) * n_items + e_item[relevant])
    n_excluded = np.bincount(excluded // n_items, minlength=n_users)

    list_items = np.concatenate([items for items, _ in lists]) if lists else np.empty(0, np.int64)
    list_scores = np.concatenate([scores for _, scores in lists]) if lists else np.empty(0)
    list_length = np.array([len(items) for items, _ in lists], dtype=np.int64)
    list_start = np.concatenate(([0], np.cumsum(list_length)[:-1])) if lists else np.empty(0, np.int64)

    take = np.minimum(k + n_excluded, list_length[user_list]) if n_users else np.empty(0, np.int64)
    row_user = np.repeat(np.arange(n_users), take)
    row_offset = np.arange(len(row_user)) - np.repeat(np.cumsum(take) - take, take)
    candidate = list_start[user_list][row_user] + row_offset
    row_item = list_items[candidate]
    keep = ~_in_sorted(row_user.astype(np.int64) * n_items + row_item, excluded)
    row_user, candidate = row_user[keep], candidate[keep]
    rank = _group_positions(row_user) + 1
    keep = rank <= k
    row_user, candidate, rank = row_user[keep], candidate[keep], rank[keep]
    return pd.DataFrame({
        user_col: user_ids.take(row_user),
        item_col: item_ids.take(list_items[candidate]),
        SCORE_COL: list_scores[candidate].astype(np.float64),
        RANK_COL: rank.astype(np.int64),
    })


def _popularity_order(primary: np.ndarray, secondary: np.ndarray, item_sort_code: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Item codes best first by (primary desc, secondary desc, item id asc), and a score encoding that order.

    score = primary + secondary / (max secondary + 1): higher is better, the integer part is the primary
    count and the fraction breaks its ties.
    """
    order = np.lexsort((item_sort_code, -secondary, -primary))
    score = primary + secondary / (secondary.max(initial=0) + 1.0)
    return order, score[order]


def _item_user_counts(pairs: pd.DataFrame, item_ids: pd.Index, *, item_col: str) -> np.ndarray:
    """Distinct users per item (pairs already distinct), aligned with `item_ids`."""
    return np.bincount(item_ids.get_indexer(pairs[item_col]), minlength=len(item_ids)).astype(np.float64)


def popularity_recs(train: pd.DataFrame, users, *, k: int, exclude: pd.DataFrame | None = None, since=None,
                    user_col: str = USER_COL, item_col: str = ITEM_COL, time_col: str = TIME_COL) -> pd.DataFrame:
    """Global most-popular baseline: the same ranked list for every user, minus the user's excluded items.

    Popularity = number of distinct users who interacted with the item in `train`. With `since`, the
    ranking counts only interactions at or after `since` (needs `time_col`); all-time popularity breaks
    its ties, then item id, so items with no recent interaction still fill a list. Candidates are the
    items in `train`.

    Parameters
    ----------
    train : pandas.DataFrame
        Interactions with `user_col`, `item_col` (and `time_col` when `since` is given).
    users : DataFrame with `user_col`, Series, Index, array or list
        Who gets recommendations; duplicates count once.
    k : int
        List length. A user gets fewer only when fewer than k train items remain after exclusion.
    exclude : pandas.DataFrame, optional
        (user, item) pairs not to recommend, e.g. `train` itself.
    since : str, datetime or pandas.Timestamp, optional
        Start of the popularity window.

    Returns
    -------
    pandas.DataFrame
        Columns `user_col`, `item_col`, `score` (float, higher is better), `rank` (1..k), sorted by the
        order of `users` then rank.
    """
    k = _check_k(k)
    needed = [user_col, item_col] + ([time_col] if since is not None else [])
    _require_columns(train, needed, frame="train")
    _require_no_nulls(train, needed, frame="train")
    user_ids = _user_index(users, user_col=user_col, name="users")
    pairs = train[[user_col, item_col]].drop_duplicates()
    item_ids = pd.Index(pd.unique(pairs[item_col]))
    all_time = _item_user_counts(pairs, item_ids, item_col=item_col)
    if since is None:
        primary, secondary = all_time, np.zeros_like(all_time)
    else:
        _, recent = temporal_holdout(train, cutoff=since, time_col=time_col)
        recent_pairs = recent[[user_col, item_col]].drop_duplicates()
        primary, secondary = _item_user_counts(recent_pairs, item_ids, item_col=item_col), all_time
    order, score = _popularity_order(primary, secondary, _sort_codes(item_ids))
    return _ranked_lists_to_recs(user_ids, np.zeros(len(user_ids), dtype=np.int64), [(order, score)], item_ids,
                                 exclude, k=k, user_col=user_col, item_col=item_col)


def _sort_codes(ids: pd.Index) -> np.ndarray:
    """Rank of each id in sorted order (for deterministic id tie-breaks)."""
    codes, _ = pd.factorize(ids, sort=True)
    return codes


def segment_popularity_recs(train: pd.DataFrame, user_segments: pd.DataFrame, *, k: int,
                            exclude: pd.DataFrame | None = None, user_col: str = USER_COL,
                            item_col: str = ITEM_COL, segment_col: str = SEGMENT_COL) -> pd.DataFrame:
    """Most popular within the user's segment, filled from global popularity.

    Per segment, items rank by distinct users of that segment who interacted with them in `train`, then
    by global distinct users, then item id; an item nobody in the segment touched ranks after the segment's
    own items by global popularity, which is the fallback (a segment with no train activity, or a null
    segment, gets the pure global list). One vectorized pass per segment, none per user.

    Parameters
    ----------
    train : pandas.DataFrame
        Interactions with `user_col`, `item_col`.
    user_segments : pandas.DataFrame
        One row per user to recommend for: `user_col`, `segment_col` (null = no segment). Train users
        take their segment from here; train users missing from it count for global popularity only.
    k : int
        List length.
    exclude : pandas.DataFrame, optional
        (user, item) pairs not to recommend.

    Returns
    -------
    pandas.DataFrame
        Columns `user_col`, `item_col`, `score` = segment count + global count / (max global count + 1)
        (higher is better), `rank` (1..k); sorted by the order of `user_segments`, then rank.
    """
    k = _check_k(k)
    _require_columns(train, [user_col, item_col], frame="train")
    _require_no_nulls(train, [user_col, item_col], frame="train")
    _require_columns(user_segments, [user_col, segment_col], frame="user_segments")
    _require_no_nulls(user_segments, [user_col], frame="user_segments")
    n_dup = int(user_segments[user_col].duplicated().sum())
    if n_dup:
        raise ValueError(f"user_segments: {n_dup} duplicate {user_col!r} value(s); each user needs one segment")
    user_ids = pd.Index(user_segments[user_col])
    segment_of_user, segments = pd.factorize(user_segments[segment_col])  # null segment -> -1

    pairs = train[[user_col, item_col]].drop_duplicates()
    item_ids = pd.Index(pd.unique(pairs[item_col]))
    item_sort = _sort_codes(item_ids)
    global_count = _item_user_counts(pairs, item_ids, item_col=item_col)
    global_order, _ = _popularity_order(global_count, np.zeros_like(global_count), item_sort)
    global_fraction = global_count / (global_count.max(initial=0) + 1.0)

    pair_user = user_ids.get_indexer(pairs[user_col])
    pair_segment = np.where(pair_user >= 0, segment_of_user[np.maximum(pair_user, 0)], -1)
    pair_item = item_ids.get_indexer(pairs[item_col])
    segmented = pair_segment >= 0
    per_segment = np.bincount(pair_segment[segmented].astype(np.int64) * len(item_ids) + pair_item[segmented],
                              minlength=len(segments) * len(item_ids)) if len(item_ids) else np.empty(0)
    lists = []
    for s in range(len(segments)):
        # Items the segment touched, by its own count (global count breaks ties), then every other item by
        # global popularity: one list per segment, built with numpy.
        counts = per_segment[s * len(item_ids):(s + 1) * len(item_ids)].astype(np.float64)
        own = np.flatnonzero(counts > 0)
        own = own[np.lexsort((item_sort[own], -global_count[own], -counts[own]))]
        rest = global_order[counts[global_order] == 0]
        order = np.concatenate([own, rest])
        lists.append((order, counts[order] + global_fraction[order]))
    lists.append((global_order, global_fraction[global_order]))  # the list of users without a segment
    user_list = np.where(segment_of_user >= 0, segment_of_user, len(segments)).astype(np.int64)
    return _ranked_lists_to_recs(user_ids, user_list, lists, item_ids, exclude, k=k, user_col=user_col,
                                 item_col=item_col)
