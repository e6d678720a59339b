"""Implicit-feedback ALS on Spark MLlib (`als.engine: spark`): the scale-out path for an interaction matrix that
outgrows one node. The same `als` settings as implicit's engine (`jobs.models.mf.AlsSettings`), mapped:

- `rank` = factors, `maxIter` = iterations, `alpha` = alpha, `seed` = seed, `implicitPrefs=True`,
  `nonnegative=False`;
- `regParam` = regularization / mean rated items per person: MLlib scales each row's penalty by its number of
  ratings (ALS-WR), implicit does not, so this gives an average person the penalty implicit gives everyone;
- confidence: implicit uses alpha * w, MLlib 1 + alpha * w (the same up to the constant 1).

MLlib needs integer ids: each side's distinct ids are numbered on the executors (sorted, then `zipWithIndex`)
and joined back onto the factors there. `fit_frames` returns the factor tables as DataFrames for the executors
to write; `fit_matrix` (the gate's and tuning's fits on a holdout already in the driver's memory) brings back
only the two factor tables, the arrays implicit's engine holds too. Reads and writes no files.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

log = logging.getLogger(__name__)

# MLlib's user/item columns are 32-bit
MAX_IDS = 2**31 - 1


def reg_param(regularization: float, nnz: int, persons: int) -> float:
    """MLlib's regParam for implicit's `regularization` (see the module doc)."""
    return float(regularization) / max(nnz / max(persons, 1), 1.0)


def _als(settings, *, seed: int, reg: float):
    from pyspark.ml.recommendation import ALS

    return ALS(rank=settings.factors, maxIter=settings.iterations, regParam=reg, alpha=float(settings.alpha),
               implicitPrefs=True, nonnegative=False, seed=int(seed), userCol="user", itemCol="item",
               ratingCol="rating")


def _numbered(pairs, id_col: str, number_col: str):
    """`id_col`'s distinct values numbered 0.. in sorted order (deterministic, so the seeded fit is too)."""
    ids = pairs.select(id_col).distinct().orderBy(id_col)
    return (ids.rdd.map(lambda row: row[0]).zipWithIndex()
            .toDF([id_col, number_col]).selectExpr(id_col, f"CAST({number_col} AS INT) AS {number_col}"))


@dataclasses.dataclass
class SparkFit:
    """A fit's factor tables, still on the executors: `persons` (person_id, factors) and `items` (item_id,
    factors), each sorted by id with `factors` array<float>; `counts` {persons, items, nnz, reg_param}."""
    persons: object
    items: object
    counts: dict
    cached: tuple = ()

    def release(self) -> None:
        """Unpersists the fit's cached inputs; call once the factor tables are written."""
        for df in self.cached:
            df.unpersist()


def fit_frames(pairs, settings, *, seed: int) -> SparkFit:
    """ALS on `pairs` (person_id, item_id, weight; a pair's rows are summed, pairs weighing 0 dropped)."""
    from pyspark.sql import functions as F

    summed = (pairs.groupBy("person_id", "item_id").agg(F.sum("weight").alias("weight"))
              .where(F.col("weight") > 0))
    persons = _numbered(summed, "person_id", "user").cache()
    items = _numbered(summed, "item_id", "item").cache()
    ratings = (summed.join(persons, "person_id").join(items, "item_id")
               .select("user", "item", F.col("weight").cast("float").alias("rating")).cache())
    fit = SparkFit(None, None, {"persons": persons.count(), "items": items.count(), "nnz": ratings.count()},
                   (persons, items, ratings))
    counts = fit.counts
    if counts["nnz"] == 0:
        fit.release()
        raise ValueError("ALS on Spark: no pair with a positive weight to train on")
    if max(counts["persons"], counts["items"]) > MAX_IDS:
        fit.release()
        raise ValueError(f"ALS on Spark: {counts} ids exceed MLlib's 32-bit user/item ids")
    counts["reg_param"] = reg = reg_param(settings.regularization, counts["nnz"], counts["persons"])
    log.info("ALS on Spark: %d persons x %d items, %d pairs; rank %d, %d iterations, regParam %.4g",
             counts["persons"], counts["items"], counts["nnz"], settings.factors, settings.iterations, reg)
    model = _als(settings, seed=seed, reg=reg).fit(ratings)
    fit.persons = (model.userFactors.join(persons, F.col("id") == F.col("user"))
                   .select("person_id", F.col("features").alias("factors")).orderBy("person_id"))
    fit.items = (model.itemFactors.join(items, F.col("id") == F.col("item"))
                 .select("item_id", F.col("features").alias("factors")).orderBy("item_id"))
    return fit


def active_session():
    """The driver's SparkSession (the pipeline builds one for every stage); a clear error when there is none."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None and SparkContext._active_spark_context is not None:
        session = SparkSession.builder.getOrCreate()  # the running context's session (another thread's)
    if session is None:
        raise RuntimeError("als.engine spark: no SparkSession is running (build one with jobs.spark.spark_session)")
    return session


def fit_matrix(matrix, settings, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ALS on an in-memory persons x items CSR (the gate's and tuning's holdout); returns (person_factors,
    item_factors) as float32 arrays indexed like the matrix's rows and columns (zeros for a row without a pair)."""
    import pyarrow as pa

    spark = active_session()
    coo = matrix.tocoo()
    keep = coo.data > 0
    table = pa.table({"user": pa.array(coo.row[keep].astype(np.int32)), "item": pa.array(coo.col[keep].astype(np.int32)),
                      "rating": pa.array(coo.data[keep].astype(np.float32))})
    if table.num_rows == 0:
        raise ValueError("ALS on Spark: no pair with a positive weight to train on")
    ratings = spark.createDataFrame(table).cache()
    try:
        reg = reg_param(settings.regularization, table.num_rows, matrix.shape[0])
        model = _als(settings, seed=seed, reg=reg).fit(ratings)
        user_vecs = _dense(model.userFactors, matrix.shape[0], settings.factors)
        item_vecs = _dense(model.itemFactors, matrix.shape[1], settings.factors)
    finally:
        ratings.unpersist()
    return user_vecs, item_vecs


def _dense(factors, rows: int, rank: int) -> np.ndarray:
    """MLlib's (id, features) factor table as a rows x rank float32 array (the factor table itself, no more)."""
    import pyarrow.compute as pc

    table = factors.toArrow()
    out = np.zeros((rows, rank), np.float32)
    if table.num_rows:
        ids = table.column("id").to_numpy()
        flat = pc.list_flatten(table.column("features").combine_chunks()).to_numpy(zero_copy_only=False)
        out[ids] = flat.reshape(len(ids), rank)
    return out
