"""Erasing ids from the key-value exports: every embedded SQLite version and every Redis version.

SQLite (`exports/kv/versions/*/store.sqlite`, immutable once published): a version holding an id is copied to a
hidden file next to it, the rows holding an id are deleted from every table (any text column, compared with the same
`IdMatcher` rule, so `person:<id>` list keys go too), the copy is VACUUMed so no deleted page keeps the bytes, and it
is renamed over the version. Readers with the old file open keep reading it until they reopen; nobody ever sees a
half-erased store.

Redis (`recs:<version>:ids|lists|meta` hashes): the fields whose name or value holds an id are deleted (HDEL) in
every hash under the `recs:` prefix, so the live version, the previous one and any kept for rollback are covered.
"""
from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from jobs.privacy.matching import IdMatcher
from jobs.serving import kvstore
from jobs.storage import io


def _sqlite_files(kv_root: str) -> list[Path]:
    fs, p = io.fs_for(kv_root)
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "file" not in protocols or not Path(p, "versions").exists():
        return []
    return sorted(f for f in Path(p, "versions").glob("*/store.sqlite") if not f.parent.name.startswith("."))


def _text_columns(con, table: str) -> list[str]:
    return [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')
            if (r[2] or "").upper() in ("TEXT", "") or "CHAR" in (r[2] or "").upper()]


def _where(columns: list[str]) -> str:
    return " OR ".join(f'holds_id("{c}")' for c in columns)


def _count_hits(con, matcher: IdMatcher) -> dict[str, int]:
    con.create_function("holds_id", 1, lambda v: 1 if matcher.value(v) else 0, deterministic=True)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    hits = {}
    for t in tables:
        cols = _text_columns(con, t)
        if cols:
            n = con.execute(f'SELECT count(*) FROM "{t}" WHERE {_where(cols)}').fetchone()[0]
            if n:
                hits[t] = n
    return hits


def erase_sqlite_version(path: Path, matcher: IdMatcher) -> int:
    """Rows deleted from one store (0: the file is left untouched)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        hits = _count_hits(con, matcher)
    if not hits:
        return 0
    tmp = path.with_name(f".{path.name}.erase-{uuid.uuid4().hex[:8]}")
    try:
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            src.close()
        try:
            dst.execute("PRAGMA secure_delete = ON")
            dst.create_function("holds_id", 1, lambda v: 1 if matcher.value(v) else 0, deterministic=True)
            for table in hits:
                dst.execute(f'DELETE FROM "{table}" WHERE {_where(_text_columns(dst, table))}')
            dst.commit()
            dst.execute("VACUUM")
        finally:
            dst.close()
        tmp.replace(path)
        kvstore.reseal(path.parent)  # the manifest's counts and checksum describe the erased file
    finally:
        tmp.unlink(missing_ok=True)
    return sum(hits.values())


def erase_sqlite(kv_root: str, matcher: IdMatcher) -> dict:
    counts = {"kv_versions_rewritten": 0, "kv_rows_removed": 0}
    for path in _sqlite_files(kv_root):
        n = erase_sqlite_version(path, matcher)
        if n:
            counts["kv_versions_rewritten"] += 1
            counts["kv_rows_removed"] += n
    return counts


def erase_redis(url: str, matcher: IdMatcher, prefix: str = "recs") -> dict:
    """HDELs the fields holding an id from every hash `<prefix>:*`; returns counts."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    counts = {"redis_hashes_changed": 0, "redis_fields_removed": 0}
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        if client.type(key) != "hash":
            continue
        doomed = [f for f, v in client.hscan_iter(key, count=5000) if matcher.value(f) or matcher.value(v)]
        for i in range(0, len(doomed), 1000):
            client.hdel(key, *doomed[i:i + 1000])
        if doomed:
            counts["redis_hashes_changed"] += 1
            counts["redis_fields_removed"] += len(doomed)
    return counts
