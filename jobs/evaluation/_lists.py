"""A recommendations frame as ranked per-user lists over integer codes: the one pass every metric starts from.

Recommendations are ranked per user by `rank` (ascending, 1 = shown first) when the frame has that column,
else by `score` (descending). Ties keep the frame's row order, and ranks are re-numbered 1..n per user.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import RANK_COL, SCORE_COL, _group_positions, _require_columns, _require_no_nulls, _sorted_unique


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
