"""Popularity baselines: the global most-popular list and the most popular within the user's segment.

Both return K recommendations per user in the recommendations shape (`user_col`, `item_col`, `score`,
`rank`), minus each user's excluded (user, item) pairs, built without a Python loop per user.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import (ITEM_COL, RANK_COL, SCORE_COL, SEGMENT_COL, TIME_COL, USER_COL, _as_id_index, _check_k,
                      _group_positions, _in_sorted, _require_columns, _require_no_nulls, _sorted_unique)
from .splits import temporal_holdout


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
