"""The retrieve stage on a generated shop's night (default: the 100k-shopper shop of bench_pipeline.py), inside Spark,
against the driver-side search it replaced (`MFModel.recommend` in one process), on the same model and exclusions.

The shop's model, catalog and interactions for `--date` are copied into a work folder (the shop is only read). The
`purchases` dataset is written from the interactions' `purchased` pairs (returned false, bought on D), so both paths
exclude exactly what the old stage excluded. Reports both wall times, the Spark path's recall@n against the
driver path, the index plan and its nightly recall check, and peak RSS (Python + JVM).

    python bench/bench_retrieve_stage.py [--shop /tmp/recs-bench/shop-100000x20000x90 --date 2026-10-29]
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import PeakRSS, append_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shop", default="/tmp/recs-bench/shop-100000x20000x90")
    parser.add_argument("--date", default="2026-10-29")
    parser.add_argument("--work", default="/tmp/recs-bench-retrieve-stage")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    import pyarrow as pa
    import pyarrow.compute as pc

    from jobs.config import load_config
    from jobs.models.als import Factors
    from jobs.models.content import cold_item_vectors
    from jobs.models.mf import MFModel
    from jobs.spark import spark_session
    from jobs.stages import retrieve
    from jobs.storage.datasets import Datasets
    from schemas import load

    shop, work, ds = Datasets(args.shop), Path(args.work), args.date
    shutil.rmtree(work, ignore_errors=True)
    cfg = load_config(data_root=str(work))
    data = Datasets(str(work))
    for src, dst in ((shop.models.path(ds), data.models.path(ds)),
                     (shop.validated_catalog.path(ds), data.validated_catalog.path(ds))):
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("PUBLISHED", "index"))
    bought = shop.interactions.read_arrow(ds, ["person_id", "item_id", "purchased"]).filter(pc.field("purchased"))
    when = dt.datetime.fromisoformat(f"{ds}T12:00:00+00:00")
    schema = load("purchases").arrow()
    data.purchases.write_arrow(pa.table({
        "person_id": bought.column("person_id"), "item_id": bought.column("item_id"),
        "last_purchase_time": pa.array([when] * bought.num_rows, schema.field("last_purchase_time").type),
        "returned": pa.array(np.zeros(bought.num_rows, bool))}, schema=schema), ds)

    with PeakRSS() as rss:
        spark = spark_session(cfg.spark, app_name="bench-retrieve-stage")
        started = time.perf_counter()
        summary = retrieve.run(spark, cfg, ds)
        spark_seconds = time.perf_counter() - started
        got = data.candidates.read_arrow(ds, ["person_id", "item_id"]).to_pandas()

        # the stage before this change: everything on the driver, one process
        started = time.perf_counter()
        tables, _ = data.models.read(ds, ("persons", "items"))
        model = MFModel.from_tables(tables)
        catalog = data.validated_catalog.read_arrow(ds, ["item_id", "is_available", "category_path", "brand"])
        available = pc.filter(catalog.column("item_id"), pc.fill_null(catalog.column("is_available"), False))
        cold_ids, cold_vectors = cold_item_vectors(catalog, model.items.ids, model.items.vectors)
        index = model.item_index(available.to_numpy(zero_copy_only=False), extra=Factors(cold_ids, cold_vectors))
        expected = model.recommend(model.persons.ids, index,
                                   exclude_persons=bought.column("person_id").to_numpy(zero_copy_only=False),
                                   exclude_items=bought.column("item_id").to_numpy(zero_copy_only=False),
                                   n=cfg.candidates.n, index_settings=cfg.candidates.index)
        driver_seconds = time.perf_counter() - started
        expected = expected.select(["person_id", "item_id"]).to_pandas()
    merged = got.merge(expected, on=["person_id", "item_id"])
    recall = len(merged) / len(expected)
    plan = summary["index"]["plan"]
    lines = [f"shop {args.shop} night {ds}: {summary['persons']:,} persons, {summary['indexed_items']:,} items "
             f"indexed ({plan['method']}), n = {cfg.candidates.n}, spark.master {cfg.spark.master}. Host shared with "
             "other agents while this ran.", "",
             "| path | wall s | candidates | recall@n vs the driver path |", "|---|---|---|---|",
             f"| retrieve stage, mapInArrow on executors (index build + save + recall check + search + write) "
             f"| {spark_seconds:.1f} | {summary['candidates']:,} | {recall:.4f} |",
             f"| driver-side `MFModel.recommend` (the stage before; search only, nothing written) | {driver_seconds:.1f} "
             f"| {len(expected):,} | 1 |", "",
             f"- nightly recall check: {summary['index']['recall_vs_exact']}",
             f"- search {summary['search_seconds']} s, index build {summary['index']['build_seconds']} s; "
             f"list length {summary['list_length']}; filters {summary['filters']}",
             f"- peak RSS (Python + JVM) {rss.peak_gb:.1f} GB"]
    spark.stop()
    if args.no_append:
        print("\n".join(lines))
    else:
        append_results("bench_retrieve_stage.py: the retrieve stage inside Spark vs on the driver", lines)


if __name__ == "__main__":
    main()
