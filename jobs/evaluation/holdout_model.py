"""The night's holdout model: ALS fitted once on the temporal holdout's train part with the night's settings, and
shared by the two stages that need it (the gate rebuilds tonight's lists from it, the rank stage draws its
ranker's training candidates from it).

Whichever of them runs first fits and saves it (`Datasets.holdout_model`, `holdout/dt=D/model/`, written whole
and atomically); the other reads it. It is keyed by what determines the fit: the train matrix itself (ids and
confidences, so a re-cut or erased holdout is never served a stale model), the half-life it was weighted with, the
ALS settings (minus `threads`: how fast, not what) and the seed. A key that does not match (tuning adopted other
settings tonight, the gate is off and an older model lies there, the holdout was re-cut) is fitted again and
replaces it, so a reader can never use a model of other settings.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import numpy as np

from jobs.config import AlsConfig
from jobs.evaluation.holdout import Holdout
from jobs.models.mf import InteractionMatrix, MFModel
from jobs.storage.datasets import Datasets

log = logging.getLogger(__name__)

READ, FITTED = "read", "fitted"


def _ids_digest(h, ids: np.ndarray) -> None:
    h.update("\x1f".join(map(str, ids.tolist())).encode())
    h.update(b"\x1e")


def model_key(matrix: InteractionMatrix, settings: AlsConfig, *, half_life_days: float, seed: int) -> str:
    """A fingerprint of everything that determines the fit: the matrix (ids and confidences), the half-life it
    is weighted with, the ALS settings but `threads`, and the seed."""
    h = hashlib.sha256()
    csr = matrix.matrix.tocsr()
    for array in (csr.indptr, csr.indices, csr.data):
        h.update(np.ascontiguousarray(array).tobytes())
    _ids_digest(h, matrix.person_ids)
    _ids_digest(h, matrix.item_ids)
    als = {k: v for k, v in dataclasses.asdict(settings).items() if k != "threads"}
    h.update(json.dumps({"als": als, "half_life_days": float(half_life_days), "seed": int(seed)},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def holdout_model(data: Datasets, holdout: Holdout, settings: AlsConfig, *, half_life_days: float,
                  seed: int) -> tuple[MFModel, str]:
    """(ALS with `settings` on `holdout`'s train weighted with `half_life_days`, READ or FITTED): the saved
    model of D when its key matches, else a fresh fit, saved for the next reader."""
    matrix = holdout.matrix_for(half_life_days)
    key = model_key(matrix, settings, half_life_days=half_life_days, seed=seed)
    store, run_date = data.holdout_model, holdout.run_date
    try:
        saved = store.meta(run_date)
    except FileNotFoundError:
        saved = None
    if saved is not None and saved.get("key") == key:
        tables, _ = store.read(run_date, ("persons", "items"))
        log.info("holdout model of %s read (key %s)", run_date, key)
        return MFModel.from_tables(tables), READ
    model = MFModel.fit(matrix, settings, seed=seed)
    store.write(run_date, model.tables(), {"key": key, "run_date": run_date, "seed": int(seed),
                                           "half_life_days": float(half_life_days),
                                           "als": dataclasses.asdict(settings),
                                           "persons": len(matrix.person_ids), "items": len(matrix.item_ids)})
    log.info("holdout model of %s fitted and saved (key %s%s)", run_date, key,
             "" if saved is None else f", replacing key {saved.get('key')}")
    return model, FITTED
