"""Reads with the contract's schema and writes that never leave half a dataset behind.

Every write goes to a hidden sibling folder (`.tmp-<name>-<uuid>`) and is moved into place only once
complete; the folder it replaces is moved aside first and deleted after, so a reader sees the old
or the new partition, never a mix. File operations go through fsspec so that a URI root works too.
"""
from __future__ import annotations

import json
import logging
import math
import posixpath
import re
import uuid
from contextlib import contextmanager
from typing import Iterator

import fsspec

log = logging.getLogger(__name__)


def fs_for(path: str):
    fs, local = fsspec.core.url_to_fs(path)
    return fs, local


def exists(path: str) -> bool:
    fs, p = fs_for(path)
    return fs.exists(p)


def has_data(path: str) -> bool:
    """True when the folder holds at least one data file (not only hidden/underscore files)."""
    fs, p = fs_for(path)
    if not fs.exists(p):
        return False
    return any(not posixpath.basename(f).startswith(("_", ".")) for f in fs.find(p))


_DT = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


def partition_date(folder_name: str) -> str | None:
    """`dt=2026-03-01` -> `2026-03-01`; None for any other name (hidden temporaries included)."""
    m = _DT.match(folder_name)
    return m.group(1) if m else None


def partition_dates(folder: str) -> list[str]:
    """ISO dates of the complete `dt=YYYY-MM-DD` sub-folders of `folder`, sorted (hidden temporaries skipped)."""
    fs, p = fs_for(folder)
    if not fs.exists(p):
        return []
    days = []
    for entry in fs.ls(p, detail=False):
        ds = partition_date(posixpath.basename(entry.rstrip("/")))
        if ds and fs.isdir(entry):
            days.append(ds)
    return sorted(days)


def data_files(path: str, suffixes: tuple[str, ...]) -> list[str]:
    fs, p = fs_for(path)
    if not fs.exists(p):
        return []
    return sorted(f for f in fs.find(p) if f.endswith(suffixes) and not posixpath.basename(f).startswith(("_", ".")))


@contextmanager
def atomic_dir(final: str) -> Iterator[str]:
    """Yields a temporary folder path; on success it replaces `final` whole, on error it is removed."""
    fs, final_p = fs_for(final)
    parent, name = posixpath.split(final_p.rstrip("/"))
    tmp = posixpath.join(parent, f".tmp-{name}-{uuid.uuid4().hex[:8]}")
    fs.makedirs(parent, exist_ok=True)
    prefix = final[: len(final) - len(final_p)] if final.endswith(final_p) else ""
    try:
        yield prefix + tmp
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)
        raise
    old = None
    if fs.exists(final_p):
        old = posixpath.join(parent, f".old-{name}-{uuid.uuid4().hex[:8]}")
        fs.mv(final_p, old, recursive=True)
    fs.mv(tmp, final_p, recursive=True)
    if old:
        fs.rm(old, recursive=True)


def json_ready(obj):
    """NaN/inf -> None and numpy scalars -> Python, so reports are strict JSON."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "item") and type(obj).__module__ == "numpy":
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def put_local_dir(local_dir: str, final: str) -> str:
    """Uploads a folder built on this machine (a report site) to `final`, a path or URI, replacing it whole."""
    with atomic_dir(final) as tmp:
        fs, p = fs_for(tmp)
        fs.put(local_dir.rstrip("/") + "/", p, recursive=True)
    return final


def local_dir(path: str, cache_root: str | None = None) -> str:
    """`path` as a folder on this machine: itself on a local file system, else a copy under `cache_root` (or
    the temp dir), downloaded once per path. For libraries that only open local files (ScaNN's loader)."""
    import hashlib
    import os
    import tempfile

    fs, p = fs_for(path)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return p
    target = os.path.join(cache_root or tempfile.gettempdir(), "recs-" + hashlib.sha1(path.encode()).hexdigest()[:16])
    if not os.path.exists(target):
        partial = f"{target}.{uuid.uuid4().hex[:8]}"
        fs.get(p.rstrip("/") + "/", partial, recursive=True)
        os.replace(partial, target)
    return target


def write_text(path: str, text: str) -> None:
    """Atomic small-file write: a reader sees the old file or the new one, never half of it."""
    fs, p = fs_for(path)
    parent = posixpath.dirname(p)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = p + f".tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "w") as f:
        f.write(text)
    fs.mv(tmp, p)


def write_json(path: str, obj) -> None:
    """Atomic strict-JSON write (run summaries, reports, pointers)."""
    write_text(path, json.dumps(json_ready(obj), indent=1, sort_keys=True, default=str, allow_nan=False))


def read_json(path: str, default=None):
    fs, p = fs_for(path)
    if not fs.exists(p):
        return default
    with fs.open(p) as f:
        return json.load(f)


def write_spark_parquet(df, final: str, partition_by: list[str] | None = None) -> str:
    """Writes a DataFrame as Parquet to `final` atomically (whole folder replaced)."""
    with atomic_dir(final) as tmp:
        writer = df.write.mode("overwrite")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.parquet(tmp)
    return final


def write_arrow_parquet(table, final: str, file_name: str = "part-00000.parquet") -> str:
    """Writes a pyarrow Table as one Parquet file in folder `final`, atomically."""
    import pyarrow.parquet as pq

    with atomic_dir(final) as tmp:
        fs, p = fs_for(tmp)
        fs.makedirs(p, exist_ok=True)
        with fs.open(posixpath.join(p, file_name), "wb") as f:
            pq.write_table(table, f)
    return final


def read_spark_parquet(spark, paths: str | list[str], schema_name: str | None = None):
    """Reads Parquet folders, with the contract schema when given; a missing path is a clear error."""
    from schemas import load

    paths = [paths] if isinstance(paths, str) else list(paths)
    missing = [p for p in paths if not exists(p)]
    if missing:
        raise FileNotFoundError(f"no data at {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    reader = spark.read
    if schema_name:
        reader = reader.schema(load(schema_name).spark())
    return reader.parquet(*paths)


def read_arrow_parquet(path: str, columns: list[str] | None = None, *, schema=None, what: str = "dataset"):
    """A Parquet folder as one Arrow table (hidden and `_SUCCESS` files skipped), with errors that name the
    dataset, the path and the field. A folder without data files reads as an empty table of `schema`."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    if not exists(path):
        raise FileNotFoundError(f"no {what} at {path}")
    fs, local = fs_for(path)
    dataset = pads.dataset(local, filesystem=fs, format="parquet")
    if schema is not None and not dataset.files:
        table = schema.empty_table()
        return table.select(columns) if columns else table
    missing = [c for c in columns or () if c not in dataset.schema.names]
    if missing:
        raise ValueError(f"{what} at {path} has no field {missing[0]!r} (it has: {dataset.schema.names})")
    try:
        return dataset.to_table(columns=columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"{what} at {path} cannot be read with fields {columns}: {exc}") from exc


def promote(staged: str, final: str) -> str:
    """Moves a complete staged folder into `final`, replacing what was there in one step."""
    fs, staged_p = fs_for(staged)
    with atomic_dir(final) as tmp:
        _, tmp_p = fs_for(tmp)
        fs.mv(staged_p, tmp_p, recursive=True)
    return final
