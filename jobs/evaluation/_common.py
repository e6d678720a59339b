"""Column names and input checks shared by the evaluation modules, each defined once.

`metrics`, `splits` and `baselines` all validate frames the same way (a missing column raises `ValueError`
naming the frame and the column) and share a few vectorized helpers over integer codes; they live here so
that no module keeps its own copy.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

USER_COL = "person_id"
ITEM_COL = "item_id"
SCORE_COL = "score"
RANK_COL = "rank"
TIME_COL = "event_time"
CATEGORY_COL = "category_path"  # the catalog contract's category field
SEGMENT_COL = "segment"


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
