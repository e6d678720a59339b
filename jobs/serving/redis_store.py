"""The key-value export on a Redis server: the same versions and atomic switch as the embedded store.

Keys, for version V (the same name as the embedded store's version):

    recs:V:ids     hash  id -> person_id  (a user_id wins over an equal anonymous_id)
    recs:V:lists   hash  subject_key -> JSON {"variant", "items": [[item_id, score], ...]}  (`person:<id>`,
                   `segment:<key>`; the same value as the embedded store's, see `kvstore.list_rows`)
    recs:V:meta    hash  key -> JSON
    recs:current   string  the live version;  recs:previous  the one before (kept for rollback)
    recs:published  zset  version -> publish time;  recs:switches  list of every switch (JSON)

Executors write their partitions straight to Redis (`foreachPartition`), so the export scales with the
cluster; V's manifest goes into its meta hash last, and the pointer moves in one MULTI/EXEC (with its log
entry) only to a complete version, after the embedded store's CURRENT points at it (jobs/stages/publish.py).
Pruning follows the switch and never touches the live, previous or newest version.
"""
from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlsplit, urlunsplit

from jobs.serving.kvstore import (CONTROL, Lookup, answer, decode_list, list_rows, profile_key, subject_keys,
                                  with_profile)

PREFIX = "recs"
PUBLISHED = f"{PREFIX}:published"  # sorted set: version -> publish time (epoch seconds)
SWITCHES = f"{PREFIX}:switches"  # list: one JSON entry per pointer switch, appended in the switch's MULTI/EXEC
MANIFEST_FIELD = "__manifest__"  # in recs:V:meta, written last


def redact(url: str) -> str:
    """`url` without its password (and user), for every message, log line and stored record."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def connect(url: str, *, timeout: float = 0.25, max_connections: int = 64, asynchronous: bool = False):
    """A pooled client for readers: every call, connecting included, gives up after `timeout` seconds, and a
    caller waits at most `timeout` for a free connection of the pool of `max_connections`."""
    import redis
    import redis.asyncio

    module = redis.asyncio if asynchronous else redis
    pool = module.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout, socket_timeout=timeout,
        socket_connect_timeout=timeout, decode_responses=True)
    return module.Redis(connection_pool=pool)


def _client(url: str):
    import redis

    return redis.Redis.from_url(url, decode_responses=True)


def _writer(url: str, key: str, batch: int = 5_000):
    def write(rows):
        client = _client(url)
        pipe, n = client.pipeline(transaction=False), 0
        for field, value in rows:
            pipe.hset(key, field, value)
            n += 1
            if n % batch == 0:
                pipe.execute()
        pipe.execute()

    return write


def build_version(recommendations, identity, url: str, *, version: str, meta: dict,
                  manifest: dict | None = None, contexts=None) -> str:
    """Writes version `version` to Redis (does not switch `recs:current`). `manifest` (the embedded version's) is
    written last, into the meta hash, and the version is registered with its publish time: a version without
    it is incomplete and is never switched to."""
    client = _client(url)
    for part in ("ids", "lists", "meta"):
        client.delete(f"{PREFIX}:{version}:{part}")  # a retried night starts clean
    from pyspark.sql import functions as F

    # anonymous ids first, user ids after: on an equal id the user_id's person wins
    ids = identity.select("id", "person_id", (F.col("id_type") == "user_id").alias("is_user"))
    ids.where(~F.col("is_user")).select("id", "person_id").foreachPartition(_writer(url, f"{PREFIX}:{version}:ids"))
    ids.where(F.col("is_user")).select("id", "person_id").foreachPartition(_writer(url, f"{PREFIX}:{version}:ids"))
    list_rows(recommendations).foreachPartition(_writer(url, f"{PREFIX}:{version}:lists"))
    if contexts is not None:  # profile contexts of users the identity map does not know (jobs.coldstart)
        contexts.foreachPartition(_writer(url, f"{PREFIX}:{version}:lists"))
    client.hset(f"{PREFIX}:{version}:meta", mapping={k: json.dumps(v) for k, v in meta.items()})
    doc = manifest or {"version": version, "published_at": _now()}
    with client.pipeline(transaction=True) as tx:
        tx.hset(f"{PREFIX}:{version}:meta", MANIFEST_FIELD, json.dumps(doc))
        tx.zadd(PUBLISHED, {version: _epoch(doc.get("published_at"))})
        tx.execute()
    return version


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _epoch(iso: str | None) -> float:
    return dt.datetime.fromisoformat(iso).timestamp() if iso else dt.datetime.now(dt.UTC).timestamp()


def manifest(url: str, version: str | None) -> dict | None:
    """The manifest of a complete Redis version, or None (missing, pruned or left incomplete by a killed build)."""
    if not version:
        return None
    raw = _client(url).hget(f"{PREFIX}:{version}:meta", MANIFEST_FIELD)
    return json.loads(raw) if raw else None


def pointer(url: str) -> dict:
    client = _client(url)
    return {"version": client.get(f"{PREFIX}:current"), "previous": client.get(f"{PREFIX}:previous")}


def versions(url: str) -> list[dict]:
    """Registered versions, oldest published first: `{"version", "manifest"}`."""
    client = _client(url)
    return [{"version": v, "manifest": manifest(url, v)} for v in client.zrange(PUBLISHED, 0, -1)]


def switch_current(url: str, version: str, *, reason: str = "publish") -> dict:
    """Moves `recs:current` to a complete `version` (and `recs:previous` to the one before) in one MULTI/EXEC that
    also appends the switch to the `recs:switches` list. Switching to the live version changes nothing."""
    client = _client(url)
    if manifest(url, version) is None:
        raise FileNotFoundError(f"Redis holds no complete version {version}: not switching")
    before = client.get(f"{PREFIX}:current")
    if before == version:
        return pointer(url)
    entry = {"at": _now(), "store": "redis", "from": before, "to": version, "reason": reason}
    with client.pipeline(transaction=True) as tx:
        tx.set(f"{PREFIX}:current", version)
        if before:
            tx.set(f"{PREFIX}:previous", before)
        tx.rpush(SWITCHES, json.dumps(entry, sort_keys=True))
        tx.execute()
    return pointer(url)


def switch_log(url: str) -> list[dict]:
    return [json.loads(e) for e in _client(url).lrange(SWITCHES, 0, -1)]


def prune(url: str, *, keep: int) -> list[str]:
    """Unlinks versions beyond the `keep` most recently published, never the live, previous or newest one;
    call it only after the switch."""
    client = _client(url)
    ordered = client.zrange(PUBLISHED, 0, -1)
    live = pointer(url)
    protected = {live["version"], live["previous"], *ordered[-max(keep, 1):]}
    removed = [v for v in ordered if v not in protected]
    for old in removed:
        client.zrem(PUBLISHED, old)  # first: a kill after it leaves unlisted keys, never a listed half version
        client.unlink(*(f"{PREFIX}:{old}:{p}" for p in ("ids", "lists", "meta")))
    return removed


def live_version(url: str) -> str | None:
    return _client(url).get(f"{PREFIX}:current")


def _first_list(keys: list[str], values: list[str | None]) -> tuple[str | None, list | None, str]:
    for key, raw in zip(keys, values):
        items, variant = decode_list(raw)
        if items:
            return key, items, variant
    return None, None, CONTROL


class RedisReader(Lookup):
    """Lookups against the live Redis version (or a pinned one), over a pooled client with timeouts."""

    def __init__(self, url: str, version: str | None = None, *, client=None):
        self._client = client or connect(url)
        self.version = version or self._client.get(f"{PREFIX}:current")
        if not self.version:
            raise FileNotFoundError(f"no published version in Redis at {redact(url)} ({PREFIX}:current missing)")
        self.meta = {k: json.loads(v) for k, v in self._client.hgetall(f"{PREFIX}:{self.version}:meta").items()}
        if not self.meta:
            raise FileNotFoundError(f"Redis version {self.version} is missing or was pruned")

    def person_of(self, id_: str) -> str | None:
        return self._client.hget(f"{PREFIX}:{self.version}:ids", id_)

    def list_value(self, subject_key: str) -> str | None:
        return self._client.hget(f"{PREFIX}:{self.version}:lists", subject_key)

    def first_list(self, keys: list[str]):
        """One HMGET for every candidate list: a lookup is two round trips whatever falls back."""
        return _first_list(keys, self._client.hmget(f"{PREFIX}:{self.version}:lists", keys))


class AsyncRedisReader:
    """The same lookup for an event loop (`recs serve`): two round trips, over a shared asyncio pool."""

    def __init__(self, client, version: str, meta: dict):
        self._client, self.version, self.meta = client, version, meta

    @classmethod
    async def open(cls, client, version: str | None = None) -> "AsyncRedisReader":
        version = version or await client.get(f"{PREFIX}:current")
        if not version:
            raise FileNotFoundError(f"no published version in Redis ({PREFIX}:current missing)")
        meta = {k: json.loads(v) for k, v in (await client.hgetall(f"{PREFIX}:{version}:meta")).items()}
        if not meta:
            raise FileNotFoundError(f"Redis version {version} is missing or was pruned")
        return cls(client, version, meta)

    async def lookup(self, id_: str, *, context: dict | None = None, k: int | None = None, **dims) -> dict:
        context = {**(context or {}), **dims}
        async with self._client.pipeline(transaction=False) as pipe:  # the id and its profile: one round trip
            pipe.hget(f"{PREFIX}:{self.version}:ids", id_)
            pipe.hget(f"{PREFIX}:{self.version}:lists", profile_key(id_))
            person_id, profile = await pipe.execute()
        if person_id is None:
            context = with_profile(context, profile)
        keys = subject_keys(self.meta, person_id, context)
        key, items, variant = _first_list(keys, await self._client.hmget(f"{PREFIX}:{self.version}:lists", keys))
        return answer(self.version, id_, person_id, key, items, k, variant)
