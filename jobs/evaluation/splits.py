"""Train/test splits: temporal holdout, per-user random split, and a Recommenders-compatible stratified split.

Every split returns row subsets of its input (index and columns kept) and never modifies the input frame.
`holdout_test_start` is the one definition of the nightly gate's holdout cutoff day.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

import numpy as np
import pandas as pd

from ._common import ITEM_COL, TIME_COL, USER_COL, _group_positions, _require_columns, _require_no_nulls

StratifiedMethod = Literal["per_group_sample", "global_random_rank"]


def _check_ratio(ratio: float) -> float:
    if not isinstance(ratio, (float, int, np.floating)) or not 0 < float(ratio) < 1:
        raise ValueError(f"ratio must be a number strictly between 0 and 1, got {ratio!r}")
    return float(ratio)


def _round_half_even(x: np.ndarray) -> np.ndarray:
    # Python's round() and numpy's rint both round half to even (round(4.5) == 4); the reference
    # implementations use them, so the split sizes here must too.
    return np.rint(x).astype(np.int64)


def holdout_test_start(run_date: str, holdout_days: int) -> dt.date:
    """First day of the gate's temporal holdout test part: date(run_date) - (holdout_days - 1) days.

    The one definition of the nightly holdout cutoff, shared by the interactions stage (Spark) and the
    holdout loader (pandas). Train is everything before 00:00 UTC of the returned day; test is that day
    through `run_date`, inclusive, i.e. the last `holdout_days` UTC days of the run. With
    ``holdout_days=1`` the test part is the run date alone. E.g. run_date "2026-10-29", holdout_days 7
    -> 2026-10-23 (test = 23..29 October). `temporal_holdout(df, cutoff=holdout_test_start(...))` splits
    a pandas frame on it (a date cutoff is read as 00:00 UTC of that day).

    Parameters
    ----------
    run_date : str
        The run's date, ISO ``YYYY-MM-DD``.
    holdout_days : int
        Number of days in the test part, >= 1.

    Returns
    -------
    datetime.date
        The first test day.
    """
    if isinstance(holdout_days, bool) or not isinstance(holdout_days, (int, np.integer)) or holdout_days < 1:
        raise ValueError(f"holdout_days must be a positive integer, got {holdout_days!r}")
    return dt.date.fromisoformat(run_date) - dt.timedelta(days=int(holdout_days) - 1)


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
