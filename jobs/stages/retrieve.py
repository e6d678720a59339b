"""Stage 7 of 9, retrieve: ScaNN top-N candidates per person from the night's ALS embeddings, inside Spark.

The driver builds the night's item index once (items only: the trained items available in the run day's
catalog, so an unavailable item can never be retrieved; items with too little history, new ones included,
are placed by their attributes: `jobs.models.content`, source `content`), with the settings
`jobs.models.ann.index_plan` picks for the catalog's size, and saves it beside the model (`models/dt=D/index/`).
Person vectors then stream through the executors with `mapInArrow`: each Python worker loads the saved index
once (`ann.cached_index`, keyed by path and version), searches its batches, drops the pairs `jobs.exclusions`
rules out (returned, bought within the lookback), over-fetching so `candidates.n` remain, and its rows are
written by the executors. Nothing proportional to the persons or the candidates reaches the driver: only a
bounded sample of persons for the nightly recall check and the filter counters (accumulators).
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import functions as F

from jobs.config import RecsConfig
from jobs.exclusions import REASONS, excluded_pairs
from jobs.experiments import arm_of, serves_previous
from jobs.models.als import Factors
from jobs.models.ann import (build_searcher, cached_index, exact_top_k, index_plan, recall_at_k, save_index,
                             search, search_top_n)
from jobs.models.content import CATALOG_COLUMNS, content_items
from jobs.models.mf import ITEMS_TABLE, PERSONS_TABLE, ItemIndex, MFModel
from jobs.storage import io
from jobs.storage.datasets import Datasets

log = logging.getLogger(__name__)

OUTPUT_SCHEMA = "person_id string, item_id string, score double, source string"


def search_partition(batches, *, index_dir: str, version: str, n: int, batch_persons: int, counters=None):
    """mapInArrow body: (person_id, factors, excluded_items, excluded_reasons) batches -> candidate rows.

    Runs on the executors; the index is loaded once per Python worker. `counters` (Spark accumulators, one per
    reason of `REASONS`, then persons) add up what each filter removed from the lists."""
    import pandas as pd

    loaded = cached_index(io.local_dir(index_dir), version)
    positions = pd.Index(loaded.item_ids)
    item_ids, sources = pa.array(loaded.item_ids, pa.string()), pa.array(loaded.sources, pa.string())
    for rb in batches:
        if rb.num_rows == 0:
            continue
        factors = rb.column(rb.schema.get_field_index("factors"))
        vectors = (pc.list_flatten(factors).to_numpy(zero_copy_only=False).astype(np.float32)
                   .reshape(rb.num_rows, -1))
        excluded = rb.column(rb.schema.get_field_index("excluded_items"))
        reasons = rb.column(rb.schema.get_field_index("excluded_reasons"))
        rows = pc.list_parent_indices(excluded).to_numpy(zero_copy_only=False).astype(np.int64)
        cols = positions.get_indexer(pc.list_flatten(excluded).to_numpy(zero_copy_only=False))
        codes = pc.list_flatten(reasons).to_numpy(zero_copy_only=False).astype(np.int64)
        indexed = cols >= 0  # an excluded item outside the index cannot come back anyway
        p, i, s, dropped = search_top_n(loaded.searcher, loaded.plan, vectors, n_items=len(loaded.item_ids),
                                        excluded_rows=rows[indexed], excluded_cols=cols[indexed],
                                        excluded_reasons=codes[indexed], n=n, n_reasons=len(REASONS),
                                        batch=batch_persons)
        if counters is not None:
            for counter, value in zip(counters, [*dropped.tolist(), rb.num_rows]):
                counter.add(int(value))
        take_i = pa.array(i)
        yield pa.RecordBatch.from_arrays(
            [rb.column(rb.schema.get_field_index("person_id")).take(pa.array(p)), item_ids.take(take_i),
             pa.array(s.astype(np.float64)), sources.take(take_i)],
            names=["person_id", "item_id", "score", "source"])


def _index_version(model_version: str, plan: dict, item_ids: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True).encode())
    digest.update("\n".join(item_ids.tolist()).encode())
    return f"{model_version}-{digest.hexdigest()[:10]}"


def _sample_recall(spark, persons_path: str, *, searcher, plan, item_vectors: np.ndarray, n: int, size: int,
                   seed: int) -> dict:
    """Recall@n of the index against exact search for a seeded sample of at most `size` persons (bounded: the
    only person vectors the driver sees)."""
    if size <= 0:
        return {"persons": 0}
    sample = (spark.read.parquet(persons_path).orderBy(F.xxhash64("person_id", F.lit(seed)))
              .limit(size).select("factors").toArrow())
    if sample.num_rows == 0 or n == 0:
        return {"persons": 0}
    queries = (pc.list_flatten(sample.column("factors").combine_chunks()).to_numpy(zero_copy_only=False)
               .astype(np.float32).reshape(sample.num_rows, -1))
    started = time.perf_counter()
    found, _ = search(searcher, plan, queries, n, threads=1)
    index_seconds = time.perf_counter() - started
    started = time.perf_counter()
    exact = exact_top_k(queries, item_vectors, n)
    exact_seconds = time.perf_counter() - started
    return {"persons": int(sample.num_rows), "k": n, "recall": round(recall_at_k(found, exact), 4),
            "index_seconds": round(index_seconds, 3), "exact_numpy_seconds": round(exact_seconds, 3)}


def run(spark, cfg: RecsConfig, run_date: str) -> dict:
    started = time.time()
    data = Datasets(cfg.data_root)
    fallback = data.gate_fallback(run_date)
    if fallback:  # the gate judged the model below popularity: the rank stage publishes popularity lists
        from schemas import load

        out = data.candidates.write_arrow(load("candidates").arrow().empty_table(), run_date)
        if serves_previous(cfg.experiment):
            data.previous_candidates.write_arrow(load("candidates").arrow().empty_table(), run_date)
        return {"path": out, "skipped": f"gate fallback to {fallback['baseline']}", "candidates": 0,
                "seconds": round(time.time() - started, 1)}

    # 1. the night's index, built once on the driver from the item factors (items, not persons)
    tables, meta = data.models.read(run_date, (ITEMS_TABLE,))
    items = Factors.from_table(tables[ITEMS_TABLE], "item_id")
    catalog = data.validated_catalog.read_arrow(run_date, list(CATALOG_COLUMNS))
    available = pc.filter(catalog.column("item_id"), pc.fill_null(catalog.column("is_available"), False))
    per_item = {r["item_id"]: r["persons"] for r in data.interactions.read_spark(spark, run_date)
                .groupBy("item_id").agg(F.count("*").alias("persons")).collect()}  # one row per item
    index, content = _item_index(cfg, catalog, available, items, per_item)
    plan = index_plan(len(index.ids), cfg.candidates.index)
    n = min(cfg.candidates.n, len(index.ids))
    build_started = time.time()
    searcher = build_searcher(index.vectors, k=max(n, 1), plan=plan)
    build_seconds = time.time() - build_started
    version = _index_version(meta.get("model_version", run_date), plan.as_dict(), index.ids)
    with tempfile.TemporaryDirectory(prefix="recs-index-") as tmp:
        save_index(tmp, searcher, plan, item_ids=index.ids, sources=index.sources, version=version)
        index_dir = data.models.write_index(run_date, tmp)
    persons_path = data.models.factors_path(run_date, PERSONS_TABLE)
    recall = _sample_recall(spark, persons_path, searcher=searcher, plan=plan, item_vectors=index.vectors, n=n,
                            size=cfg.candidates.recall_sample_persons, seed=cfg.seed)
    del searcher

    # 2. what each person's list must leave out, as lists per person (Spark)
    f = cfg.filters
    excluded = excluded_pairs(data.purchases.read_spark(spark, run_date), run_date=run_date,
                              bought_lookback_days=f.bought_lookback_days, exclude_returned=f.exclude_returned)
    reason_code = F.lit(None).cast("int")
    for code, reason in reversed(list(enumerate(REASONS))):
        reason_code = F.when(F.col("reason") == reason, F.lit(code)).otherwise(reason_code)
    per_person = excluded.groupBy("person_id").agg(F.collect_list("item_id").alias("excluded_items"),
                                                   F.collect_list(reason_code).alias("excluded_reasons"))

    # 3. the search, on the executors; they write the candidates
    sc = spark.sparkContext
    counters = [sc.accumulator(0) for _ in (*REASONS, "persons")]
    persons = (spark.read.parquet(persons_path).select("person_id", "factors")
               .join(per_person, "person_id", "left")
               .repartition(cfg.spark.shuffle_partitions))  # spread the persons over every core
    body = _partition_body(index_dir=index_dir, version=version, n=n,
                           batch_persons=cfg.candidates.batch_persons, counters=counters)
    search_started = time.time()
    out = data.candidates.write_spark(persons.mapInArrow(body, OUTPUT_SCHEMA), run_date)
    search_seconds = time.time() - search_started

    written = data.candidates.read_spark(spark, run_date)
    stats = written.agg(F.count("*").alias("candidates"), F.countDistinct("person_id").alias("persons")).first()
    lengths = written.groupBy("person_id").count().agg(F.min("count").alias("shortest"),
                                                       F.max("count").alias("longest")).first()
    pair_counts = {r["reason"]: r["count"] for r in excluded.groupBy("reason").count().collect()}
    filters = {
        "bought_lookback_days": f.bought_lookback_days, "exclude_returned": f.exclude_returned,
        **{reason: {"excluded_pairs": int(pair_counts.get(reason, 0)),
                    "list_entries_removed": int(counters[code].value)}
           for code, reason in enumerate(REASONS)},
        "unavailable": {"model_items_not_indexed": int((~np.isin(items.ids, index.ids)).sum())}}
    summary = {"path": out, "model_version": meta.get("model_version"), "index": {
        "path": index_dir, "version": version, "plan": plan.as_dict(), "build_seconds": round(build_seconds, 1),
        "recall_vs_exact": recall},
        "persons": stats["persons"], "persons_searched": int(counters[-1].value),
        "candidates": stats["candidates"], "list_length": {"n": n, "shortest": lengths["shortest"],
                                                            "longest": lengths["longest"]},
        "indexed_items": len(index.ids), "cold_items": content["content_items"], "content": content,
        "filters": filters,
        "search_seconds": round(search_seconds, 1), "seconds": round(time.time() - started, 1)}
    if serves_previous(cfg.experiment):
        summary["previous"] = _previous_model_candidates(cfg, data, run_date, catalog, available, excluded, per_item)
        summary["seconds"] = round(time.time() - started, 1)
    log.info("retrieve %s: %s index over %d items, recall@%d %.4f on %d persons", run_date, plan.method,
             len(index.ids), n, recall.get("recall", float("nan")), recall.get("persons", 0))
    return summary


def _partition_body(**kwargs):
    """The mapInArrow function with its settings bound (a plain closure pickles to the executors)."""
    def body(batches):
        return search_partition(batches, **kwargs)

    return body


def _item_index(cfg: RecsConfig, catalog, available, items: Factors, per_item: dict) -> tuple[ItemIndex, dict]:
    """The searched items: learned vectors of the available items with enough history, content vectors for
    the other available ones (the rule: `jobs.models.content.content_items`)."""
    c = cfg.content
    keep, content_ids, content_vectors, summary = content_items(
        catalog, items.ids, items.vectors, per_item, min_interactions=c.min_interactions, alpha=c.ridge_alpha,
        max_features=c.max_features, norm_quantile=c.norm_quantile)
    rows = np.flatnonzero(np.isin(items.ids, keep))
    no_persons = Factors(np.zeros(0, dtype=object), np.zeros((0, items.vectors.shape[1]), np.float32))
    learned = MFModel(no_persons, Factors(items.ids[rows], items.vectors[rows]))
    return learned.item_index(available.to_numpy(zero_copy_only=False),
                              extra=Factors(content_ids, content_vectors)), summary


def _previous_model_candidates(cfg: RecsConfig, data: Datasets, run_date: str, catalog, available, excluded,
                               per_item: dict) -> dict:
    """Candidates of the last published model for the persons of the arms that serve it (only those persons are
    searched). Without a published model before tonight, the night's model is all there is: its candidates.
    Searched on the driver (one arm's share of the persons), unlike the night's own retrieval."""
    arms = {a.name for a in cfg.experiment.arms if a.serves == "previous"}
    before = data.models.latest_published_before(run_date)
    if before is None:
        tonight = data.candidates.read_arrow(run_date)
        persons = np.unique(tonight.column("person_id").to_numpy(zero_copy_only=False))
        mine = pc.is_in(tonight.column("person_id"),
                        value_set=pa.array([p for p in persons if arm_of(cfg.experiment, p) in arms], pa.string()))
        data.previous_candidates.write_arrow(tonight.filter(mine).select(["person_id", "item_id", "score", "source"]),
                                             run_date)
        return {"model_version": None, "note": "no model published before tonight: the night's model serves"}
    tables, meta = data.models.read(before["run_date"], (PERSONS_TABLE, ITEMS_TABLE))
    model = MFModel.from_tables(tables)
    persons = np.asarray([p for p in model.persons.ids if arm_of(cfg.experiment, p) in arms], dtype=object)
    index, _ = _item_index(cfg, catalog, available, model.items, per_item)
    pairs = excluded.select("person_id", "item_id").toArrow()
    found = model.recommend(persons, index, exclude_persons=pairs.column("person_id").to_numpy(zero_copy_only=False),
                            exclude_items=pairs.column("item_id").to_numpy(zero_copy_only=False),
                            n=cfg.candidates.n, index_settings=cfg.candidates.index)
    data.previous_candidates.write_arrow(found.select(["person_id", "item_id", "score", "source"]), run_date)
    return {"model_version": meta.get("model_version"), "persons": len(persons), "candidates": found.num_rows}
