"""Stage 9 of 9, publish: check the staged lists, then publish them as the night's version.

Nothing reaches the storefront unless every check passes: the output checks (quality/outputs.py) and the
model gate (stage 5). Publishing moves the staged lists into `recommendations/dt=D/`, builds a new
immutable key-value version and only then switches CURRENT, so a failure at any point leaves
yesterday's version live.
"""
from __future__ import annotations

import time

from pyspark.sql import SparkSession

from jobs.config import RecsConfig
from jobs.exclusions import excluded_pairs
from jobs.serving import kvstore
from jobs.storage import io
from jobs.storage.datasets import Datasets
from quality import QualityGateError
from quality.outputs import check_recommendations, coverage_figures


def run(spark: SparkSession, cfg: RecsConfig, run_date: str) -> dict:
    started = time.time()
    data = Datasets(cfg.data_root)
    layout = data.layout
    staged_path = data.staged_lists.path(run_date)
    staged = data.staged_lists.read_spark(spark, run_date)
    catalog = data.validated_catalog.read_spark(spark, run_date)
    purchases = excluded_pairs(data.purchases.read_spark(spark, run_date), run_date=run_date,
                               bought_lookback_days=cfg.filters.bought_lookback_days,
                               exclude_returned=cfg.filters.exclude_returned).select("person_id", "item_id")
    failures = check_recommendations(staged, catalog=catalog, purchases=purchases, top_n=cfg.top_n)
    if failures:
        raise QualityGateError(failures)
    coverage = coverage_figures(staged, catalog)
    io.promote(staged_path, data.published_lists.path(run_date))
    published = data.published_lists.read_spark(spark, run_date)
    identity = data.identity_map.read_spark(spark, run_date)
    meta = {"run_date": run_date, "model_version": published.select("model_version").first()[0],
            "top_n": cfg.top_n, "segment_dimensions": list(cfg.segments.dimensions)}
    keep = cfg.export.keep_versions
    version = kvstore.build_version(spark, published, identity, layout.kv(), meta=meta, keep=keep)
    if cfg.export.redis_url:  # both stores hold the new version before either pointer moves
        from jobs.serving import redis_store

        redis_store.build_version(published, identity, cfg.export.redis_url, version=version, meta=meta)
        redis_store.switch_current(cfg.export.redis_url, version, keep=keep)
    pointer = kvstore.switch_current(layout.kv(), version)
    fallback = data.gate_fallback(run_date)
    if not fallback:  # the next night's gate compares against this model's recipe
        data.models.mark_published(run_date)
    return {"recommendations": data.published_lists.path(run_date), "lists": "popularity" if fallback else "model",
            "kv_version": version,
            "kv_previous": pointer["previous"], "redis": bool(cfg.export.redis_url), "coverage": coverage,
            "seconds": round(time.time() - started, 1)}
