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
        raise TypeError(f"{frame} must be a pandas DataFrame, got {type(df).__name__}")
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


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    # Sort + drop repeats: several times faster than np.unique on millions of int64 keys (numpy 2.4).
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


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
        raise ValueError(f"interactions: column {time_col!r} must be a datetime column, "
                         f"got dtype {times.dtype}")
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

@dataclass(frozen=True)
class _Lists:
    """Each user's list (cut at k when given) with ids as integer codes; rows sorted by user, then rank."""

    row: np.ndarray  # position of the row in the recs frame
    user: np.ndarray  # code into user_ids
    item: np.ndarray  # code into item_ids
    rank: np.ndarray  # 1-based, re-numbered after sorting
    user_ids: pd.Index
    item_ids: pd.Index


def _sorted_order(codes: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Row order by (code, key), ties in row order; O(n) when the frame is already sorted (the usual case)."""
    if len(codes) < 2:
        return np.arange(len(codes))
    same_user = codes[1:] == codes[:-1]
    if np.all(codes[1:] >= codes[:-1]) and np.all(~same_user | (key[1:] >= key[:-1])):
        return np.arange(len(codes))
    by_key = np.argsort(key, kind="stable")
    return by_key[np.argsort(codes[by_key], kind="stable")]


def _lists(recs: pd.DataFrame, *, k: int | None, user_col: str, item_col: str) -> _Lists:
    """Validate a recommendations frame, rank each user's list and cut it at `k` (None: no cut, no order)."""
    _require_columns(recs, [user_col, item_col], frame="recs")
    _require_no_nulls(recs, [user_col, item_col], frame="recs")
    user, user_ids = pd.factorize(recs[user_col])
    item, item_ids = pd.factorize(recs[item_col])
    pair = user.astype(np.int64) * max(len(item_ids), 1) + item
    n_dup = len(pair) - len(_sorted_unique(pair))
    if n_dup:
        raise ValueError(f"recs: {n_dup} duplicate ({user_col}, {item_col}) row(s); each item may appear "
                         "once per user list")
    if k is None:
        row = np.arange(len(recs))
        return _Lists(row=row, user=user, item=item, rank=np.zeros(len(recs), dtype=np.int64),
                      user_ids=pd.Index(user_ids), item_ids=pd.Index(item_ids))
    order = _sorted_order(user, _order_key(recs, frame="recs"))
    rank = _group_positions(user[order]) + 1
    row = order[rank <= k]
    return _Lists(row=row, user=user[row], item=item[row], rank=rank[rank <= k],
                  user_ids=pd.Index(user_ids), item_ids=pd.Index(item_ids))


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

# --------------------------------------------------------------------------------------------- baselines

def _excluded_pairs(exclude: pd.DataFrame | None, user_ids: pd.Index, item_ids: pd.Index, *, user_col: str,
                    item_col: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys user_code * n_items + item_code of the excluded pairs, and their count per user."""
    n_items = max(len(item_ids), 1)
    excluded = np.empty(0, dtype=np.int64)
    if exclude is not None:
        _require_columns(exclude, [user_col, item_col], frame="exclude")
        _require_no_nulls(exclude, [user_col, item_col], frame="exclude")
        e_user = user_ids.get_indexer(exclude[user_col])
        e_item = item_ids.get_indexer(exclude[item_col])
        relevant = (e_user >= 0) & (e_item >= 0)
        excluded = _sorted_unique(e_user[relevant].astype(np.int64) * n_items + e_item[relevant])
    return excluded, np.bincount(excluded // n_items, minlength=len(user_ids))


def _ranked_lists_to_recs(user_ids: pd.Index, user_list: np.ndarray,
                          lists: list[tuple[np.ndarray, np.ndarray]], item_ids: pd.Index,
                          excluded: np.ndarray, n_excluded: np.ndarray, *, k: int, user_col: str,
                          item_col: str) -> pd.DataFrame:
    """K recommendations per user from ranked candidate lists, skipping the user's excluded items.

    `lists[j]` = (item codes into `item_ids`, scores), best first; user u reads list `user_list[u]`.
    User u takes the first k + e_u candidates of its list, e_u = its number of excluded items, drops the
    excluded ones and keeps the first k: at most e_u are dropped, so k remain whenever the list is long
    enough. Rows: (number of users) x k + (excluded pairs), built with repeat/cumsum, no loop per user.
    """
    n_users, n_items = len(user_ids), max(len(item_ids), 1)
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
                    user_col: str = USER_COL, item_col: str = ITEM_COL,
                    time_col: str = TIME_COL) -> pd.DataFrame:
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
    user_ids = _as_id_index(users, col=user_col, name="users")
    pairs = train[[user_col, item_col]].drop_duplicates()
    if len(pairs) == 0:
        raise ValueError("train has no interactions: popularity is undefined")
    item_ids = pd.Index(pd.unique(pairs[item_col]))
    all_time = _item_user_counts(pairs, item_ids, item_col=item_col)
    if since is None:
        primary, secondary = all_time, np.zeros_like(all_time)
    else:
        _, recent = temporal_holdout(train, cutoff=since, time_col=time_col)
        recent_pairs = recent[[user_col, item_col]].drop_duplicates()
        primary, secondary = _item_user_counts(recent_pairs, item_ids, item_col=item_col), all_time
    order, score = _popularity_order(primary, secondary, _sort_codes(item_ids))
    excluded, n_excluded = _excluded_pairs(exclude, user_ids, item_ids, user_col=user_col, item_col=item_col)
    everyone_reads_list_0 = np.zeros(len(user_ids), dtype=np.int64)
    return _ranked_lists_to_recs(user_ids, everyone_reads_list_0, [(order, score)], item_ids, excluded,
                                 n_excluded, k=k, user_col=user_col, item_col=item_col)


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
        raise ValueError(f"user_segments: {n_dup} duplicate {user_col!r} value(s); "
                         "each user needs one segment")
    user_ids = pd.Index(user_segments[user_col])
    segment_of_user, segments = pd.factorize(user_segments[segment_col])  # null segment -> -1

    pairs = train[[user_col, item_col]].drop_duplicates()
    if len(pairs) == 0:
        raise ValueError("train has no interactions: popularity is undefined")
    item_ids = pd.Index(pd.unique(pairs[item_col]))
    item_sort = _sort_codes(item_ids)
    global_count = _item_user_counts(pairs, item_ids, item_col=item_col)
    global_order, _ = _popularity_order(global_count, np.zeros_like(global_count), item_sort)
    global_fraction = global_count / (global_count.max(initial=0) + 1.0)

    excluded, n_excluded = _excluded_pairs(exclude, user_ids, item_ids, user_col=user_col, item_col=item_col)
    user_list = np.where(segment_of_user >= 0, segment_of_user, len(segments)).astype(np.int64)
    # A list only needs as many candidates as its most-excluding user can consume.
    need = np.full(len(segments) + 1, k, dtype=np.int64)
    np.maximum.at(need, user_list, k + n_excluded)

    # Distinct users per (segment, item), as sorted cells; a train user missing from user_segments gets
    # index -1, which reads the appended -1 = no segment.
    pair_segment = np.append(segment_of_user, -1)[user_ids.get_indexer(pairs[user_col])]
    segmented = pair_segment >= 0
    cells = np.sort(pair_segment[segmented].astype(np.int64) * len(item_ids)
                    + item_ids.get_indexer(pairs[item_col])[segmented])
    cell_start = np.flatnonzero(np.concatenate(([True], cells[1:] != cells[:-1]))) if len(cells) else cells
    cell_keys = cells[cell_start]
    cell_count = np.diff(np.append(cell_start, len(cells))).astype(np.float64)
    cell_segment, cell_item = cell_keys // len(item_ids), cell_keys % len(item_ids)
    segment_bounds = np.searchsorted(cell_segment, np.arange(len(segments) + 1))

    lists = []
    for s in range(len(segments)):
        # The segment's own items by its count (global count, then id, break ties), then the globally most
        # popular items it has not touched: one list per segment, none per user.
        own = cell_item[segment_bounds[s]:segment_bounds[s + 1]]
        own_count = cell_count[segment_bounds[s]:segment_bounds[s + 1]]
        ranking = np.lexsort((item_sort[own], -global_count[own], -own_count))
        own, own_count = own[ranking][:need[s]], own_count[ranking][:need[s]]
        head = global_order[:need[s] + len(own)]  # removing `own` from it leaves at least need[s]
        rest = head[~np.isin(head, own)]
        lists.append((np.concatenate([own, rest]),
                      np.concatenate([own_count + global_fraction[own], global_fraction[rest]])))
    lists.append((global_order[:need[-1]], global_fraction[global_order[:need[-1]]]))  # no segment
    return _ranked_lists_to_recs(user_ids, user_list, lists, item_ids, excluded, n_excluded, k=k,
                                 user_col=user_col, item_col=item_col)
