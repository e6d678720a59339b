"""ALS training time: implicit (as `jobs.models.mf.MFModel.fit`) vs Spark MLlib's ALS (implicitPrefs=True), same data,
rank and iterations, in one process; plus each model's NDCG@10 on the same holdout as a sanity check. The third row
is the `als.engine: spark` path as the train stage runs it (`jobs.models.spark_als.fit_frames`): the pairs read
by Spark from Parquet, ids numbered on the executors, the fit, and both factor tables written by the executors,
then read back as the later stages read them; beside it the implicit engine's train path (CSR from the same
Parquet with pyarrow, fit, tables written with pyarrow).

Data (default): the Online Retail purchase matrix the pipeline would train on for 2011-11-08 (customers and
guest invoices, purchase lines with the conf's weight and recency decay); holdout = the products each known
customer newly buys 2011-11-09..2011-12-09 (as bench_online_retail.py). With `--interactions PATH` any
interactions folder (person_id, item_id, weight; e.g. a generated shop's `interactions/dt=D`) is used
instead, with a seeded 80/20 per-person random holdout.

Timing order: implicit, Spark, implicit again (the host is shared and noisy, so the ratio uses the mean of the
two implicit runs that sandwich Spark). Spark's time is `createDataFrame` (Arrow) + `fit` + materialising both
factor tables, after a warm-up job so the JVM start is not counted; it runs `spark.master` of the conf.
Confidence differs by definition: implicit uses alpha * w, Spark 1 + alpha * w; Spark scales its
regularization by each row's number of ratings, so `--spark-reg` defaults to reg / mean ratings per person.

    python bench/bench_als_vs_spark.py                  # rank 64, 15 iterations, appended to bench/RESULTS.md
    python bench/bench_als_vs_spark.py --quick          # rank 16, 3 iterations, no append
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import append_results  # noqa: E402
from bench.bench_movielens import exact_top_k, markdown_table  # noqa: E402

BENCH = Path(__file__).resolve().parent
K = 10


def retail_matrix(source: str, cfg, *, cut: str, test_end: str):
    """(train rows person_id/item_id/weight, truth) from Online Retail, as the pipeline would weight them."""
    from bench.bench_online_retail import decayed_lines, purchase_split
    from jobs.importers.online_retail import convert_order_lines, read_order_lines

    events = convert_order_lines(read_order_lines(source)).events
    train, truth = purchase_split(events, cut=cut, test_end=test_end)
    rows = decayed_lines(train, cut=cut, weight=cfg.event_weights.purchase,
                         half_life_days=cfg.interactions.half_life_days, guests=True)
    return rows, truth


def folder_matrix(path: str, seed: int):
    """(train, truth) from an interactions folder: a seeded 80/20 split of each person's items."""
    from bench.bench_movielens import read_table
    from jobs.evaluation import random_split_per_user

    rows = read_table(path, ["person_id", "item_id", "weight"])
    train, test = random_split_per_user(rows, ratio=0.8, seed=seed)
    return train.reset_index(drop=True), test[["person_id", "item_id"]].reset_index(drop=True)


def ndcg(user_vecs, item_vecs, matrix, persons, items, truth) -> float:
    """NDCG@10 of exact top-10 unseen items for the persons in `truth`."""
    import numpy as np
    import pandas as pd

    from jobs.evaluation import ndcg_at_k

    wanted = np.flatnonzero(pd.Index(persons).isin(pd.Index(truth["person_id"].unique())))
    sub = matrix[wanted].tocoo()
    r, c, rank = exact_top_k(user_vecs[wanted], item_vecs, exclude_rows=sub.row, exclude_cols=sub.col, k=K)
    recs = pd.DataFrame({"person_id": persons[wanted][r], "item_id": items[c], "rank": rank})
    return ndcg_at_k(recs, truth, k=K)


def time_implicit(interactions, als, seed: int):
    from jobs.models.mf import MFModel

    started = time.perf_counter()
    model = MFModel.fit(interactions, als, seed=seed)
    return time.perf_counter() - started, model.persons.vectors, model.items.vectors


def time_spark(spark, matrix, als, *, reg: float, seed: int):
    """Spark MLlib implicit ALS on the same CSR; returns (convert s, fit s, user factors, item factors)."""
    import numpy as np
    import pandas as pd
    from pyspark.ml.recommendation import ALS

    coo = matrix.tocoo()
    frame = pd.DataFrame({"user": coo.row.astype("int32"), "item": coo.col.astype("int32"),
                          "rating": coo.data.astype("float32")})
    started = time.perf_counter()
    df = spark.createDataFrame(frame).cache()
    df.count()
    convert = time.perf_counter() - started
    started = time.perf_counter()
    model = ALS(rank=als.factors, maxIter=als.iterations, regParam=reg, alpha=als.alpha, implicitPrefs=True,
                userCol="user", itemCol="item", ratingCol="rating", seed=seed, nonnegative=False).fit(df)
    # factors are lazy until used: collecting them (bounded: persons x rank) ends the timing
    users = model.userFactors.toPandas()
    items = model.itemFactors.toPandas()
    fit = time.perf_counter() - started
    df.unpersist()
    user_vecs = np.zeros((matrix.shape[0], als.factors), np.float32)
    item_vecs = np.zeros((matrix.shape[1], als.factors), np.float32)
    user_vecs[users["id"].to_numpy()] = np.stack(users["features"].to_numpy())
    item_vecs[items["id"].to_numpy()] = np.stack(items["features"].to_numpy())
    return convert, fit, user_vecs, item_vecs


def time_engines(spark, train, als, *, seed: int, workdir: str):
    """The train stage's two engines on the same pairs: (implicit s, spark s, spark counts, {person_id: vector},
    {item_id: vector}) for the Spark engine's factors as read back from its files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.models.als import Factors
    from jobs.models.mf import InteractionMatrix, MFModel
    from jobs.models.spark_als import fit_frames

    pairs_path = f"{workdir}/pairs.parquet"
    pq.write_table(pa.Table.from_pandas(train[["person_id", "item_id", "weight"]].astype(
        {"person_id": str, "item_id": str}), preserve_index=False), pairs_path)

    started = time.perf_counter()
    table = pq.read_table(pairs_path)
    model = MFModel.fit(InteractionMatrix.from_pairs(table.column("person_id"), table.column("item_id"),
                                                     table.column("weight").to_numpy()), als, seed=seed)
    for name, t in model.tables().items():
        pq.write_table(t, f"{workdir}/implicit-{name}.parquet")
    implicit_s = time.perf_counter() - started

    started = time.perf_counter()
    fit = fit_frames(spark.read.parquet(pairs_path), dataclasses.replace(als, engine="spark"), seed=seed)
    fit.persons.write.mode("overwrite").parquet(f"{workdir}/spark-persons.parquet")
    fit.items.write.mode("overwrite").parquet(f"{workdir}/spark-items.parquet")
    fit.release()
    spark_s = time.perf_counter() - started
    persons = Factors.from_table(pq.read_table(f"{workdir}/spark-persons.parquet"), "person_id")
    items = Factors.from_table(pq.read_table(f"{workdir}/spark-items.parquet"), "item_id")
    return implicit_s, spark_s, fit.counts, persons, items


def aligned(factors, ids):
    """`factors`' vectors in the order of `ids` (zeros for an id it lacks)."""
    import numpy as np
    import pandas as pd

    out = np.zeros((len(ids), factors.vectors.shape[1]), np.float32)
    at = pd.Index(factors.ids).get_indexer(np.asarray(ids, dtype=object))
    out[at >= 0] = factors.vectors[at[at >= 0]]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail"
                                           / "online_retail.parquet"))
    p.add_argument("--interactions", help="an interactions folder to use instead of Online Retail")
    p.add_argument("--conf", default=str(BENCH / "conf" / "online_retail.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--spark-reg", type=float, help="Spark regParam (default: reg / mean ratings per person)")
    p.add_argument("--quick", action="store_true", help="smoke run: rank 16, 3 iterations, no append")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from jobs.spark import spark_session
    from jobs.config import load_config
    from jobs.models.mf import InteractionMatrix

    cfg = load_config(args.conf, overrides=args.set)
    rank, iterations = (16, 3) if args.quick else (args.rank, args.iterations)
    als = dataclasses.replace(cfg.als, factors=rank, iterations=iterations)
    if args.interactions:
        train, truth = folder_matrix(args.interactions, cfg.seed)
        data = f"interactions at {args.interactions} (80/20 per-person random holdout)"
    else:
        train, truth = retail_matrix(args.source, cfg, cut="2011-11-08", test_end="2011-12-09")
        data = ("Online Retail up to 2011-11-08, customers + guest invoices, half-life "
                f"{cfg.interactions.half_life_days:g} d; holdout: new products 2011-11-09..12-09")
    interactions = InteractionMatrix.from_pairs(train["person_id"].to_numpy(), train["item_id"].to_numpy(),
                                                train["weight"].to_numpy())
    matrix, persons, items = interactions.matrix, interactions.person_ids, interactions.item_ids
    spark_reg = args.spark_reg if args.spark_reg is not None else als.regularization / (matrix.nnz / matrix.shape[0])
    print(f"{matrix.shape[0]:,} persons x {matrix.shape[1]:,} items, {matrix.nnz:,} non-zeros; rank {rank}, "
          f"{iterations} iterations; implicit reg {als.regularization:g}, Spark regParam {spark_reg:.4g}, "
          f"alpha {als.alpha:g}", flush=True)

    load_before = os.getloadavg()[0]
    spark = spark_session(cfg.spark, app_name="recs-bench-als")
    spark.range(1000).selectExpr("sum(id)").collect()  # warm-up: JVM start and first job not timed
    first, user_vecs, item_vecs = time_implicit(interactions, als, cfg.seed)
    implicit_ndcg = ndcg(user_vecs, item_vecs, matrix, persons, items, truth)
    convert, fit, s_users, s_items = time_spark(spark, matrix, als, reg=spark_reg, seed=cfg.seed)
    spark_ndcg = ndcg(s_users, s_items, matrix, persons, items, truth)
    second, *_ = time_implicit(interactions, als, cfg.seed)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="recs-bench-als-") as workdir:
        engine_implicit_s, engine_spark_s, engine_counts, e_persons, e_items = time_engines(
            spark, train, als, seed=cfg.seed, workdir=workdir)
    engine_ndcg = ndcg(aligned(e_persons, persons.astype(str)), aligned(e_items, items.astype(str)), matrix,
                       persons, items, truth)
    spark.stop()

    implicit_s = statistics.mean([first, second])
    spark_s = convert + fit
    rows = [{"name": "implicit (train_als, CG)", "s": f"{first:.1f} / {second:.1f} (mean {implicit_s:.1f})",
             "ratio": "1", "ndcg": implicit_ndcg, "settings": f"reg {als.regularization:g}, alpha {als.alpha:g}, "
                                                              f"{als.threads} threads"},
            {"name": f"Spark MLlib ALS, implicitPrefs ({cfg.spark.master})",
             "s": f"{spark_s:.1f} (convert {convert:.1f} + fit {fit:.1f})",
             "ratio": f"{spark_s / implicit_s:.1f}x (fit only {fit / implicit_s:.1f}x)", "ndcg": spark_ndcg,
             "settings": f"regParam {spark_reg:.4g}, alpha {als.alpha:g}, 10x10 blocks"},
            {"name": "train stage, als.engine implicit (read, fit, write)", "s": f"{engine_implicit_s:.1f}",
             "ratio": "1 (this pair's baseline)", "ndcg": implicit_ndcg, "settings": "pyarrow read and write"},
            {"name": "train stage, als.engine spark (read, number ids, fit, executors write)",
             "s": f"{engine_spark_s:.1f}", "ratio": f"{engine_spark_s / engine_implicit_s:.1f}x", "ndcg": engine_ndcg,
             "settings": f"regParam {engine_counts['reg_param']:.4g} (jobs.models.spark_als.reg_param)"}]
    lines = [f"data: {data}; {matrix.shape[0]:,} x {matrix.shape[1]:,}, {matrix.nnz:,} non-zeros; "
             f"rank {rank}, {iterations} iterations; same CSR, same process; order implicit, Spark, implicit"
             + ("; QUICK smoke run" if args.quick else ""), "",
             *markdown_table(rows, [("engine", "name"), ("train s", "s"), ("Spark / implicit", "ratio"),
                                    ("NDCG@10 (holdout)", "ndcg"), ("settings", "settings")]), "",
             f"host load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on "
             f"{os.cpu_count()} cores (other work shares them).",
             "anchor: shared/anchors/peer-benchmarks.md reports Spark 13-17x implicit CG at rank 64 "
             "(synthetic 50k x 20k, 0.9M non-zeros) on this machine."]
    if args.quick or args.no_append:
        print("\n".join(lines))
    else:
        append_results("bench_als_vs_spark: ALS training, implicit vs Spark MLlib", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
