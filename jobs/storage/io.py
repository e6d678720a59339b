"""Reads with the contract's schema and writes that never leave half a dataset behind.

Every write goes to a hidden sibling folder (`.tmp-<name>-<hex8>`) and is swapped into place only once
complete. On a local filesystem the swap is one `renameat2(RENAME_EXCHANGE)` system call: the target path
names the whole old folder until the call and the whole new one after it, with no instant where it names
nothing (a kill -9 at any point leaves one whole folder there); the displaced old folder, now at the
temporary name, is deleted after. Where the kernel or an object store offers no exchange, the old folder is
moved aside first (a short gap). Leftovers of a killed writer (`.tmp-*`, `.old-*`) are removed by
`clean_leftovers`, which a run calls once it holds the DATA_ROOT lock. File operations go through fsspec so
that a URI root works too.
"""
from __future__ import annotations

import ctypes
import errno
import json
import logging
import math
import os
import posixpath
import re
import shutil
import time
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


def _hex8() -> str:
    return uuid.uuid4().hex[:8]


# What our writers name their temporaries: `.tmp-<name>-<hex8>` / `.old-<name>-<hex8>` folders and
# `<file>.tmp-<hex8>` files. Only these are ever cleaned, so nothing a shop or a user put there is touched.
_LEFTOVER = re.compile(r"^(\.(tmp|old)-.+-[0-9a-f]{8}|.+\.tmp-[0-9a-f]{8})$")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = None


def _is_local(fs) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def exchange(a: str, b: str) -> bool:
    """Swaps two local paths in one system call (Linux renameat2 RENAME_EXCHANGE). False when the kernel or
    the filesystem cannot (the caller falls back); any other error is raised."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def replace_dir(src: str, final: str, *, keep_displaced: bool = True) -> None:
    """Puts the complete folder `src` at `final` (a path or URI), replacing what was there; `src` is gone after.

    Local: one rename (no old folder) or one exchange, so `final` never goes missing. The displaced old folder
    is renamed `.old-<name>-<hex8>` and, with `keep_displaced`, left for `DISPLACED_GRACE_SECONDS`: a reader
    that resolved `final` before the swap (opened the folder, listed it) reads the whole old folder to the end;
    the next run removes it (`clean_leftovers`). Without `keep_displaced` (an erasure) it is deleted at once.
    Elsewhere: move-aside (a short gap), the old folder deleted at once."""
    fs, src_p = fs_for(src)
    _, final_p = fs_for(final)
    parent, name = posixpath.split(final_p.rstrip("/"))
    if _is_local(fs):
        if not os.path.lexists(final_p):
            os.rename(src_p, final_p)
            return
        if exchange(src_p, final_p):  # src_p now holds the old folder
            displaced = posixpath.join(parent, f".old-{name}-{_hex8()}")
            os.rename(src_p, displaced)
            if not keep_displaced:
                _rmtree(displaced)
            return
        log.warning("no atomic exchange on this filesystem: replacing %s by move-aside", final_p)
    old = None
    if fs.exists(final_p):
        old = posixpath.join(parent, f".old-{name}-{_hex8()}")
        fs.mv(final_p, old, recursive=True)
    fs.mv(src_p, final_p, recursive=True)
    if old:
        fs.rm(old, recursive=True)


def _rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def atomic_dir(final: str, *, keep_displaced: bool = True) -> Iterator[str]:
    """Yields a temporary folder path; on success it replaces `final` whole (`replace_dir`), on error it is
    removed."""
    fs, final_p = fs_for(final)
    parent, name = posixpath.split(final_p.rstrip("/"))
    tmp = posixpath.join(parent, f".tmp-{name}-{_hex8()}")
    fs.makedirs(parent, exist_ok=True)
    prefix = final[: len(final) - len(final_p)] if final.endswith(final_p) else ""
    try:
        yield prefix + tmp
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)
        raise
    if not fs.exists(tmp):  # the body wrote nothing: an empty folder, as before
        fs.makedirs(tmp, exist_ok=True)
    replace_dir(prefix + tmp, final, keep_displaced=keep_displaced)


# How long a displaced folder outlives its replacement, for readers that resolved it before the swap.
DISPLACED_GRACE_SECONDS = 900.0


def clean_leftovers(root: str, *, grace_seconds: float = DISPLACED_GRACE_SECONDS) -> list[str]:
    """Removes what killed writers left anywhere under `root` (`.tmp-*`: a write that never finished) and the
    folders displaced by a replacement more than `grace_seconds` ago (`.old-*`); returns them. Call it only
    while holding the DATA_ROOT lock: then no live writer owns a `.tmp-*`."""
    fs, p = fs_for(root)
    if not fs.exists(p):
        return []
    found = []
    if _is_local(fs):
        now = time.time()
        for folder, dirs, files in os.walk(p):
            for d in [d for d in dirs if _LEFTOVER.match(d)]:
                dirs.remove(d)  # not walked: it goes whole, or stays whole
                path = os.path.join(folder, d)
                if not d.startswith(".old-") or now - os.lstat(path).st_ctime >= grace_seconds:
                    found.append(path)
            found += [os.path.join(folder, f) for f in files if _LEFTOVER.match(f)]
    else:
        found = [f for f in fs.find(p, withdirs=True) if _LEFTOVER.match(posixpath.basename(f.rstrip("/")))]
        found = [f for f in found if not any(f != g and f.startswith(g.rstrip("/") + "/") for g in found)]
    for path in found:
        log.info("removing the leftover %s of a killed run", path)
        if _is_local(fs) and os.path.isdir(path) and not os.path.islink(path):
            _rmtree(path)
        else:
            fs.rm(path, recursive=True)
    return found


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
    tmp = p + f".tmp-{_hex8()}"
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


def promote(staged: str, final: str, *, keep_staged: bool = False) -> str:
    """Puts a complete staged folder at `final`, replacing what was there in one step (`replace_dir`).
    `keep_staged`: the staged folder stays (its files hard-linked, or copied where links cannot be made), so a
    step that fails after this one can be retried from the same staged input."""
    fs, staged_p = fs_for(staged)
    _, final_p = fs_for(final)
    parent, name = posixpath.split(final_p.rstrip("/"))
    tmp = posixpath.join(parent, f".tmp-{name}-{_hex8()}")
    fs.makedirs(parent, exist_ok=True)
    prefix = final[: len(final) - len(final_p)] if final.endswith(final_p) else ""
    if not keep_staged:
        fs.mv(staged_p, tmp, recursive=True)
    elif _is_local(fs):
        try:
            shutil.copytree(staged_p, tmp, copy_function=os.link)
        except OSError:  # another device, or no hard links on this filesystem
            _rmtree(tmp)
            shutil.copytree(staged_p, tmp)
    else:
        fs.copy(staged_p, tmp, recursive=True)
    replace_dir(prefix + tmp, final)
    return final


def append_line(path: str, line: str) -> None:
    """Appends one line to a small log file: the file is rewritten whole and renamed over the old one, so a
    reader sees it with or without the new line, never half of one (works on object stores too)."""
    fs, p = fs_for(path)
    old = ""
    if fs.exists(p):
        with fs.open(p, "r") as f:
            old = f.read()
    write_text(path, old + line.rstrip("\n") + "\n")


def read_lines_json(path: str) -> list[dict]:
    """The JSON lines of a log written by `append_line` (empty when there is none)."""
    fs, p = fs_for(path)
    if not fs.exists(p):
        return []
    with fs.open(p, "r") as f:
        return [json.loads(line) for line in f if line.strip()]


def files_digest(*folders: str) -> str:
    """A short content digest of the Parquet files in `folders` (relative names and bytes): equal only for the
    same data, so a retried publish finds the version it built from these files."""
    import hashlib

    digest = hashlib.sha256()
    for folder in folders:
        fs, p = fs_for(folder)
        for f in data_files(folder, (".parquet",)):
            digest.update(f"{posixpath.relpath(f, p)}\0".encode())
            with fs.open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        digest.update(b"\1")
    return digest.hexdigest()[:16]


def remove_dir(path: str) -> None:
    """Deletes a folder in one rename to a hidden leftover name first, so a kill mid-delete never leaves a half
    folder under its own name (the leftover is cleaned by the next run)."""
    fs, p = fs_for(path)
    if not fs.exists(p):
        return
    parent, name = posixpath.split(p.rstrip("/"))
    doomed = posixpath.join(parent, f".old-{name}-{_hex8()}")
    fs.mv(p, doomed, recursive=True)
    if _is_local(fs):
        _rmtree(doomed)
    else:
        fs.rm(doomed, recursive=True)
