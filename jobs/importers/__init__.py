"""Importers that turn public datasets into the contract's raw inputs under a DATA_ROOT.

- `jobs.importers.online_retail.import_online_retail(source, data_root)`: UCI Online Retail (order lines).
- `jobs.importers.movielens.import_movielens(source_dir, data_root)`: MovieLens 100K (ratings as purchases).

Both write `raw/events/dt=D/part-00000.parquet` (only days with events: a shop's quiet day has no partition),
`raw/catalog/dt=D/part-00000.parquet` for every day from the first to the last event day, and MovieLens also
`raw/profiles/dt=D/`. Each partition is written atomically with exactly the contract's Arrow schema, so a re-import
replaces it whole. The data are small (at most ~0.5M rows), so this is pandas/pyarrow, not Spark.

This module holds the helpers both importers share; the two public functions are re-exported lazily so that
`from jobs.importers import import_movielens` works without importing pandas at package import.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator

import numpy as np

from jobs.storage import io
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)

__all__ = ["import_movielens", "import_online_retail"]


def __getattr__(name: str):
    if name == "import_online_retail":
        from jobs.importers.online_retail import import_online_retail

        return import_online_retail
    if name == "import_movielens":
        from jobs.importers.movielens import import_movielens

        return import_movielens
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def day_range(first: str, last: str) -> list[str]:
    """Every ISO day from `first` to `last`, both included."""
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    if end < start:
        raise ValueError(f"day range is empty: {first} > {last}")
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def to_contract_table(df, schema_name: str):
    """A pyarrow Table with exactly the contract schema `schema_name`: absent columns become nulls.

    Raises:
        ValueError: a column that cannot be converted to its contract type (names the column).
    """
    import pandas as pd
    import pyarrow as pa

    from schemas import load

    schema = load(schema_name).arrow()
    arrays = []
    for field in schema:
        if field.name in df.columns:
            col = df[field.name]
            if pa.types.is_timestamp(field.type) and isinstance(col.dtype, pd.DatetimeTZDtype):
                col = col.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
            try:
                arrays.append(pa.array(col, type=field.type, from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ValueError(f"{schema_name}.{field.name}: cannot convert to {field.type}: {exc}") from exc
        else:
            arrays.append(pa.nulls(len(df), type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def check_no_foreign_partitions(layout: Layout, writes: dict[str, Iterable[str]]) -> None:
    """Refuses to mix two datasets in one DATA_ROOT.

    `writes` maps a raw dataset (`events`, `catalog`, `profiles`) to the days this import writes. A `dt=` partition
    already there that the import would not overwrite means another shop's data lives in this root.
    """
    for dataset, days in writes.items():
        fs, base = io.fs_for(layout.raw(dataset))
        if not fs.exists(base):
            continue
        present = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False)}
        foreign = sorted(p for p in present if p.startswith("dt=") and p[3:] not in set(days))
        if foreign:
            raise ValueError(
                f"{layout.raw(dataset)} already holds {len(foreign)} partition(s) this import would not replace "
                f"(e.g. {foreign[0]}): import into an empty data root")


def write_daily(tables: Iterable[tuple[str, object]], layout: Layout, dataset: str) -> list[str]:
    """Writes each `(day, Table)` to `raw/<dataset>/dt=<day>/part-00000.parquet` atomically; returns the days."""
    written = []
    for ds, table in tables:
        io.write_arrow_parquet(table, layout.raw(dataset, ds))
        written.append(ds)
    log.info("wrote %d %s partitions under %s", len(written), dataset, layout.raw(dataset))
    return written


def utc_days(times) -> np.ndarray:
    """ISO day strings of a tz-aware pandas datetime Series (numpy, much faster than `strftime`)."""
    return np.datetime_as_string(times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[D]"))


def split_by_day(events, schema_name: str = "events") -> Iterator[tuple[str, object]]:
    """Yields `(day, table)` per UTC day of `event_time`, rows ordered by `event_time` then `event_id`.

    Parameters
    ----------
    events : pandas.DataFrame
        Contract columns; `event_time` tz-aware UTC.
    """
    ordered = events.sort_values(["event_time", "event_id"], kind="stable")
    day = utc_days(ordered["event_time"])
    for ds, part in ordered.groupby(day, sort=True):
        yield ds, to_contract_table(part, schema_name)


def availability(item_idx: np.ndarray, day_idx: np.ndarray, *, n_items: int, n_days: int,
                 window_days: int) -> np.ndarray:
    """`(n_items, n_days)` bool: the item sold at least once in the `window_days` days ending on that day."""
    sold = np.zeros((n_items, n_days + 1), dtype=np.int32)
    np.add.at(sold, (item_idx, day_idx + 1), 1)  # column 0 stays 0: a prefix sum over days
    cum = np.cumsum(sold, axis=1)
    end = np.arange(1, n_days + 1)
    start = np.maximum(end - window_days, 0)
    return (cum[:, end] - cum[:, start]) > 0


def daily_catalogs(items, *, days: list[str], listed_from: np.ndarray,
                   available: np.ndarray) -> Iterator[tuple[str, object]]:
    """Yields `(day, catalog table)` for each day: the items listed on or before that day.

    Parameters
    ----------
    items : pandas.DataFrame
        One row per item with catalog columns (`item_id`, `title`, `category_path`, `price`, ...);
        `is_available` is filled per day.
    days : list of str
        The snapshot days, oldest first.
    listed_from : numpy.ndarray
        Per item, the index into `days` of its first day in the catalog.
    available : numpy.ndarray
        `(len(items), len(days))` bool.
    """
    import pyarrow as pa

    order = np.argsort(items["item_id"].to_numpy(dtype=object), kind="stable")
    items = items.iloc[order].reset_index(drop=True)
    listed_from, available = np.asarray(listed_from)[order], np.asarray(available)[order]
    static = to_contract_table(items.drop(columns=["is_available"], errors="ignore"), "catalog")
    col = static.schema.get_field_index("is_available")
    for d, ds in enumerate(days):
        mask = listed_from <= d
        table = static.filter(pa.array(mask))
        table = table.set_column(col, static.schema.field(col), pa.array(available[mask, d], type=pa.bool_()))
        yield ds, table
