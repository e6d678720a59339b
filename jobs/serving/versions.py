"""The key-value versions of both stores, as `recs versions` lists them and `recs rollback` moves between them.

A rollback is one pointer switch per store to a complete version: the embedded store's target is checked
against its manifest (files and checksums) and Redis must still hold it, before either pointer moves; the
embedded CURRENT moves first and Redis after, as at publish, and both switches are logged.
"""
from __future__ import annotations

from jobs.serving import kvstore


class RollbackError(RuntimeError):
    """No version to roll back to, or one that is not complete in every store."""


def listing(kv_root: str, redis_url: str = "") -> dict:
    """Versions of the embedded store (oldest published first, with their manifests and which is live or
    previous), the switch log, and the same for Redis when a URL is given."""
    pointer = kvstore.current(kv_root) or {}
    out = {"embedded": {"current": pointer.get("version"), "previous": pointer.get("previous"),
                        "versions": [{**v, "live": v["version"] == pointer.get("version"),
                                      "previous": v["version"] == pointer.get("previous")}
                                     for v in kvstore.versions(kv_root)],
                        "switches": kvstore.switch_log(kv_root)}}
    if redis_url:
        from jobs.serving import redis_store

        rp = redis_store.pointer(redis_url)
        out["redis"] = {"current": rp["version"], "previous": rp["previous"],
                        "versions": [{**v, "live": v["version"] == rp["version"],
                                      "previous": v["version"] == rp["previous"]}
                                     for v in redis_store.versions(redis_url)],
                        "switches": redis_store.switch_log(redis_url)}
    return out


def rollback(kv_root: str, redis_url: str = "", to: str | None = None) -> dict:
    """Makes `to` (default: the previous version) live in both stores in one step each; returns the pointers."""
    pointer = kvstore.current(kv_root) or {}
    if not pointer.get("version"):
        raise RollbackError(f"nothing is published under {kv_root}: no version to roll back from")
    target = to or pointer.get("previous")
    if not target:
        raise RollbackError(f"live version {pointer['version']} has no previous version; pass --to VERSION "
                            f"(see `recs versions`)")
    try:
        kvstore.verify(kv_root, target)
    except (FileNotFoundError, ValueError) as exc:
        raise RollbackError(f"cannot roll back to {target}: {exc}") from exc
    if redis_url:
        from jobs.serving import redis_store

        if redis_store.manifest(redis_url, target) is None:
            raise RollbackError(f"cannot roll back to {target}: Redis no longer holds it (pruned, or never built); "
                                "nothing was switched")
    embedded = kvstore.switch_current(kv_root, target, reason="rollback")
    result = {"from": pointer["version"], "to": target, "embedded": embedded}
    if redis_url:
        result["redis"] = redis_store.switch_current(redis_url, target, reason="rollback")
    return result
