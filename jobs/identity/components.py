"""Connected components of the identity graph on Spark DataFrames: alternating large-star / small-star rounds.

Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014): O(log^2 n) rounds, each a couple
of shuffles over the edges; nothing is collected on the driver but one count per check, so it runs the same
on a cluster as in local mode.
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

log = logging.getLogger(__name__)


def checkpoint(df: DataFrame) -> DataFrame:
    """Cuts the lineage (iterative plans otherwise grow each round) and keeps the small result in memory."""
    return df.localCheckpoint(eager=True)


def _large_star(edges: DataFrame) -> DataFrame:
    """Each node links its larger neighbours to the smallest node of its neighbourhood (itself included)."""
    both = (edges.select(F.col("hi").alias("u"), F.col("lo").alias("v"))
            .unionByName(edges.select(F.col("lo").alias("u"), F.col("hi").alias("v"))))
    smallest = F.least(F.col("u"), F.min("v").over(Window.partitionBy("u")))
    return (both.withColumn("m", smallest).where(F.col("v") > F.col("u"))
            .select(F.col("v").alias("hi"), F.col("m").alias("lo")).distinct())


def _small_star(edges: DataFrame) -> DataFrame:
    """Each node links itself and its smaller neighbours to the smallest of them."""
    with_min = edges.withColumn("m", F.min("lo").over(Window.partitionBy("hi")))
    return (with_min.select(F.col("lo").alias("hi"), F.col("m").alias("lo")).where(F.col("hi") != F.col("lo"))
            .unionByName(with_min.select("hi", F.col("m").alias("lo"))).distinct())


def _is_star_forest(edges: DataFrame) -> bool:
    """True when every edge joins a leaf to its component's smallest node: no centre is also a leaf, and no
    leaf hangs from two centres. One job, one shuffle."""
    ends = (edges.select(F.col("hi").alias("n"), F.lit(1).alias("as_leaf"), F.lit(0).alias("as_centre"))
            .unionByName(edges.select(F.col("lo").alias("n"), F.lit(0).alias("as_leaf"), F.lit(1).alias("as_centre"))))
    bad = (ends.groupBy("n").agg(F.sum("as_leaf").alias("leaf"), F.max("as_centre").alias("centre"))
           .where((F.col("leaf") > 1) | ((F.col("leaf") > 0) & (F.col("centre") > 0))))
    return bad.limit(1).count() == 0


def connected_components(edges: DataFrame, *, max_iterations: int) -> tuple[DataFrame, int]:
    """Connected components of an undirected graph, by alternating large-star and small-star rounds.

    Parameters
    ----------
    edges : DataFrame
        Columns `src`, `dst` (strings); direction, duplicates and self-loops are ignored.
    max_iterations : int
        Rounds allowed before giving up.

    Returns
    -------
    (DataFrame, int)
        (`node`, `component`) for every node on an edge, the component being its smallest node key, and
        the number of rounds used. Nodes without edges are not listed (each is its own component).

    Raises
    ------
    RuntimeError
        When the rounds run out before the components settle.
    """
    current = checkpoint(edges.select(F.greatest("src", "dst").alias("hi"), F.least("src", "dst").alias("lo"))
                         .where(F.col("hi") != F.col("lo")).distinct())
    for iteration in range(1, max_iterations + 1):
        current = checkpoint(_small_star(_large_star(current)))
        if _is_star_forest(current):
            centres = current.select(F.col("lo").alias("node"), F.col("lo").alias("component")).distinct()
            return current.select(F.col("hi").alias("node"), F.col("lo").alias("component")).unionByName(centres), \
                iteration
        log.debug("connected components: round %d not settled", iteration)
    raise RuntimeError(f"identity graph: connected components did not settle in {max_iterations} rounds "
                       f"(identity.max_iterations); raise it or look for an unexpectedly long chain of links")
