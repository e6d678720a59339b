"""The night's holdout model: fitted once, read by the next stage, refitted whenever what determines it changes."""
import dataclasses

import numpy as np
from known_shop import RUN_DATE, gate_cfg, write_shop

from jobs.evaluation.holdout import load_holdout
from jobs.evaluation.holdout_model import FITTED, READ, holdout_model
from jobs.models.mf import InteractionMatrix
from jobs.storage.datasets import Datasets


def _holdout(cfg):
    return load_holdout(Datasets(cfg.data_root), RUN_DATE, holdout_days=cfg.gate.holdout_days, max_test_persons=50,
                        segment_dimensions=(), seed=cfg.seed, half_life_days=cfg.interactions.half_life_days)


def test_fitted_once_then_read_and_refitted_when_the_settings_or_the_holdout_change(cfg):
    cfg = gate_cfg(cfg)
    write_shop(cfg)
    data, holdout = Datasets(cfg.data_root), _holdout(cfg)
    hl = cfg.interactions.half_life_days

    first, how = holdout_model(data, holdout, cfg.als, half_life_days=hl, seed=cfg.seed)
    assert how == FITTED and data.holdout_model.meta(RUN_DATE)["persons"] == len(holdout.matrix.person_ids)
    # another reader (the rank stage after the gate) gets the same factors without a fit; threads is how fast, not what
    again, how = holdout_model(data, _holdout(cfg), dataclasses.replace(cfg.als, threads=2), half_life_days=hl,
                               seed=cfg.seed)
    assert how == READ
    assert np.array_equal(again.items.ids, first.items.ids) and np.allclose(again.items.vectors, first.items.vectors)
    assert np.allclose(again.persons.vectors, first.persons.vectors)

    # tuning adopted other settings tonight: never the saved model of the old ones; the new fit replaces it
    tuned = dataclasses.replace(cfg.als, factors=4)
    model, how = holdout_model(data, holdout, tuned, half_life_days=hl, seed=cfg.seed)
    assert how == FITTED and model.items.vectors.shape[1] == 4
    assert holdout_model(data, holdout, tuned, half_life_days=hl, seed=cfg.seed)[1] == READ
    assert holdout_model(data, holdout, cfg.als, half_life_days=hl, seed=cfg.seed + 1)[1] == FITTED

    # a re-cut holdout (other pairs, or a person erased) is a different matrix: refitted too
    m = holdout.matrix
    fewer = InteractionMatrix(m.matrix[1:], m.person_ids[1:], m.item_ids)
    _, how = holdout_model(data, dataclasses.replace(holdout, matrix=fewer), cfg.als, half_life_days=hl,
                           seed=cfg.seed + 1)
    assert how == FITTED
