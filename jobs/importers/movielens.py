"""MovieLens 100K (943 users, 1,682 movies, 100,000 ratings, 1997-09-20..1998-04-22) as contract raw inputs.

The pipeline learns from implicit feedback, so every rating, whatever its value, becomes one `purchase` of the
movie (quantity 1, price 1.0); the rating itself is kept nowhere. A movie's `category_path` is
`Movies > <first genre>`, first in the order of `u.genre` (the column order of `u.item`: unknown, Action, Adventure,
Animation, Children's, Comedy, ...). That choice is simple and stable but favours the genres early in that list: a
movie flagged Action and Drama is an Action movie. Movies with no genre flag are `Movies > Unknown`.

Files (see `shared/data/ml-100k/README` and `PROVENANCE.md`): `u.data` tab-separated, `u.item`, `u.user` and
`u.genre` pipe-separated, `u.item` in latin-1. The data's terms forbid redistribution: keep imports internal.
"""
from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jobs.storage import io
from jobs.storage.layout import Layout
from jobs.importers import (
    check_no_foreign_partitions,
    daily_catalogs,
    day_range,
    split_by_day,
    to_contract_table,
    utc_days,
    write_daily,
)

log = logging.getLogger(__name__)

DROP_REASONS = ("unknown_item", "bad_timestamp", "duplicate_rating")
ITEM_FIXED_COLUMNS = ("movie_id", "title", "release_date", "video_release_date", "imdb_url")
AGE_BANDS = ((0, "<18"), (18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-54"), (55, "55-64"), (65, "65+"))


@dataclass(frozen=True)
class MovieLensFiles:
    """The parsed source files.

    Attributes
    ----------
    ratings : pandas.DataFrame
        `user`, `item`, `rating`, `timestamp` (unix seconds), all int64.
    movies : pandas.DataFrame
        `movie_id` (int64), `title`, `release_date`, `video_release_date`, `imdb_url` (str), then one 0/1 int
        column per genre, named as in `genres`.
    users : pandas.DataFrame
        `user` (int64), `age` (int64), `gender`, `occupation`, `zip` (str).
    genres : list of str
        Genre names in `u.genre` id order.
    """
    ratings: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame
    genres: list[str]


@dataclass(frozen=True)
class MovieLensConversion:
    """What `convert_movielens` returns: contract-column DataFrames plus per-reason drop counts."""
    events: pd.DataFrame
    items: pd.DataFrame
    profiles: pd.DataFrame
    dropped: dict[str, int]


def _path(source_dir: str, name: str) -> str:
    path = os.path.join(source_dir, name)
    if not io.exists(path):
        raise FileNotFoundError(f"MovieLens file not found: {path} (expected the ml-100k folder)")
    return path


def _read_table(path: str, *, sep: str, names: list[str] | None, encoding: str = "latin-1",
                int_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Reads a headerless separated file as text, then checks the column count and the integer columns."""
    table = pd.read_csv(path, sep=sep, header=None, dtype=str, encoding=encoding, quoting=csv.QUOTE_NONE,
                        keep_default_na=False)
    if names is not None:
        if table.shape[1] != len(names):
            raise ValueError(f"{path}: expected {len(names)} columns {names}, found {table.shape[1]}")
        table.columns = names
    for col in int_columns:
        values = pd.to_numeric(table[col].str.strip(), errors="coerce")
        bad = values.isna() | (values != values.round())
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path}: column {col!r} is not an integer in {int(bad.sum())} row(s); "
                             f"first at line {first + 1}: {table[col].iloc[first]!r}")
        table[col] = values.astype("int64")
    return table


def read_movielens(source_dir: str) -> MovieLensFiles:
    """Parses `u.data`, `u.item`, `u.user` and `u.genre` from the ml-100k folder.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file has the wrong number of columns or a non-integer id/timestamp (names file, column, line).
    """
    genre_path = _path(source_dir, "u.genre")
    genres = _read_table(genre_path, sep="|", names=["name", "id"], int_columns=("id",))
    genres = genres.sort_values("id")
    if list(genres["id"]) != list(range(len(genres))):
        raise ValueError(f"{genre_path}: genre ids should be 0..{len(genres) - 1}, found {list(genres['id'])}")
    genre_names = [str(g) for g in genres["name"]]

    ratings = _read_table(_path(source_dir, "u.data"), sep="\t", names=["user", "item", "rating", "timestamp"],
                          int_columns=("user", "item", "rating", "timestamp"))
    movies = _read_table(_path(source_dir, "u.item"), sep="|", names=[*ITEM_FIXED_COLUMNS, *genre_names],
                         int_columns=("movie_id", *genre_names))
    users = _read_table(_path(source_dir, "u.user"), sep="|", names=["user", "age", "gender", "occupation", "zip"],
                        int_columns=("user", "age"))
    for name, table, key in (("u.item", movies, "movie_id"), ("u.user", users, "user")):
        dup = table[key].duplicated()
        if dup.any():
            raise ValueError(f"{os.path.join(source_dir, name)}: {int(dup.sum())} repeated {key}(s), "
                             f"e.g. {int(table.loc[dup, key].iloc[0])}")
    return MovieLensFiles(ratings, movies, users, genre_names)


def age_band(age: pd.Series) -> pd.Series:
    """Age in years -> band label ("<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"); null stays null."""
    edges = [lo for lo, _ in AGE_BANDS[1:]]
    labels = np.array([label for _, label in AGE_BANDS], dtype=object)
    values = pd.to_numeric(age, errors="coerce")
    out = pd.Series(labels[np.searchsorted(edges, values.fillna(0).to_numpy(), side="right")], index=age.index,
                    dtype="string")
    return out.mask(values.isna())


def genre_category(movies: pd.DataFrame, genres: list[str]) -> pd.Series:
    """`Movies > <first flagged genre>` in `genres` order; `Movies > Unknown` when no flag is set."""
    flags = movies[genres].to_numpy() == 1
    labels = np.array([g[:1].upper() + g[1:] for g in genres] + ["Unknown"], dtype=object)
    first = np.where(flags.any(axis=1), flags.argmax(axis=1), len(genres))
    return pd.Series("Movies > " + labels[first], index=movies.index, dtype="string")


def convert_movielens(files: MovieLensFiles) -> MovieLensConversion:
    """Ratings -> purchase events; movies -> catalog rows; users -> profiles. Pure: no I/O.

    Ratings of a movie missing from `u.item`, with a timestamp <= 0, or repeating a (user, movie) pair (the
    earliest is kept) are dropped and counted.
    """
    ratings = files.ratings
    reasons = pd.Series(pd.NA, index=ratings.index, dtype="string")
    reasons[~ratings["item"].isin(files.movies["movie_id"])] = "unknown_item"
    reasons[reasons.isna() & (ratings["timestamp"] <= 0)] = "bad_timestamp"
    order = ratings.sort_values(["timestamp"], kind="stable").index
    repeated = pd.Series(False, index=ratings.index)
    repeated[order] = ratings.loc[order].duplicated(["user", "item"], keep="first").to_numpy()
    reasons[reasons.isna() & repeated] = "duplicate_rating"
    counts = reasons.value_counts()
    dropped = {r: int(counts.get(r, 0)) for r in DROP_REASONS}
    kept = ratings[reasons.isna().to_numpy()]

    user = kept["user"].astype("string")
    item = kept["item"].astype("string")
    events = pd.DataFrame({
        "event_id": "ml-" + user + "-" + item,  # a (user, movie) pair is rated once: unique and stable
        "event_time": pd.to_datetime(kept["timestamp"], unit="s", utc=True).astype("datetime64[us, UTC]"),
        "event_type": pd.Series("purchase", index=kept.index, dtype="string"),
        "anonymous_id": "m" + user,
        "user_id": "u" + user,
        "item_id": "i" + item,
        "quantity": 1,
        "price": 1.0,
        "order_id": "o" + user + "-" + item,
    }).sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)

    movies = files.movies
    release = pd.to_datetime(movies["release_date"].str.strip(), format="%d-%b-%Y", errors="coerce", utc=True)
    items = pd.DataFrame({
        "item_id": "i" + movies["movie_id"].astype("string"),
        "title": movies["title"].astype("string").str.strip(),
        "category_path": genre_category(movies, files.genres),
        "price": 1.0,
        "is_available": True,
        "created_at": release.astype("datetime64[us, UTC]"),
    }).reset_index(drop=True)
    items["title"] = items["title"].mask(items["title"] == "", "i" + movies["movie_id"].astype("string"))

    first_rating = events.assign(user=events["user_id"]).groupby("user")["event_time"].min()
    users = files.users.sort_values("user", kind="stable")
    user_ids = "u" + users["user"].astype("string")
    profiles = pd.DataFrame({
        "user_id": user_ids,
        "age_band": age_band(users["age"]),
        "gender": users["gender"].astype("string").str.strip().replace("", pd.NA),
        "signup_time": user_ids.map(first_rating).astype("datetime64[us, UTC]"),
    }).reset_index(drop=True)
    return MovieLensConversion(events, items, profiles, dropped)


def import_movielens(source_dir: str, data_root: str) -> dict:
    """Converts the MovieLens 100K folder into contract raw events, daily catalogs and profiles under `data_root`.

    Parameters
    ----------
    source_dir : str
        The ml-100k folder (`shared/data/ml-100k`).
    data_root : str
        DATA_ROOT; must not hold raw partitions of another dataset.

    Returns
    -------
    dict
        `rows_read`, `rows_written` (events), `events_by_type`, `rows_dropped` (per reason), `days` (catalog days),
        `event_days`, `users`, `anonymous_ids`, `items`, `categories`, `profiles`, `first_day`, `last_day`,
        `catalog_rows`, `seconds`.
    """
    started = time.monotonic()
    files = read_movielens(source_dir)
    conv = convert_movielens(files)
    if conv.events.empty:
        raise ValueError(f"{source_dir}: no rating survived the import; dropped per reason: {conv.dropped}")
    event_days = sorted(set(utc_days(conv.events["event_time"]).tolist()))
    first_day, last_day = event_days[0], event_days[-1]
    days = day_range(first_day, last_day)

    layout = Layout(data_root)
    check_no_foreign_partitions(layout, {"events": event_days, "catalog": days, "profiles": [first_day]})
    write_daily(split_by_day(conv.events), layout, "events")
    # a fixed catalog: every movie listed and available on every day
    write_daily(daily_catalogs(conv.items, days=days, listed_from=np.zeros(len(conv.items), dtype=int),
                               available=np.ones((len(conv.items), len(days)), dtype=bool)), layout, "catalog")
    write_daily([(first_day, to_contract_table(conv.profiles, "profiles"))], layout, "profiles")
    summary = {
        "dataset": "movielens-100k",
        "source": str(source_dir),
        "data_root": str(data_root),
        "rows_read": len(files.ratings),
        "rows_written": len(conv.events),
        "events_by_type": {k: int(v) for k, v in conv.events["event_type"].value_counts().sort_index().items()},
        "rows_dropped": conv.dropped,
        "days": len(days),
        "event_days": len(event_days),
        "users": int(conv.events["user_id"].nunique()),
        "anonymous_ids": int(conv.events["anonymous_id"].nunique()),
        "items": len(conv.items),
        "categories": int(conv.items["category_path"].nunique()),
        "profiles": len(conv.profiles),
        "first_day": first_day,
        "last_day": last_day,
        "catalog_rows": len(conv.items) * len(days),
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info("imported MovieLens: %s", summary)
    return summary
