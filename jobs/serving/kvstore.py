"""The key-value export for lookup serving: immutable versions, switched in one atomic step.

Layout under `DATA_ROOT/exports/kv/`:

    versions/<version>/store.sqlite   one immutable SQLite file per published night
    versions/<version>/manifest.json  written last: counts, checksum, model version, config and inputs digests,
                                      publish time; a folder without it is not a complete version
    CURRENT                           JSON {"version": ..., "previous": ...}, replaced atomically (rename)
    switches.jsonl                    one line per pointer switch (time, store, from, to, reason)

A version is pruned only after the switch, never the live, the previous or the newest one, and versions are
ordered by publish time (their manifests), not by name.

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
import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

from jobs.progress import steps
from jobs.storage import io
from jobs.segments import PROFILE_KEY_PREFIX, decode_context, lookup_keys

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


MANIFEST = "manifest.json"
STORE_FILE = "store.sqlite"
SWITCH_LOG = "switches.jsonl"


def decode_list(raw: str | None) -> tuple[list | None, str]:
    """(items, variant) of a stored list value; versions written before lists carried a variant read as `control`."""
    if not raw:
        return None, CONTROL
    value = json.loads(raw)
    return (value, CONTROL) if isinstance(value, list) else (value["items"], value["variant"])


def build_version(spark, recommendations, identity, kv_root: str, *, meta: dict, manifest: dict | None = None,
                  contexts=None) -> str:
    """Writes a new version from Spark DataFrames (streamed to the driver partition by partition, never
    collected whole) and returns its name. Does not switch CURRENT and deletes nothing.

    The version is built in a hidden folder; its `manifest.json` (counts, checksum, `manifest` fields such as
    the config digest and the inputs digest) is written last, then the folder is renamed into `versions/`: a
    version folder without a manifest is not a complete version. `contexts` (subject_key `profile:<user_id>`,
    items = context JSON; `jobs.coldstart.profile_contexts`) go into the lists table beside the lists."""
    root = _local(kv_root)
    version = f"{meta['run_date']}-{uuid.uuid4().hex[:8]}"
    tmp = root / "versions" / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(tmp / STORE_FILE)
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
        if contexts is not None:
            _insert(con, "INSERT OR REPLACE INTO lists VALUES (?, ?)",
                    contexts.toLocalIterator(prefetchPartitions=True))
        _insert(con, "INSERT OR REPLACE INTO ids VALUES (?, ?, ?)",
                identity.select("id", "id_type", "person_id").toLocalIterator(prefetchPartitions=True))
        con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        con.commit()
        counts = _counts(con)
    finally:
        con.close()
    doc = {**(manifest or {}), "version": version, "run_date": meta["run_date"],
           "model_version": meta.get("model_version"), **counts,
           "checksums": {STORE_FILE: _sha256(tmp / STORE_FILE)},
           "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")}
    io.write_json(str(tmp / MANIFEST), doc)  # last: it makes the version complete
    os.rename(tmp, root / "versions" / version)
    return version


def reseal(version_dir: Path) -> dict | None:
    """Recomputes a version's counts and checksum after its store was rewritten in place (an erasure), so the
    manifest keeps describing the file; None for a version without one."""
    doc = io.read_json(str(version_dir / MANIFEST))
    if doc is None:
        return None
    with sqlite3.connect(f"file:{version_dir / STORE_FILE}?mode=ro", uri=True) as con:
        counts = _counts(con)
    doc = {**doc, **counts, "checksums": {**doc.get("checksums", {}), STORE_FILE: _sha256(version_dir / STORE_FILE)},
           "rewritten_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    io.write_json(str(version_dir / MANIFEST), doc)
    return doc


def _counts(con) -> dict:
    def one(sql: str):
        return con.execute(sql).fetchone()[0] or 0

    return {"persons": one("SELECT COUNT(*) FROM lists WHERE subject_key >= 'person:' AND subject_key < 'person;'"),
            "segments": one("SELECT COUNT(*) FROM lists WHERE subject_key >= 'segment:' AND subject_key < 'segment;'"),
            "lists": one("SELECT COUNT(*) FROM lists"), "ids": one("SELECT COUNT(*) FROM ids"),
            "rows": one("SELECT SUM(COALESCE(json_array_length(items, '$.items'), json_array_length(items))) FROM lists")}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _insert(con, sql: str, rows, batch: int = 20_000) -> None:
    buf = []
    with steps(f"export: {sql.split(' INTO ')[1].split()[0]}", unit="rows") as done:  # the table; rows: unknown
        for r in rows:
            buf.append(tuple(r))
            if len(buf) >= batch:
                con.executemany(sql, buf)
                done.advance(len(buf))
                buf.clear()
        if buf:
            con.executemany(sql, buf)
            done.advance(len(buf))


def current(kv_root: str) -> dict | None:
    return io.read_json(f"{kv_root}/CURRENT")


def manifest(kv_root: str, version: str | None) -> dict | None:
    """The manifest of a complete version, or None (no such version, or one a killed build left incomplete)."""
    if not version:
        return None
    return io.read_json(f"{kv_root}/versions/{version}/{MANIFEST}")


def versions(kv_root: str) -> list[dict]:
    """Every version folder, oldest published first: `{"version", "manifest"}` (manifest None: incomplete, or
    built before manifests existed; those sort by the folder's time)."""
    folder = _local(kv_root) / "versions"
    if not folder.exists():
        return []
    found = []
    for path in folder.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue
        doc = io.read_json(str(path / MANIFEST))
        when = (doc or {}).get("published_at") or dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).isoformat(
            timespec="microseconds")
        found.append({"version": path.name, "published_at": when, "manifest": doc})
    return sorted(found, key=lambda v: (v["published_at"], v["version"]))


def verify(kv_root: str, version: str) -> dict:
    """The version's manifest once its files match their checksums; a clear error otherwise."""
    doc = manifest(kv_root, version)
    if doc is None:
        raise FileNotFoundError(f"key-value version {version} under {kv_root} is missing or incomplete (no {MANIFEST})")
    for name, expected in doc.get("checksums", {}).items():
        path = _local(kv_root) / "versions" / version / name
        if not path.exists() or _sha256(path) != expected:
            raise ValueError(f"key-value version {version}: {name} does not match its manifest checksum")
    return doc


def find_version(kv_root: str, **fields) -> str | None:
    """The newest complete version whose manifest has these field values (a retried publish reuses it)."""
    for entry in reversed(versions(kv_root)):
        doc = entry["manifest"] or {}
        if doc and all(doc.get(k) == v for k, v in fields.items()):
            return entry["version"]
    return None


def switch_current(kv_root: str, version: str, *, reason: str = "publish") -> dict:
    """Points readers at `version` in one atomic rename; the old version stays as `previous`. Only a complete
    version (with a manifest) can go live. Switching to the live version changes nothing. Every switch is
    appended to `switches.jsonl` (time, from, to, reason)."""
    if manifest(kv_root, version) is None:
        raise FileNotFoundError(f"key-value version {version} is missing or incomplete under {kv_root}: not switching")
    before = current(kv_root) or {}
    _log_unlogged_switch(kv_root, before)
    if before.get("version") == version:
        return before
    pointer = {"version": version, "previous": before.get("version")}
    io.write_json(f"{kv_root}/CURRENT", pointer)
    log_switch(kv_root, "embedded", before.get("version"), version, reason)
    return pointer


def log_switch(kv_root: str, store: str, from_version: str | None, to_version: str, reason: str) -> None:
    io.append_line(f"{kv_root}/{SWITCH_LOG}", json.dumps({
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "store": store, "from": from_version,
        "to": to_version, "reason": reason}, sort_keys=True))


def switch_log(kv_root: str) -> list[dict]:
    return io.read_lines_json(f"{kv_root}/{SWITCH_LOG}")


def _log_unlogged_switch(kv_root: str, pointer: dict) -> None:
    """A run killed between moving CURRENT and logging it: the log gets the switch on the next one."""
    live = pointer.get("version")
    if not live:
        return
    logged = [e for e in switch_log(kv_root) if e.get("store") == "embedded"]
    if not logged or logged[-1]["to"] != live:
        log_switch(kv_root, "embedded", pointer.get("previous"), live, "recovered: switched, not yet logged")


def prune(kv_root: str, *, keep: int) -> list[str]:
    """Deletes versions beyond the `keep` most recently published, never the live, the previous or the newest
    one. Call it only after the switch. Each goes in one rename to a hidden name, then is deleted, so a kill
    leaves a leftover (cleaned by the next run), never a half version under its own name."""
    root = _local(kv_root)
    pointer = current(kv_root) or {}
    ordered = [v["version"] for v in versions(kv_root)]
    protected = {pointer.get("version"), pointer.get("previous"), *ordered[-max(keep, 1):]}
    removed = []
    for name in ordered:
        if name in protected:
            continue
        doomed = root / "versions" / f".old-{name}-{uuid.uuid4().hex[:8]}"
        os.rename(root / "versions" / name, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(name)
    return removed


def subject_keys(meta: dict, person_id: str | None, context: dict | None = None) -> list[str]:
    """The list keys to try for one lookup, in order: the person's, then the segments matching `context`
    (dimension -> value; any of the version's `segment_dimensions`), most specific first, `global` last."""
    dims = tuple(meta.get("segment_dimensions", ["country", "device_type"]))
    keys = [f"segment:{key}" for key in lookup_keys(dims, context or {})]
    return [f"person:{person_id}", *keys] if person_id is not None else keys


def profile_key(id_: str) -> str:
    """Where a version keeps the profile context of a user_id the identity map does not know."""
    return PROFILE_KEY_PREFIX + id_


def with_profile(context: dict | None, raw_profile: str | None) -> dict:
    """The lookup's context over the stored profile's: what the storefront sends now wins."""
    return {**decode_context(raw_profile), **{k: v for k, v in (context or {}).items() if v}}


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

    def lookup(self, id_: str, *, context: dict | None = None, k: int | None = None, **dims) -> dict:
        """The person's list, else the most specific segment list matching the context (the request's `context`
        or keyword dimensions, e.g. country=, device_type=, entry_source=, over the user's stored profile),
        else `global`; never empty."""
        context = {**(context or {}), **dims}
        person_id = self.person_of(id_)
        if person_id is None:
            context = with_profile(context, self.list_value(profile_key(id_)))
        key, items, variant = self.first_list(subject_keys(self.meta, person_id, context))
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
