"""Event weights' decay: the half-lives the interactions stage weighs every pair under, and how a reader takes
the weights of one half-life.

The interactions stage writes `weight` (the configured `interactions.half_life_days`) and `weights`, the
pair's weight under each half-life of `HALF_LIFE_GRID_DAYS` (one aggregation, several sums), so self-tuning
can try a half-life without reading the events again. Pure: no I/O; `spark_weight` is the same rule as a Spark
column (pyspark imported inside it).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

# 1e6 days is "no decay" (a year-old event keeps 99.98% of its weight)
HALF_LIFE_GRID_DAYS: tuple[float, ...] = (7.0, 14.0, 30.0, 60.0, 180.0, 1e6)


def grid_position(half_life_days: float) -> int | None:
    """Index of `half_life_days` in `HALF_LIFE_GRID_DAYS`, None when it is not on the grid."""
    for i, h in enumerate(HALF_LIFE_GRID_DAYS):
        if abs(h - float(half_life_days)) <= 1e-9 * h:
            return i
    return None


def weights_for(table: pa.Table, half_life_days: float) -> np.ndarray:
    """The pairs' weights under `half_life_days` from an interactions table: its `weights` column's entry when
    the half-life is on the grid, else `weight` (then the configured half-life: tuning only picks grid values,
    so a half-life off the grid is one the user pinned). Interactions written before `weights` existed (or a
    table without it) give `weight`."""
    import pyarrow.compute as pc

    position = grid_position(half_life_days)
    if position is not None and "weights" in table.column_names and table.column("weights").null_count == 0:
        column = pc.list_element(table.column("weights"), position)
        return np.nan_to_num(column.to_numpy(zero_copy_only=False).astype(np.float64), nan=0.0)
    return table.column("weight").to_numpy(zero_copy_only=False).astype(np.float64)


def spark_weight(columns: list[str], half_life_days: float):
    """`weights_for` as a Spark column over an interactions DataFrame with `columns` (als.engine spark reads the
    interactions on the executors): the grid entry of `weights`, else `weight`, per row."""
    from pyspark.sql import functions as F

    position = grid_position(half_life_days)
    if position is None or "weights" not in columns:
        return F.col("weight").cast("double")
    entry = F.nanvl(F.element_at("weights", position + 1).cast("double"), F.lit(0.0))
    return F.coalesce(entry, F.col("weight").cast("double"))
