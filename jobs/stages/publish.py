"""Stage 9 of 9, publish: check the staged lists, then publish them as the night's version.

Nothing reaches the storefront unless every check passes: the output checks (quality/outputs.py) and the
model gate (stage 6). Publishing is a transaction of idempotent steps, so a retry after a failure (or a
kill -9) at any step completes it:

1. check the staged lists and put them at `recommendations/dt=D/` (hard links: the staged folder stays until
   the very end, so a retry starts from the same input; without it, the published lists are resumed);
2. build the embedded key-value version, unless a complete one of the same inputs and config exists (a retry
   reuses it), then the Redis version if Redis holds no complete one of that name;
3. switch the embedded CURRENT, mark the model published, and only then switch Redis: Redis never serves a
   version the embedded store and the published marker do not know;
4. prune old versions (after the switch), remove the staged folder.

A date older than the live lists (a backfill) publishes its Parquet lists, and with `publish.backfill: version`
also builds a key-value version; it moves the live pointers only with `publish.backfill: promote`
(`recs run --promote`).
"""
from __future__ import annotations

import logging
import time

from pyspark.sql import SparkSession

from jobs.coldstart import latest_profiles, profile_contexts
from jobs.config import RecsConfig
from jobs.exclusions import excluded_pairs
from jobs.serving import kvstore
from jobs.storage import io
from jobs.storage.datasets import Datasets
from quality import QualityGateError
from quality.outputs import check_recommendations, coverage_figures

log = logging.getLogger(__name__)


def live_run_date(kv_root: str) -> str | None:
    """The date of the lists the storefront reads now (None before the first publish)."""
    live = (kvstore.current(kv_root) or {}).get("version")
    if not live:
        return None
    return (kvstore.manifest(kv_root, live) or {}).get("run_date") or live[:10]


def run(spark: SparkSession, cfg: RecsConfig, run_date: str) -> dict:
    started = time.time()
    data = Datasets(cfg.data_root)
    kv_root = data.layout.kv()
    staged_path, published_path = data.staged_lists.path(run_date), data.published_lists.path(run_date)
    coverage = None
    if data.staged_lists.exists(run_date):
        staged = data.staged_lists.read_spark(spark, run_date)
        catalog = data.validated_catalog.read_spark(spark, run_date)
        purchases = excluded_pairs(data.purchases.read_spark(spark, run_date), run_date=run_date,
                                   bought_lookback_days=cfg.filters.bought_lookback_days,
                                   exclude_returned=cfg.filters.exclude_returned).select("person_id", "item_id")
        failures = check_recommendations(staged, catalog=catalog, purchases=purchases, top_n=cfg.top_n)
        if failures:
            raise QualityGateError(failures)
        coverage = coverage_figures(staged, catalog)
        io.promote(staged_path, published_path, keep_staged=True)
    elif data.published_lists.exists(run_date):  # an earlier attempt got past step 1 and removed the staging
        log.info("publish %s: no staged lists, resuming with the published ones at %s", run_date, published_path)
    else:
        raise FileNotFoundError(f"no staged lists for {run_date} at {staged_path} (and none published): "
                                "run the rank stage first")

    live_date = live_run_date(kv_root)
    backfill = live_date is not None and run_date < live_date
    mode = cfg.publish.backfill if backfill else "promote"
    summary = {"recommendations": published_path, "backfill": backfill, "live_run_date": live_date,
               "lists": "popularity" if data.gate_fallback(run_date) else "model", "coverage": coverage,
               "redis": bool(cfg.export.redis_url)}
    if mode == "lists":
        log.info("publish %s: older than the live lists (%s); lists written, live pointer untouched "
                 "(publish.backfill=lists)", run_date, live_date)
        io.remove_dir(staged_path)
        return {**summary, "kv_version": None, "switched": False, "seconds": round(time.time() - started, 1)}

    published = data.published_lists.read_spark(spark, run_date)
    identity = data.identity_map.read_spark(spark, run_date)
    model_version = published.select("model_version").first()[0]
    meta = {"run_date": run_date, "model_version": model_version, "top_n": cfg.top_n,
            "segment_dimensions": list(cfg.segments.dimensions)}
    # the profiles too: a user's stored profile context is part of the version (a corrected profile delivery
    # must not find the version built before it)
    fingerprint = {"inputs_digest": io.files_digest(published_path, data.identity_map.path(run_date),
                                                    *data.profile_folders_until(run_date)),
                   "config_digest": cfg.fingerprint(), "model_version": model_version}
    version = kvstore.find_version(kv_root, **fingerprint)
    reused = version is not None
    # users with a profile and no person yet: their profile context, so a lookup of their user_id uses it
    contexts = profile_contexts(latest_profiles(data.profiles_until(spark, run_date)), identity,
                                cfg.segments.dimensions)
    if not reused:
        version = kvstore.build_version(spark, published, identity, kv_root, meta=meta, manifest=fingerprint,
                                        contexts=contexts)
    if cfg.export.redis_url:
        from jobs.serving import redis_store

        if redis_store.manifest(cfg.export.redis_url, version) is None:
            redis_store.build_version(published, identity, cfg.export.redis_url, version=version, meta=meta,
                                      manifest=kvstore.manifest(kv_root, version), contexts=contexts)

    pointer, pruned = kvstore.current(kv_root) or {}, []
    if mode == "promote":
        reason = "backfill --promote" if backfill else "publish"
        pointer = kvstore.switch_current(kv_root, version, reason=reason)
        if summary["lists"] == "model":  # the next night's gate compares against this model's recipe
            data.models.mark_published(run_date)
        if cfg.export.redis_url:  # last: only to a version the embedded store and the marker already know
            redis_store.switch_current(cfg.export.redis_url, version, reason=reason)
        pruned = kvstore.prune(kv_root, keep=cfg.export.keep_versions)
        if cfg.export.redis_url:
            redis_store.prune(cfg.export.redis_url, keep=cfg.export.keep_versions)
    io.remove_dir(staged_path)
    return {**summary, "kv_version": version, "kv_reused": reused, "switched": mode == "promote",
            "kv_live": pointer.get("version"), "kv_previous": pointer.get("previous"), "kv_pruned": pruned,
            "seconds": round(time.time() - started, 1)}
