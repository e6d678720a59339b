"""The model quality gate on a tiny, hand-made shop whose answer is known.

The shop: 90 persons in 3 taste groups (person p is in group p % 3), 120 items (item i is in group i % 3).
Each person bought 6 items of their own group and then, in the holdout days, 2 more of it; within a group,
item popularity is skewed (1/rank). Segments (country, device_type) are independent of the groups. So a
learned model finds the group and beats popularity (NDCG@5 about 0.27 vs 0.07), while random factors
(ALS with 0 iterations keeps implicit's random init) do worse than popularity (about 0.02).
"""
import dataclasses
import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest

from jobs.stages import gate, train
from jobs.storage import io
from jobs.storage.layout import Layout

RUN_DATE = "2026-03-10"
PREVIOUS_DATE = "2026-03-09"
CUTOFF = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)  # start of D - 7 + 1 with holdout_days 7
UNAVAILABLE = "i118"


def shop_rows(n_persons=90, n_items=120, groups=3, per_person=6, seed=5):
    rng = np.random.default_rng(seed)
    train_rows, test_rows = [], []
    for p in range(n_persons):
        own = [i for i in range(n_items) if i % groups == p % groups]
        weights = 1.0 / (np.arange(len(own)) + 1.0)
        picked = rng.choice(own, size=per_person + 2, replace=False, p=weights / weights.sum())
        for i in picked[:per_person]:
            days_before = int(rng.integers(1, 60))
            train_rows.append((f"p{p:03d}", f"i{i:03d}", 10.0, True, CUTOFF - dt.timedelta(days=days_before)))
        test_rows += [(f"p{p:03d}", f"i{i:03d}") for i in picked[per_person:]]
    return train_rows, test_rows, n_persons, n_items


def write_shop(cfg, *, spark=None, run_date=RUN_DATE, test=True):
    """Holdout (train, test), the night's interactions and model, catalog and persons for `run_date`."""
    layout = Layout(cfg.data_root)
    train_rows, test_rows, n_persons, n_items = shop_rows()
    if spark is not None:  # as the interactions stage writes it (Spark's timestamps and _SUCCESS files)
        from schemas import load

        io.write_spark_parquet(spark.createDataFrame(train_rows, load("interactions").spark()),
                               layout.holdout(run_date, "train"))
    else:
        io.write_arrow_parquet(pa.Table.from_pylist(
            [dict(zip(["person_id", "item_id", "weight", "purchased", "last_time"], r)) for r in train_rows],
            schema=_interactions_schema()), layout.holdout(run_date, "train"))
    if test:
        io.write_arrow_parquet(pa.table({"person_id": [r[0] for r in test_rows], "item_id": [r[1] for r in test_rows]}),
                               layout.holdout(run_date, "test"))
    else:  # an empty result as Spark may leave it: a folder with no data file
        with io.atomic_dir(layout.holdout(run_date, "test")) as tmp:
            fs, folder = io.fs_for(tmp)
            fs.makedirs(folder, exist_ok=True)
            fs.touch(f"{folder}/_SUCCESS")
    # the night's interactions = the holdout train here; enough for the train stage to write a model
    io.write_arrow_parquet(pa.Table.from_pylist(
        [dict(zip(["person_id", "item_id", "weight", "purchased", "last_time"], r)) for r in train_rows],
        schema=_interactions_schema()), layout.interactions(run_date))
    items = [f"i{i:03d}" for i in range(n_items)]
    io.write_arrow_parquet(pa.table({
        "item_id": items, "title": items, "category_path": [f"Home > Kitchen > C{i % 4}" for i in range(n_items)],
        "price": [1.0] * n_items, "is_available": [it != UNAVAILABLE for it in items]}),
        layout.validated("catalog", run_date))
    persons = [f"p{p:03d}" for p in range(n_persons)]
    io.write_arrow_parquet(pa.table({
        "person_id": persons, "country": ["DE" if (p // 2) % 2 else "FR" for p in range(n_persons)],
        "device_type": [["ios", "android", None][(p // 3) % 3] for p in range(n_persons)]}),
        layout.persons(run_date))
    train.run(None, cfg, run_date)


def _interactions_schema():
    from schemas import load

    return load("interactions").arrow()


def gate_cfg(cfg, **gate_changes):
    """Test-sized ALS and a k the tiny shop can fill."""
    als = dataclasses.replace(cfg.als, factors=8, iterations=10, threads=1)
    changes = {"k": 5, "min_test_persons": 10, **gate_changes}
    return cfg.replace(als=als, gate=dataclasses.replace(cfg.gate, **changes))


def broken(cfg):
    """ALS that never iterates: implicit keeps its random initial factors."""
    return cfg.replace(als=dataclasses.replace(cfg.als, iterations=0))


def publish_previous(cfg, ndcg, *, k=5, run_date=PREVIOUS_DATE):
    """A model published on an earlier night, with the figures its gate stored."""
    path = Layout(cfg.data_root).model(run_date)
    io.write_json(f"{path}/model.json", {"model_version": f"als-{run_date}-prev", "run_date": run_date,
                                         "config": {"als": {"factors": 8, "iterations": 30}}})
    io.write_json(f"{path}/evaluation.json", {"k": k, "metrics": {"model": {"ndcg_at_k": ndcg}}})
    return gate.mark_published(cfg, run_date)


def read_report(cfg):
    with open(f"{Layout(cfg.data_root).reports(RUN_DATE)}/gate.json") as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------------ stage

@pytest.mark.spark
def test_learnable_model_passes_and_beats_every_baseline(spark, cfg):
    cfg = gate_cfg(cfg)
    write_shop(cfg, spark=spark)
    publish_previous(cfg, ndcg=0.2)
    summary = gate.run(spark, cfg, RUN_DATE)
    assert (summary["verdict"], summary["rule"]) == ("pass", "checks")
    report = read_report(cfg)
    metrics = report["metrics"]
    assert set(metrics) == {"model", *gate.BASELINES}
    assert metrics["model"]["n_users"] == 90 and report["holdout"]["evaluated_persons"] == 90
    best = max(metrics[b]["ndcg_at_k"] for b in gate.BASELINES)
    assert metrics["model"]["ndcg_at_k"] > 2 * best  # about 0.27 vs 0.07
    assert {c["name"]: c["passed"] for c in report["checks"]} == {"lift_over_popularity": True,
                                                                  "drop_vs_previous": True}
    for key in ("precision_at_k", "recall_at_k", "map_at_k", "mrr_at_k", "hit_rate_at_k", "catalog_coverage",
                "gini_exposure", "novelty", "intra_list_diversity"):
        assert metrics["model"][key] is not None, key
    # 4 leaf categories C0..C3 among 119 available items: the model's lists are not single-category
    assert 0 < metrics["model"]["intra_list_diversity"] <= 1
    stored = io.read_json(f"{Layout(cfg.data_root).model(RUN_DATE)}/evaluation.json")
    assert stored["metrics"]["model"]["ndcg_at_k"] == metrics["model"]["ndcg_at_k"]
    assert stored["model_version"] == io.read_json(f"{Layout(cfg.data_root).model(RUN_DATE)}/model.json")[
        "model_version"]
    assert report["previous"]["run_date"] == PREVIOUS_DATE
    assert report["previous"]["config_changes"]["als.iterations"] == [30, 10]


def test_random_factors_are_refused_below_popularity(cfg):
    cfg = broken(gate_cfg(cfg))
    write_shop(cfg)
    publish_previous(cfg, ndcg=0.01)  # so only the popularity check can fail
    with pytest.raises(gate.ModelGateError) as refused:
        gate.run(None, cfg, RUN_DATE)
    message = str(refused.value)
    assert "MODEL GATE REFUSED" in message and "NOT PUBLISHED" in message
    assert "best popularity baseline" in message and f"published on {PREVIOUS_DATE}" in message
    assert "stay live" in message
    report = read_report(cfg)
    assert (report["verdict"], report["rule"]) == ("fail", "checks")
    lift = next(c for c in report["checks"] if c["name"] == "lift_over_popularity")
    assert not lift["passed"] and lift["value"] < lift["baseline_value"]
    assert f"{lift['value']:.4f}" in message and f"{lift['required']:.4f}" in message
    # the figures are written before the refusal, for the post-mortem
    assert io.exists(f"{Layout(cfg.data_root).model(RUN_DATE)}/evaluation.json")


def test_a_much_better_previous_model_refuses_a_good_one(cfg):
    cfg = gate_cfg(cfg)
    write_shop(cfg)
    publish_previous(cfg, ndcg=0.9)
    with pytest.raises(gate.ModelGateError, match="previous published model"):
        gate.run(None, cfg, RUN_DATE)
    checks = {c["name"]: c for c in read_report(cfg)["checks"]}
    assert checks["lift_over_popularity"]["passed"]
    assert not checks["drop_vs_previous"]["passed"]
    assert checks["drop_vs_previous"]["required"] == pytest.approx(0.9 * (1 - cfg.gate.max_drop_vs_previous))


def test_first_run_is_allowed_by_rule_and_warns_when_below_the_bar(cfg):
    cfg = broken(gate_cfg(cfg))
    write_shop(cfg)
    summary = gate.run(None, cfg, RUN_DATE)
    assert (summary["verdict"], summary["rule"]) == ("pass", "first_run")
    report = read_report(cfg)
    assert report["previous"] is None
    assert any("FIRST RUN BELOW THE BAR" in w for w in report["warnings"])
    with pytest.raises(gate.ModelGateError):  # the same model, when first runs must meet the bar
        gate.run(None, cfg.replace(gate=dataclasses.replace(cfg.gate, allow_first_run=False)), RUN_DATE)


def test_no_test_persons_is_allowed_by_rule(cfg):
    cfg = broken(gate_cfg(cfg))
    write_shop(cfg, test=False)
    publish_previous(cfg, ndcg=0.9)
    summary = gate.run(None, cfg, RUN_DATE)
    assert (summary["verdict"], summary["rule"], summary["evaluated_persons"]) == ("pass", "too_little_data", 0)
    assert "too little data" in read_report(cfg)["reasons"][0]


def test_disabled_gate_skips_with_a_note(cfg):
    cfg = gate_cfg(cfg, enabled=False)
    summary = gate.run(None, cfg, RUN_DATE)  # nothing on disk: it must not even look
    assert summary["verdict"] == "skipped" and "gate.enabled is false" in summary["note"]
    assert read_report(cfg)["verdict"] == "skipped"


def test_missing_holdout_says_which_stage_to_run(cfg):
    cfg = gate_cfg(cfg)
    write_shop(cfg)
    fs, path = io.fs_for(Layout(cfg.data_root).holdout(RUN_DATE, "test"))
    fs.rm(path, recursive=True)
    with pytest.raises(gate.HoldoutMissingError, match="interactions stage"):
        gate.run(None, cfg, RUN_DATE)


# ------------------------------------------------------------------------------------------------ parts

def test_model_recs_skip_bought_and_unavailable_items(cfg):
    cfg = gate_cfg(cfg)
    write_shop(cfg)
    holdout = gate.load_holdout(cfg, RUN_DATE)
    recs = gate.model_recs(holdout, factors=8, regularization=0.05, alpha=10.0, iterations=10, threads=1, seed=1,
                           k=5, brute_force_below=1000)
    assert recs.groupby("person_id").size().eq(5).all() and recs["person_id"].nunique() == 90
    assert UNAVAILABLE not in set(recs["item_id"])
    bought = set(zip(holdout.bought["person_id"], holdout.bought["item_id"]))
    assert len(bought) == 90 * 6
    assert not bought & set(zip(recs["person_id"], recs["item_id"]))
    assert recs.groupby("person_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()


def test_sample_of_test_persons_is_seeded_and_capped(cfg):
    cfg = gate_cfg(cfg, max_test_persons=7)
    write_shop(cfg)
    a, b = gate.load_holdout(cfg, RUN_DATE), gate.load_holdout(cfg, RUN_DATE)
    assert len(a.persons) == 7 and list(a.persons) == list(b.persons)
    assert set(a.test["person_id"]) == set(a.persons) and len(a.test) == 14
    assert list(gate.load_holdout(cfg.replace(seed=cfg.seed + 1), RUN_DATE).persons) != list(a.persons)


def test_segment_key_leaves_out_unknown_context():
    import pandas as pd

    persons = pd.DataFrame({"country": ["DE", None, "FR", None], "device_type": ["ios", "android", None, None]})
    assert gate.segment_key(persons, ("country", "device_type")).tolist()[:3] == [
        "country=DE/device_type=ios", "device_type=android", "country=FR"]
    assert pd.isna(gate.segment_key(persons, ("country", "device_type")).iloc[3])


def test_leaf_category_is_the_last_level():
    import pandas as pd

    assert gate.leaf_category(pd.Series(["Women > Shoes > Sneakers", "Toys"])).tolist() == ["Sneakers", "Toys"]


def test_previous_is_the_latest_earlier_published_model(cfg):
    layout = Layout(cfg.data_root)
    for day in ("2026-03-05", "2026-03-07", "2026-03-08", "2026-03-12"):
        io.write_json(f"{layout.model(day)}/model.json", {"model_version": f"v-{day}"})
    for day in ("2026-03-05", "2026-03-07", "2026-03-12"):
        gate.mark_published(cfg, day)
    found = gate.find_previous(cfg, RUN_DATE)  # 03-08 is not published, 03-12 is later, 03-10 itself is excluded
    assert (found["run_date"], found["model_version"], found["evaluation"]) == ("2026-03-07", "v-2026-03-07", None)
    assert gate.find_previous(cfg, "2026-03-05") is None
    with pytest.raises(FileNotFoundError, match="no model.json"):
        gate.mark_published(cfg, "2026-03-01")


# ------------------------------------------------------------------------------------------------ verdict

GATE = dataclasses.make_dataclass("G", [("min_lift_over_popularity", float, 0.05),
                                        ("max_drop_vs_previous", float, 0.10), ("min_test_persons", int, 10),
                                        ("allow_first_run", bool, True)])()
PREV = {"run_date": "2026-03-09", "model_version": "v9", "evaluation": {"k": 10, "metrics": {"model": {
    "ndcg_at_k": 0.20}}}}


PREV_OTHER_K = {**PREV, "evaluation": {"k": 5, "metrics": {"model": {"ndcg_at_k": 0.20}}}}
BASELINE_FIGURES = {"popularity_global": {"ndcg_at_k": 0.10}, "popularity_recent": {"ndcg_at_k": 0.08}}


@pytest.mark.parametrize("model, previous, verdict, rule, failed", [
    (0.200, PREV, "pass", "checks", []),                     # >= 0.105 (lift) and >= 0.18 (drop)
    (0.179, PREV, "fail", "checks", ["drop_vs_previous"]),
    (0.104, PREV, "fail", "checks", ["lift_over_popularity", "drop_vs_previous"]),
    (0.106, PREV_OTHER_K, "pass", "checks", []),              # previous figures at another k: no drop check
    (0.050, None, "pass", "first_run", ["lift_over_popularity"]),
])
def test_decide_applies_both_thresholds(model, previous, verdict, rule, failed):
    decision = gate.decide(model={"ndcg_at_k": model}, baselines=BASELINE_FIGURES, previous=previous, gate=GATE,
                           k=10, evaluated_persons=50)
    assert (decision["verdict"], decision["rule"]) == (verdict, rule)
    assert [c["name"] for c in decision["checks"] if not c["passed"]] == failed
    lift = decision["checks"][0]
    assert lift["baseline"] == "popularity_global" and lift["required"] == pytest.approx(0.105)
    if previous is PREV_OTHER_K:
        assert len(decision["checks"]) == 1 and "not applied" in decision["warnings"][0]
    if previous is None:
        assert "FIRST RUN BELOW THE BAR" in decision["warnings"][0]


def test_decide_too_few_persons_is_a_pass_by_rule():
    decision = gate.decide(model={"ndcg_at_k": 0.0}, baselines={"popularity_global": {"ndcg_at_k": 0.5}},
                           previous=PREV, gate=GATE, k=10, evaluated_persons=9)
    assert (decision["verdict"], decision["rule"], decision["checks"]) == ("pass", "too_little_data", [])
