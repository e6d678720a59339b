"""The tune stage (stage 4) on the known-answer shop of tests/known_shop.py: 3 taste groups, where a learned
model beats popularity by far, so better settings are easy to see."""
import dataclasses

import pytest
from known_shop import RUN_DATE, write_shop

from jobs.config import load_config
from jobs.evaluation.tuning import POPULARITY_WEIGHTS, RANK_WEIGHT_KEY, TUNED_KEYS, settings_of
from jobs.stages import tune
from jobs.storage.datasets import Datasets

NEXT_DATE = "2026-03-11"
SMALL = ["gate.k=5", "gate.min_test_persons=10", "als.threads=1", "tuning.max_trials=12",
         "tuning.budget_seconds_wide=20", "tuning.budget_seconds_warm=10"]


def shop_cfg(tmp_path, *overrides):
    return load_config(data_root=str(tmp_path / "data"), overrides=[*SMALL, *overrides])


def tune_on(cfg, run_date=RUN_DATE):
    write_shop(cfg, run_date=run_date)
    return tune.run(None, cfg, run_date)


def test_a_wide_first_night_finds_settings_at_least_as_good_and_records_them(tmp_path):
    cfg = shop_cfg(tmp_path)
    summary = tune_on(cfg)
    assert summary["mode"] == "wide" and summary["trials"] == 12
    figures = summary["figures"]
    assert figures["best"]["ndcg_at_k"] >= figures["current"]["ndcg_at_k"] > 0
    data = Datasets(cfg.data_root)
    doc = data.tuning.read(RUN_DATE)
    assert doc["trials"][0]["settings"] == settings_of(cfg)  # trial 0 = the config's settings
    assert set(doc["settings"]) == set(TUNED_KEYS)
    assert doc["rank_weight"] is None  # no Spark session: the ranking weight is not searched
    if doc["adopted"]:
        assert doc["changes"] and all(doc["settings"][k] == after for k, (_, after) in doc["changes"].items())
        assert figures["best"]["ndcg_at_k"] >= figures["current"]["ndcg_at_k"] * 1.02
    [record] = data.tuning_history.records()
    assert record["run_date"] == RUN_DATE and record["settings"] == doc["settings"] and "trials" not in record
    assert summary["seconds"] < 30


def test_a_second_night_warm_starts_from_the_history(tmp_path):
    cfg = shop_cfg(tmp_path)
    first = tune_on(cfg)
    second = tune_on(cfg, NEXT_DATE)
    assert second["mode"] == "warm"
    doc = Datasets(cfg.data_root).tuning.read(NEXT_DATE)
    # trial 0 = last night's model settings
    assert doc["trials"][0]["settings"] == {k: v for k, v in first["settings"].items() if k != RANK_WEIGHT_KEY}
    reg = first["settings"]["als.regularization"]
    assert all(reg / 4 - 1e-9 <= t["settings"]["als.regularization"] <= reg * 4 + 1e-9 for t in doc["trials"])
    assert [r["run_date"] for r in Datasets(cfg.data_root).tuning_history.records()] == [RUN_DATE, NEXT_DATE]


def test_a_full_search_comes_back_on_schedule(tmp_path):
    cfg = shop_cfg(tmp_path, "tuning.full_every_days=1")
    tune_on(cfg)
    assert tune_on(cfg, NEXT_DATE)["mode"] == "full"


def test_a_pinned_key_is_never_changed(tmp_path):
    cfg = shop_cfg(tmp_path, "als.factors=8")
    summary = tune_on(cfg)
    doc = Datasets(cfg.data_root).tuning.read(RUN_DATE)
    assert "als.factors" not in doc["settings"] and doc["pinned"] == ["als.factors"]
    assert all(t["settings"].get("als.factors", 8) == 8 for t in doc["trials"])
    assert "als.factors" not in summary["changes"]
    # even a history that holds another value does not move it
    assert cfg.with_settings({"als.factors": 128}).als.factors == 8


def test_adoption_needs_the_margin(tmp_path):
    # a margin no trial can reach: the current settings stay, and the history says so
    cfg = shop_cfg(tmp_path, "tuning.min_relative_gain=1000")
    summary = tune_on(cfg)
    assert summary["adopted"] is False and summary["changes"] == {}
    assert summary["settings"] == settings_of(cfg, TUNED_KEYS)
    assert "kept the current settings" in summary["reason"]


def test_a_rerun_keeps_the_nights_settings(tmp_path):
    cfg = shop_cfg(tmp_path)
    first = tune_on(cfg)
    again = tune.run(None, cfg, RUN_DATE)
    assert again["reused"] and again["settings"] == first["settings"]


@pytest.mark.parametrize("override", ["tuning.enabled=false", "gate.enabled=false"])
def test_no_search_when_off_or_without_a_holdout(tmp_path, override):
    cfg = shop_cfg(tmp_path, override)
    summary = tune_on(cfg)
    assert summary["mode"] == "off"
    assert Datasets(cfg.data_root).tuning_history.records() == []


def test_too_few_test_persons_keep_the_current_settings(tmp_path):
    cfg = shop_cfg(tmp_path, "gate.min_test_persons=1000")
    summary = tune_on(cfg)
    assert "too little to tune on" in summary["reason"] and summary["settings"] == settings_of(cfg, TUNED_KEYS)
    assert dataclasses.asdict(cfg.with_settings(summary["settings"]).als) == dataclasses.asdict(cfg.als)


@pytest.mark.spark
def test_a_wide_night_searches_the_popularity_weight_on_the_lists_it_would_publish(spark, tmp_path):
    cfg = shop_cfg(tmp_path, "tuning.max_trials=3", "tuning.budget_seconds_wide=3600")
    assert cfg.rank.popularity_weight == 0.1  # the default, not pinned
    write_shop(cfg, spark=spark)
    summary = tune.run(spark, cfg, RUN_DATE)
    doc = Datasets(cfg.data_root).tuning.read(RUN_DATE)
    searched = [t["settings"][RANK_WEIGHT_KEY] for t in doc["rank_weight"]["trials"]]
    assert searched == list(dict.fromkeys([0.1, *POPULARITY_WEIGHTS]))  # the current weight first
    assert all(0 <= t["ndcg_at_k"] <= 1 and t["n_users"] > 0 for t in doc["rank_weight"]["trials"])
    best = max(doc["rank_weight"]["trials"], key=lambda t: (t["ndcg_at_k"], -t["trial"]))
    moved = summary["settings"][RANK_WEIGHT_KEY] != 0.1
    assert moved == (RANK_WEIGHT_KEY in summary["changes"])
    assert not moved or best["ndcg_at_k"] >= doc["rank_weight"]["trials"][0]["ndcg_at_k"] * 1.02
    # pinned: never searched, never changed
    pinned = shop_cfg(tmp_path / "pinned", "rank.popularity_weight=0.1", "tuning.max_trials=3")
    write_shop(pinned, spark=spark)
    again = tune.run(spark, pinned, RUN_DATE)
    assert Datasets(pinned.data_root).tuning.read(RUN_DATE)["rank_weight"] is None
    # a budget spent by the model's search: the grid stops after its first trial (the current weight)
    tight = shop_cfg(tmp_path / "tight", "tuning.max_trials=2", "tuning.budget_seconds_wide=0.01")
    write_shop(tight, spark=spark)
    tune.run(spark, tight, RUN_DATE)
    assert [t["settings"][RANK_WEIGHT_KEY] for t in Datasets(tight.data_root).tuning.read(RUN_DATE)["rank_weight"]
            ["trials"]] == [0.1]
    assert RANK_WEIGHT_KEY not in again["settings"] and again["rank_weight_trials"] == 0
