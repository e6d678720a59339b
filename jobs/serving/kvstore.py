"""The key-value export for lookup serving: immutable versions, switched in one atomic step.

Layout under `DATA_ROOT/exports/kv/`:

    versions/<version>/store.sqlite   one immutable SQLite file per published night
    CURRENT                           JSON {"version": ..., "previous": ...}, replaced atomically (rename)

SQLite is the embedded store because it gives indexed point lookups in microseconds from a single file,
needs no server, and every Python has it. Readers open the file `immutable=1` read-only; a version is
never modified after CURRENT points at it, and the previous version is kept for rollback.

Tables: `ids(id, id_type, person_id)`, `lists(subject_key, items)` where subject_key is
`person:<person_id>` or `segment:<key>` and items is JSON `{"variant": arm, "items": [[item_id, score], ...]}` in
rank order (a bare `[[item_id, score], ...]` in versions written before lists carried their A/B arm), and
`meta(key, value)`.
"""
from __future__ import annotations

import abc
import json
import os
import sqlite3
import uuid
from pathlib import Path

from jobs.storage import io
from jobs.segments import lookup_keys

CONTROL = "control"  # the variant of a list when no experiment runs


def _local(path: str) -> Path:
    fs, p = io.fs_for(path)
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "file" not in protocols:
        raise ValueError(f"the embedded key-value store needs a local DATA_ROOT, got {path}; use Redis for others")
    return Path(p)


def list_rows(recommendations, rows_per_partition: int = 1_000_000):
    """(subject_key, items): one row per list, `items` the JSON `{"variant": arm, "items": [[item_id, score], ...]}`
    in rank order. subject_key is `person:<person_id>` or `segment:<key>`; both stores hold exactly this. Lists
    without a `variant` column are `control`.

    Partitions hold about `rows_per_partition` list rows (20k lists of 50): the embedded store streams them to the
    driver one at a time, and with the shuffle's own few partitions (which adaptive execution merges further) one
    partition of a 1M-person night was hundreds of MB, whose task result Spark lost (`TaskResultLost`)."""
    from pyspark.sql import functions as F

    partitions = max(1, -(-recommendations.count() // rows_per_partition))  # a count of Parquet reads its footers
    recommendations = recommendations.repartition(partitions, "subject_type", "subject_id")  # the groupBy's shuffle

    ranked = F.array_sort(F.collect_list(F.struct("rank", "item_id", "score")))
    variant = F.max("variant") if "variant" in recommendations.columns else F.lit(CONTROL)
    value = F.struct(variant.alias("variant"),
                     F.transform(ranked, lambda x: F.array(x["item_id"], x["score"].cast("string"))).alias("items"))
    return (recommendations.groupBy("subject_type", "subject_id")
            .agg(F.to_json(value).alias("items"))
            .select(F.concat_ws(":", "subject_type", "subject_id").alias("subject_key"), "items"))


def decode_list(raw: str | None) -> tuple[list | None, str]:
    """(items, variant) of a stored list value; versions written before lists carried a variant read as `control`."""
    if not raw:
        return None, CONTROL
    value = json.loads(raw)
    return (value, CONTROL) if isinstance(value, list) else (value["items"], value["variant"])


def build_version(spark, recommendations, identity, kv_root: str, *, meta: dict, keep: int = 3) -> str:
    """Writes a new version from Spark DataFrames (streamed to the driver partition by partition, never
    collected whole) and returns its name. Does not switch CURRENT."""
    root = _local(kv_root)
    version = f"{meta['run_date']}-{uuid.uuid4().hex[:8]}"
    tmp = root / "versions" / f".tmp-{version}"
    tmp.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(tmp / "store.sqlite")
    try:
        # 8 KiB pages: a list of 50 items (~1.5 KB) then fits in its leaf page; with 4 KiB ones every list spilled
        # into an overflow page, which tripled the file and the lookup's page reads (bench/bench_export.py)
        con.executescript("""
            PRAGMA page_size=8192; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
            CREATE TABLE ids (id TEXT NOT NULL, id_type TEXT NOT NULL, person_id TEXT NOT NULL,
                              PRIMARY KEY (id, id_type)) WITHOUT ROWID;
            CREATE TABLE lists (subject_key TEXT PRIMARY KEY, items TEXT NOT NULL) WITHOUT ROWID;
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);""")
        _insert(con, "INSERT INTO lists VALUES (?, ?)", list_rows(recommendations).toLocalIterator(prefetchPartitions=True))
        _insert(con, "INSERT OR REPLACE INTO ids VALUES (?, ?, ?)",
                identity.select("id", "id_type", "person_id").toLocalIterator(prefetchPartitions=True))
        con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        con.commit()
    finally:
        con.close()
    os.replace(tmp, root / "versions" / version)
    _prune(root, keep=keep)
    return version


def _insert(con, sql: str, rows, batch: int = 20_000) -> None:
    buf = []
    for r in rows:
        buf.append(tuple(r))
        if len(buf) >= batch:
            con.executemany(sql, buf)
            buf.clear()
    if buf:
        con.executemany(sql, buf)


def current(kv_root: str) -> dict | None:
    return io.read_json(f"{kv_root}/CURRENT")


def switch_current(kv_root: str, version: str) -> dict:
    """Points readers at `version` in one atomic rename; the old version stays as `previous`."""
    before = current(kv_root) or {}
    pointer = {"version": version, "previous": before.get("version")}
    io.write_json(f"{kv_root}/CURRENT", pointer)
    return pointer


def _prune(root: Path, *, keep: int) -> None:
    """Deletes old versions beyond `keep`, never the current or previous one."""
    pointer = io.read_json(str(root / "CURRENT"), {}) or {}
    protected = {pointer.get("version"), pointer.get("previous")}
    versions = sorted(p for p in (root / "versions").iterdir() if not p.name.startswith("."))
    for old in versions[:-keep]:
        if old.name not in protected:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()


def subject_keys(meta: dict, person_id: str | None, *, country: str | None = None,
                 device_type: str | None = None) -> list[str]:
    """The list keys to try for one lookup, in order: the person's, then the matching segments, `global` last."""
    dims = tuple(meta.get("segment_dimensions", ["country", "device_type"]))
    keys = [f"segment:{key}" for key in lookup_keys(dims, {"country": country, "device_type": device_type})]
    return [f"person:{person_id}", *keys] if person_id is not None else keys


def answer(version: str | None, id_: str, person_id: str | None, subject_key: str | None, items: list | None,
           k: int | None, variant: str = CONTROL) -> dict:
    """The lookup answer (`recs lookup --json`, `recs serve`) from the first non-empty list of `subject_keys`."""
    if not items:
        raise LookupError(f"version {version} has no global segment list: the export is broken")
    source = "person" if subject_key.startswith("person:") else subject_key
    items = items[:k] if k else items
    return {"id": id_, "person_id": person_id, "source": source, "variant": variant, "version": version,
            "items": [{"item_id": i, "score": float(s)} for i, s in items]}


class Lookup(abc.ABC):
    """The storefront's lookup over any store that can answer `person_of(id)` and `list_value(subject_key)`."""

    version: str | None
    meta: dict

    @abc.abstractmethod
    def person_of(self, id_: str) -> str | None:
        """The person behind a user_id or anonymous_id (user_id wins if both match), or None."""

    @abc.abstractmethod
    def list_value(self, subject_key: str) -> str | None:
        """The stored value of `person:<id>` or `segment:<key>` (see `list_rows`), or None."""

    def first_list(self, keys: list[str]) -> tuple[str | None, list | None, str]:
        """The first of `keys` that has a non-empty list, with that list and its variant (a store may do this in
        one call)."""
        for key in keys:
            items, variant = decode_list(self.list_value(key))
            if items:
                return key, items, variant
        return None, None, CONTROL

    def lookup(self, id_: str, *, country: str | None = None, device_type: str | None = None,
               k: int | None = None) -> dict:
        """The person's list, else the most specific matching segment list, else `global`; never empty."""
        person_id = self.person_of(id_)
        key, items, variant = self.first_list(subject_keys(self.meta, person_id, country=country,
                                                           device_type=device_type))
        return answer(self.version, id_, person_id, key, items, k, variant)


class KVReader(Lookup):
    """Lookups against the embedded store's current version (or a pinned one)."""

    def __init__(self, kv_root: str, version: str | None = None):
        self.kv_root, self.version = kv_root, version
        pointer = current(self.kv_root)
        if self.version is None:
            if not pointer:
                raise FileNotFoundError(f"no published key-value version under {self.kv_root} (CURRENT missing): "
                                        "run `recs run` first")
            self.version = pointer["version"]
        path = _local(self.kv_root) / "versions" / self.version / "store.sqlite"
        if not path.exists():
            raise FileNotFoundError(f"key-value version {self.version} is missing at {path}")
        self._con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        self.meta = {k: json.loads(v) for k, v in self._con.execute("SELECT key, value FROM meta")}

    def list_value(self, subject_key: str) -> str | None:
        row = self._con.execute("SELECT items FROM lists WHERE subject_key = ?", (subject_key,)).fetchone()
        return row[0] if row else None

    def person_of(self, id_: str) -> str | None:
        row = self._con.execute("SELECT person_id FROM ids WHERE id = ? ORDER BY id_type = 'user_id' DESC LIMIT 1",
                                (id_,)).fetchone()
        return row[0] if row else None
