"""`als.engine: spark` (jobs/models/spark_als.py): MLlib's ALS writes the same model the rest of the pipeline reads,
learns the planted taste groups of tests/known_shop.py about as well as implicit (a whole night with it:
tests/test_end_to_end.py)."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from known_shop import RUN_DATE, gate_cfg, write_shop

from jobs.evaluation.holdout import baseline_recs, evaluate, evaluate_settings, load_holdout
from jobs.models.mf import ITEMS_TABLE, PERSONS_TABLE, MFModel
from jobs.storage.datasets import Datasets

pytestmark = pytest.mark.spark


def spark_engine(cfg):
    return cfg.replace(als=dataclasses.replace(cfg.als, engine="spark"))


def holdout_of(cfg):
    g = cfg.gate
    return load_holdout(Datasets(cfg.data_root), RUN_DATE, holdout_days=g.holdout_days,
                        max_test_persons=g.max_test_persons, segment_dimensions=cfg.segments.dimensions,
                        seed=cfg.seed, half_life_days=cfg.interactions.half_life_days)


def test_the_engine_is_a_checked_config_key(cfg):
    from jobs.config import ConfigError, load_config

    assert cfg.als.engine == "implicit"
    assert load_config(data_root=cfg.data_root, overrides=["als.engine=spark"]).als.engine == "spark"
    with pytest.raises(ConfigError, match="als.engine"):
        load_config(data_root=cfg.data_root, overrides=["als.engine=mllib"])


def test_spark_train_writes_the_model_the_pipeline_reads_and_learns_the_planted_groups(cfg, spark):
    from jobs.stages import train

    cfg = gate_cfg(cfg)
    write_shop(cfg)  # the known shop, its holdout and an implicit model
    data = Datasets(cfg.data_root)
    implicit_tables, _ = data.models.read(RUN_DATE, (PERSONS_TABLE, ITEMS_TABLE))
    implicit_model = MFModel.from_tables(implicit_tables)

    summary = train.run(spark, spark_engine(cfg), RUN_DATE)
    assert summary["engine"] == "spark" and (summary["persons"], summary["items"]) == (90, len(implicit_model.items.ids))
    tables, meta = data.models.read(RUN_DATE, (PERSONS_TABLE, ITEMS_TABLE))
    assert meta["als"]["engine"] == "spark" and meta["engine"]["reg_param"] > 0
    # written by the executors: a folder of part files per table, read back as the implicit engine's one file is
    folder = Path(data.models.factors_path(RUN_DATE, PERSONS_TABLE))
    assert folder.is_dir() and any(p.name.startswith("part-") for p in folder.iterdir())
    assert (meta["persons"], meta["nnz"]) == (90, 90 * 6)
    model = MFModel.from_tables(tables)
    assert list(model.persons.ids) == list(implicit_model.persons.ids)  # same ids, same (sorted) order
    assert list(model.items.ids) == list(implicit_model.items.ids)
    assert model.persons.vectors.shape == (90, 8) and model.items.vectors.dtype == np.float32
    assert np.isfinite(model.persons.vectors).all() and np.abs(model.items.vectors).sum() > 0

    # the gate's and tuning's fit take the same switch; on the planted groups MLlib is about as good as implicit
    holdout = holdout_of(cfg)
    k, index = cfg.gate.k, cfg.candidates.index
    implicit_ndcg = evaluate_settings(holdout, cfg.als, seed=cfg.seed, k=k, index_settings=index)["ndcg_at_k"]
    spark_ndcg = evaluate_settings(holdout, spark_engine(cfg).als, seed=cfg.seed, k=k,
                                   index_settings=index)["ndcg_at_k"]
    popularity = max(evaluate(holdout, recs, k=k, beyond_accuracy=False)["ndcg_at_k"]
                     for recs in baseline_recs(holdout, k=k).values())
    assert spark_ndcg > 2 * popularity  # it finds the groups (implicit: about 0.27 against 0.07)
    assert spark_ndcg >= 0.8 * implicit_ndcg, (spark_ndcg, implicit_ndcg)
