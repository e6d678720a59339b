"""`als.engine: spark` (jobs/models/spark_als.py): MLlib's ALS writes the same model the rest of the pipeline reads,
learns the planted taste groups of tests/known_shop.py about as well as implicit, and a whole night runs with it."""
import dataclasses
import json
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


def test_a_night_with_the_spark_engine_publishes_lists(tmp_path, spark):
    """A tiny generated shop, one whole night with als.engine spark: retrieve searches the executors' factors."""
    import pyarrow.parquet as pq

    from jobs.config import load_config
    from jobs.pipeline import run_all
    from jobs.shop import generate_shop
    from jobs.storage.layout import Layout

    root = tmp_path / "shop"
    generate_shop(str(root), start="2026-08-01", days=10, users=200, items=60, seed=3, defect_rate=0.0)
    cfg = load_config(data_root=str(root), overrides=[
        "spark.master=local[1]", "spark.shuffle_partitions=1", "als.engine=spark", "als.factors=8",
        "als.iterations=5", "tuning.budget_seconds_wide=3", "tuning.budget_seconds_warm=2", "tuning.max_trials=2",
        "gate.min_test_persons=5"])
    summary = run_all(cfg, "2026-08-10", spark=spark)
    assert summary["status"] in ("published", "popularity"), summary
    layout = Layout(str(root))
    model_meta = json.loads((Path(layout.model("2026-08-10")) / "model.json").read_text())
    assert model_meta["als"]["engine"] == "spark"
    lists = pq.read_table(layout.recommendations("2026-08-10")).to_pandas()
    persons = lists[lists["subject_type"] == "person"]
    assert len(persons) > 0 and persons.groupby("subject_id").size().max() == cfg.top_n
    if summary["status"] == "published":  # the model's lists: candidates came from the Spark-trained factors
        assert (pq.read_table(layout.candidates("2026-08-10")).column("source").to_pylist()).count("mf") > 0
