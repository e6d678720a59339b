"""The key-value export on a Redis server: the same versions and atomic switch as the embedded store.

Keys, for version V (the same name as the embedded store's version):

    recs:V:ids     hash  id -> person_id  (a user_id wins over an equal anonymous_id)
    recs:V:lists   hash  subject_key -> JSON {"variant", "items": [[item_id, score], ...]}  (`person:<id>`,
                   `segment:<key>`; the same value as the embedded store's, see `kvstore.list_rows`)
    recs:V:meta    hash  key -> JSON
    recs:current   string  the live version;  recs:previous  the one before (kept for rollback)

Executors write their partitions straight to Redis (`foreachPartition`), so the export scales with the
cluster; the pointer moves in one MULTI/EXEC only after every key of V is written. Older versions
beyond `keep` are unlinked.
"""
from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

from jobs.serving.kvstore import CONTROL, Lookup, answer, decode_list, list_rows, subject_keys

PREFIX = "recs"


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


def build_version(recommendations, identity, url: str, *, version: str, meta: dict) -> str:
    """Writes version `version` to Redis (does not switch `recs:current`)."""
    client = _client(url)
    for part in ("ids", "lists", "meta"):
        client.delete(f"{PREFIX}:{version}:{part}")  # a retried night starts clean
    from pyspark.sql import functions as F

    # anonymous ids first, user ids after: on an equal id the user_id's person wins
    ids = identity.select("id", "person_id", (F.col("id_type") == "user_id").alias("is_user"))
    ids.where(~F.col("is_user")).select("id", "person_id").foreachPartition(_writer(url, f"{PREFIX}:{version}:ids"))
    ids.where(F.col("is_user")).select("id", "person_id").foreachPartition(_writer(url, f"{PREFIX}:{version}:ids"))
    list_rows(recommendations).foreachPartition(_writer(url, f"{PREFIX}:{version}:lists"))
    client.hset(f"{PREFIX}:{version}:meta", mapping={k: json.dumps(v) for k, v in meta.items()})
    return version


def switch_current(url: str, version: str, *, keep: int = 3) -> dict:
    """Moves `recs:current` to `version` atomically and unlinks versions older than the last `keep`."""
    client = _client(url)
    before = client.get(f"{PREFIX}:current")
    with client.pipeline(transaction=True) as tx:
        tx.set(f"{PREFIX}:current", version)
        if before and before != version:
            tx.set(f"{PREFIX}:previous", before)
        tx.rpush(f"{PREFIX}:versions", version)
        tx.execute()
    versions = list(dict.fromkeys(client.lrange(f"{PREFIX}:versions", 0, -1)))
    protected = {version, client.get(f"{PREFIX}:previous")}
    for old in versions[:-keep]:
        if old not in protected:
            client.unlink(*(f"{PREFIX}:{old}:{p}" for p in ("ids", "lists", "meta")))
            client.lrem(f"{PREFIX}:versions", 0, old)
    return {"version": version, "previous": client.get(f"{PREFIX}:previous")}


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

    async def lookup(self, id_: str, *, country: str | None = None, device_type: str | None = None,
                     k: int | None = None) -> dict:
        person_id = await self._client.hget(f"{PREFIX}:{self.version}:ids", id_)
        keys = subject_keys(self.meta, person_id, country=country, device_type=device_type)
        key, items, variant = _first_list(keys, await self._client.hmget(f"{PREFIX}:{self.version}:lists", keys))
        return answer(self.version, id_, person_id, key, items, k, variant)
