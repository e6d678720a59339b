"""Stage 5 of 9, train: implicit-feedback matrix factorization on the night's interactions.

`als.engine: implicit` (default): reads the interactions' columns it needs with pyarrow, fits
`jobs.models.mf.MFModel` on this node. `als.engine: spark`: reads them with Spark and fits MLlib's ALS on the
executors (`jobs.models.spark_als`), which also write the factor tables; nothing but counts reaches the driver.
Either way the factors are saved next to their ids with `model.json` (version, every setting) in `models/dt=D/`,
in the same columns, so the later stages read them the same way.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from jobs.config import RecsConfig
from jobs.decay import spark_weight, weights_for
from jobs.models.mf import ITEMS_TABLE, PERSONS_TABLE, InteractionMatrix, MFModel
from jobs.storage.datasets import Datasets

log = logging.getLogger(__name__)


def model_version(run_date: str, config_fingerprint: str) -> str:
    return f"als-{run_date}-{config_fingerprint}"


def _meta(cfg: RecsConfig, run_date: str, counts: dict) -> dict:
    return {"model_version": model_version(run_date, cfg.fingerprint()), "run_date": run_date,
            "als": dataclasses.asdict(cfg.als), "seed": cfg.seed,
            # every setting, so a later gate can say what changed since the last published model
            "config_fingerprint": cfg.fingerprint(), "config": cfg.settings(),
            "persons": counts["persons"], "items": counts["items"], "nnz": counts["nnz"]}


def run_spark(spark, cfg: RecsConfig, run_date: str) -> dict:
    """als.engine spark: MLlib's ALS on the executors, which write the factor tables."""
    from jobs.models.spark_als import fit_frames

    started = time.time()
    data = Datasets(cfg.data_root)
    interactions = data.interactions.read_spark(spark, run_date)
    pairs = interactions.select("person_id", "item_id",
                                spark_weight(interactions.columns, cfg.interactions.half_life_days).alias("weight"))
    fit = fit_frames(pairs, cfg.als, seed=cfg.seed)
    try:
        meta = _meta(cfg, run_date, fit.counts)
        meta["engine"] = {"name": "spark", "reg_param": fit.counts["reg_param"]}
        out = data.models.write_spark(run_date, {PERSONS_TABLE: fit.persons, ITEMS_TABLE: fit.items}, meta)
    finally:
        fit.release()
    fit_seconds = time.time() - started
    return {"path": out, "model_version": meta["model_version"], "engine": "spark",
            **{k: fit.counts[k] for k in ("persons", "items", "nnz")},
            "fit_seconds": round(fit_seconds, 1), "seconds": round(fit_seconds, 1)}


def run(spark, cfg: RecsConfig, run_date: str) -> dict:
    """With `als.engine: implicit`, `spark` is unused: the fit runs on this node (see jobs.models.als)."""
    if cfg.als.engine == "spark":
        return run_spark(spark, cfg, run_date)
    started = time.time()
    data = Datasets(cfg.data_root)
    table = data.interactions.read_arrow(run_date, ["person_id", "item_id", "weight", "weights"])
    if table.num_rows == 0:
        raise ValueError(f"no interactions at {data.interactions.path(run_date)}: nothing to train on")
    matrix = InteractionMatrix.from_pairs(table.column("person_id"), table.column("item_id"),
                                          weights_for(table, cfg.interactions.half_life_days))
    matrix.matrix.eliminate_zeros()  # a pair all of whose events decayed to nothing under this half-life
    del table
    fit_started = time.time()
    model = MFModel.fit(matrix, cfg.als, seed=cfg.seed, progress=True)
    fit_seconds = time.time() - fit_started
    meta = _meta(cfg, run_date, {"persons": len(matrix.person_ids), "items": len(matrix.item_ids), "nnz": matrix.nnz})
    out = data.models.write(run_date, model.tables(), meta)
    return {"path": out, "model_version": meta["model_version"], "engine": "implicit", "persons": len(matrix.person_ids),
            "items": len(matrix.item_ids), "nnz": matrix.nnz, "fit_seconds": round(fit_seconds, 1),
            "seconds": round(time.time() - started, 1)}
