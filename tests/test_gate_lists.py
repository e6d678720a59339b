"""The gate judges the published lists (jobs/evaluation/night_lists.py through the gate stage), on the known shop.

The ALS settings are pinned and the same on both nights: only `rank.*` differs, so any refusal comes from the lists.
"""
import dataclasses
import json

import pytest
from known_shop import PREVIOUS_DATE, RUN_DATE, gate_cfg, write_shop

from jobs.evaluation.night_lists import json_settings, published_pipeline
from jobs.stages import gate
from jobs.storage import io
from jobs.storage.datasets import Datasets
from jobs.storage.layout import Layout

STALE_FIGURE = 0.999  # what the previous night measured on its own holdout: must never be copied


def publish_previous_pipeline(cfg):
    """The previous night: the same ALS settings, normal `rank.*`, its whole config in model.json (as the train
    stage writes it) and an evaluation.json of its own night with a figure tonight's holdout cannot give."""
    path = Layout(cfg.data_root).model(PREVIOUS_DATE)
    io.write_json(f"{path}/model.json", {"model_version": f"als-{PREVIOUS_DATE}-prev", "run_date": PREVIOUS_DATE,
                                         "config": json_settings(cfg)})
    io.write_json(f"{path}/evaluation.json", {"metrics": {"model": {"ndcg_at_k": STALE_FIGURE}}})
    Datasets(cfg.data_root).models.mark_published(PREVIOUS_DATE)


def report_of(cfg):
    with open(f"{Layout(cfg.data_root).reports(RUN_DATE)}/gate.json") as f:
        return json.load(f)


@pytest.mark.spark
def test_inverted_ranking_weights_are_refused_though_the_model_is_unchanged(spark, cfg):
    normal = gate_cfg(cfg)
    inverted = normal.replace(rank=dataclasses.replace(normal.rank, relevance_weight=-1.0))
    assert normal.als == inverted.als
    write_shop(normal, spark=spark)
    publish_previous_pipeline(normal)

    # the same model with the normal weights passes; the previous pipeline has the same settings, so on the same
    # holdout its lists are tonight's: their figure is tonight's, not the one of its own night
    summary = gate.run(spark, normal, RUN_DATE)
    assert (summary["verdict"], summary["rule"]) == ("pass", "checks")
    good = report_of(normal)["metrics"]
    assert good["previous_recipe"]["ndcg_at_k"] != STALE_FIGURE
    assert good["previous_recipe"]["ndcg_at_k"] == good["model"]["ndcg_at_k"]
    assert good["previous_recipe"]["same_settings_as_model"] is True
    assert good["model"]["n_users"] == 90

    # inverted weights: the same ALS, the same retrieval, worse lists: refused, and the reason names the lists
    write_shop(inverted, spark=spark)  # tonight's model.json records the inverted rank settings
    with pytest.raises(gate.ModelGateError) as refused:
        gate.run(spark, inverted, RUN_DATE)
    report = report_of(inverted)
    bad = report["metrics"]
    assert report["verdict"] == "fail"
    assert bad["retrieval"]["ndcg_at_k"] == pytest.approx(good["retrieval"]["ndcg_at_k"])  # the model is unchanged
    assert bad["model"]["ndcg_at_k"] < 0.9 * good["model"]["ndcg_at_k"]
    # the previous pipeline is rebuilt with its own (normal) rank settings on tonight's holdout: the figure the
    # normal night measured, recomputed (not the stale one of its own night)
    assert "same_settings_as_model" not in bad["previous_recipe"]
    assert bad["previous_recipe"]["ndcg_at_k"] == pytest.approx(good["model"]["ndcg_at_k"])
    assert report["lists"]["model"]["rank.relevance_weight"] == -1.0
    assert report["lists"]["previous_recipe"]["rank.relevance_weight"] == 1.0
    assert report["previous"]["config_changes"]["rank.relevance_weight"] == [1.0, -1.0]
    message = str(refused.value)
    assert "MODEL GATE REFUSED" in message and "the night's lists score" in message
    failed = [c for c in report["checks"] if not c["passed"]]
    assert failed and all("lists" in c["reason"] for c in failed)


@pytest.mark.spark
def test_popularity_dominating_the_blend_is_refused(spark, cfg):
    normal = gate_cfg(cfg)
    swamped = normal.replace(rank=dataclasses.replace(normal.rank, popularity_weight=50.0))
    write_shop(swamped, spark=spark)
    publish_previous_pipeline(normal)
    with pytest.raises(gate.ModelGateError, match="lists"):
        gate.run(spark, swamped, RUN_DATE)
    report = report_of(swamped)
    assert report["metrics"]["model"]["ndcg_at_k"] < report["metrics"]["previous_recipe"]["ndcg_at_k"]
    assert report["metrics"]["model"]["ndcg_at_k"] < report["metrics"]["retrieval"]["ndcg_at_k"]


def test_published_pipeline_takes_the_recorded_list_settings(cfg):
    night = gate_cfg(cfg)
    recorded = json_settings(night.replace(rank=dataclasses.replace(night.rank, margin_weight=0.7, max_per_category=2),
                                           top_n=7))
    recorded["als"]["threads"] = 64              # how fast, not what: stays tonight's
    recorded["rank"]["a_key_of_the_future"] = 1  # unknown to this version: skipped, tonight's kept
    previous, unrecorded = published_pipeline({"config": recorded}, night)
    assert (previous.rank.margin_weight, previous.rank.max_per_category, previous.top_n) == (0.7, 2, 7)
    assert previous.als == night.als and unrecorded == []
    # an older model.json with its ALS settings only: the rest is tonight's, and named
    older, unrecorded = published_pipeline({"als": {"factors": 4, "iterations": 3}}, night)
    assert (older.als.factors, older.als.iterations, older.rank) == (4, 3, night.rank)
    assert "rank.relevance_weight" in unrecorded and "candidates.n" in unrecorded
