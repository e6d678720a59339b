"""Stage 5 of 9, train: implicit-feedback matrix factorization (`implicit` ALS) on the night's interactions.

Reads the interactions' three columns it needs with pyarrow, fits `jobs.models.mf.MFModel`, and saves the
factors next to their ids with `model.json` (version, every setting) in `models/dt=D/`.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from jobs.config import RecsConfig
from jobs.decay import weights_for
from jobs.models.mf import InteractionMatrix, MFModel
from jobs.storage.datasets import Datasets

log = logging.getLogger(__name__)


def model_version(run_date: str, config_fingerprint: str) -> str:
    return f"als-{run_date}-{config_fingerprint}"


def run(spark, cfg: RecsConfig, run_date: str) -> dict:
    """`spark` is unused: the fit runs on this node (see jobs.models.als)."""
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
    version = model_version(run_date, cfg.fingerprint())
    meta = {"model_version": version, "run_date": run_date, "als": dataclasses.asdict(cfg.als), "seed": cfg.seed,
            # every setting, so a later gate can say what changed since the last published model
            "config_fingerprint": cfg.fingerprint(), "config": cfg.settings(),
            "persons": len(matrix.person_ids), "items": len(matrix.item_ids), "nnz": matrix.nnz}
    out = data.models.write(run_date, model.tables(), meta)
    return {"path": out, "model_version": version, "persons": len(matrix.person_ids),
            "items": len(matrix.item_ids), "nnz": matrix.nnz, "fit_seconds": round(fit_seconds, 1),
            "seconds": round(time.time() - started, 1)}
