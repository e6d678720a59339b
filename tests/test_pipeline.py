"""jobs.pipeline: every stage after `tune` gets the night's adopted settings."""
import json

from jobs.config import load_config
from jobs.pipeline import night_config, run_stage
from jobs.storage.datasets import Datasets
from jobs.storage.layout import Layout

RUN_DATE = "2026-03-10"


def write_tuned(cfg, settings, run_date=RUN_DATE):
    Datasets(cfg.data_root).tuning.write(run_date, {
        "run_date": run_date, "mode": "wide", "settings": settings, "adopted": True, "changes": {},
        "figures": {}, "pinned": []})


def test_stages_after_tune_get_the_adopted_settings(tmp_path, monkeypatch):
    cfg = load_config(data_root=str(tmp_path / "data"))
    write_tuned(cfg, {"als.regularization": 30.0, "als.alpha": 0.3, "interactions.half_life_days": 14.0})
    seen = {}

    def fake_run(spark, stage_cfg, run_date):
        seen["cfg"] = stage_cfg
        return {}

    import jobs.stages.train as train

    monkeypatch.setattr(train, "run", fake_run)
    summary = run_stage("train", cfg, RUN_DATE, spark=object())
    night = seen["cfg"]
    assert (night.als.regularization, night.als.alpha, night.interactions.half_life_days) == (30.0, 0.3, 14.0)
    assert night.fingerprint() != cfg.fingerprint() and summary["config_fingerprint"] == night.fingerprint()
    stored = json.loads(open(f"{Layout(cfg.data_root).reports(RUN_DATE)}/stages/train.json").read())
    assert stored["config_fingerprint"] == night.fingerprint()


def test_stages_before_tune_get_the_config_as_it_is(tmp_path, monkeypatch):
    cfg = load_config(data_root=str(tmp_path / "data"))
    write_tuned(cfg, {"als.alpha": 0.3})
    seen = {}
    import jobs.stages.interactions as interactions

    monkeypatch.setattr(interactions, "run", lambda spark, c, d: seen.setdefault("cfg", c) and {})
    run_stage("interactions", cfg, RUN_DATE, spark=object())
    assert seen["cfg"].als.alpha == cfg.als.alpha


def test_night_config_keeps_pinned_keys_and_falls_back_to_the_history(tmp_path):
    cfg = load_config(data_root=str(tmp_path / "data"), overrides=["als.alpha=2.0"])
    data = Datasets(cfg.data_root)
    data.tuning_history.put({"run_date": "2026-03-09", "mode": "wide", "settings": {"als.alpha": 9.0,
                             "als.factors": 32}, "adopted": True, "changes": {}, "figures": {}, "pinned": []})
    night = night_config(cfg, RUN_DATE)  # no tuning for the night itself: the last tuned settings
    assert (night.als.alpha, night.als.factors) == (2.0, 32)
    assert night_config(cfg.with_settings({}).replace(
        tuning=cfg.tuning.__class__(**{**cfg.tuning.__dict__, "enabled": False})), RUN_DATE).als.factors == 64
