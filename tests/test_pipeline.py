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


# ------------------------------------------------------------------- the night's records, summary and page

def _fake_stages(monkeypatch, fail: dict[str, Exception] | None = None):
    """Every stage replaced by a stand-in that returns a small summary, or raises the given error."""
    import importlib

    from jobs.stages import STAGES

    def stand_in(name):
        def run(spark, cfg, run_date):
            if fail and name in fail:
                raise fail[name]
            return {"seconds": 0.0, "fallback": None} if name == "gate" else {"seconds": 0.0}
        return run

    for name in STAGES:
        monkeypatch.setattr(importlib.import_module(f"jobs.stages.{name}"), "run", stand_in(name))


def _cfg(tmp_path):
    return load_config(data_root=str(tmp_path / "data"), overrides=["tuning.enabled=false"])


def test_run_all_writes_the_summary_and_the_page(tmp_path, monkeypatch):
    from jobs.pipeline import run_all

    _fake_stages(monkeypatch)
    cfg = _cfg(tmp_path)
    summary = run_all(cfg, RUN_DATE, spark=object())
    reports = Layout(cfg.data_root).reports(RUN_DATE)
    assert summary["status"] == "published" and set(summary["stage_status"].values()) == {"ok"}
    assert json.loads(open(f"{reports}/run_summary.json").read())["status"] == "published"
    assert summary["page"] == f"{reports}/index.html" and "Night 2026-03-10" in open(summary["page"]).read()
    record = json.loads(open(f"{reports}/stages/validate.json").read())
    assert record["status"] == "ok" and record["started_at"] <= record["finished_at"]


def test_a_stage_that_raises_is_recorded_and_the_page_names_it(tmp_path, monkeypatch):
    import pytest

    from jobs.pipeline import run_all

    _fake_stages(monkeypatch, fail={"train": ValueError("no interactions <at> all")})
    cfg = _cfg(tmp_path)
    with pytest.raises(ValueError, match="no interactions"):
        run_all(cfg, RUN_DATE, spark=object())
    reports = Layout(cfg.data_root).reports(RUN_DATE)
    summary = json.loads(open(f"{reports}/run_summary.json").read())
    assert (summary["status"], summary["failed_stage"], summary["error"]) == ("failed", "train", "no interactions <at> all")
    assert "ValueError" in summary["traceback"]
    assert summary["stage_status"]["tune"] == "ok" and summary["stage_status"]["gate"] == "not run"
    record = json.loads(open(f"{reports}/stages/train.json").read())
    assert (record["status"], record["error_type"]) == ("failed", "ValueError")
    page = open(f"{reports}/index.html").read()
    assert "Stage <b>train</b> failed (ValueError)" in page and "no interactions &lt;at&gt; all" in page


def test_records_of_an_earlier_attempt_do_not_count_for_tonight(tmp_path, monkeypatch):
    from jobs.pipeline import finish_night, run_all, stage_records

    _fake_stages(monkeypatch)
    cfg = _cfg(tmp_path)
    run_all(cfg, RUN_DATE, spark=object())
    run_stage("stitch", cfg, RUN_DATE, spark=object())  # stitch again, alone: what came after it is now stale
    status = {n: r["status"] for n, r in stage_records(cfg, RUN_DATE).items()}
    assert (status["validate"], status["stitch"], status["interactions"], status["publish"]) == \
        ("ok", "ok", "not run", "not run")
    summary = finish_night(cfg, RUN_DATE)
    assert (summary["status"], summary["failed_stage"]) == ("incomplete", "interactions")


def test_a_page_that_cannot_be_written_does_not_undo_the_night(tmp_path, monkeypatch):
    import jobs.reports.night as night
    from jobs.pipeline import run_all

    _fake_stages(monkeypatch)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(night, "write_page", broken)
    summary = run_all(_cfg(tmp_path), RUN_DATE, spark=object())
    assert summary["status"] == "published" and summary["page"] is None and "disk full" in summary["page_error"]
