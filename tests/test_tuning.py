"""`recs tune` and the tuning helpers of jobs.evaluation.tuning on the known-answer shop (tests/known_shop.py)."""
import json
import time

import pytest
import yaml
from known_shop import RUN_DATE, gate_cfg, write_shop

from jobs.config import load_config
from jobs.evaluation.holdout import HoldoutMissingError
from jobs.evaluation.tuning import (TUNABLE_KEYS, adoption, search_space, settings_of, tune,
                                    tuning_mode)
from jobs.models.tuning import Choice, LogUniform


def test_tune_writes_a_loadable_config_with_the_best_trial(cfg, tmp_path):
    cfg = gate_cfg(cfg)
    write_shop(cfg)
    out = tmp_path / "conf" / "tuned.yaml"
    started = time.perf_counter()
    result = tune(cfg, RUN_DATE, budget_seconds=20, out_file=str(out), seed=3, max_trials=5)
    assert time.perf_counter() - started < 20
    trials = json.loads((tmp_path / "conf" / "tuned.yaml.trials.json").read_text())["trials"]
    assert result["trials"] == len(trials) == 5
    current = {k: v for k, v in settings_of(cfg).items() if k not in cfg.pinned}
    assert trials[0]["settings"] == current  # trial 0 = the current settings
    best = max(trials, key=lambda t: t["ndcg_at_k"])
    assert result["best"]["trial"] == best["trial"] and result["best"]["ndcg_at_k"] >= trials[0]["ndcg_at_k"]

    tuned = load_config(conf_file=out)
    assert settings_of(tuned, best["settings"]) == best["settings"]
    assert tuned.als.threads == load_config().als.threads  # only the tuned keys are set
    text = out.read_text()
    assert set(yaml.safe_load(text)) <= {"als", "interactions"}
    header = [line for line in text.splitlines() if line.startswith("#")]
    for t in trials:  # every trial's figures are in the header, on the line of its number
        assert any(line[3:].split()[:1] == [str(t["trial"])] and f"{t['ndcg_at_k']:.4f}" in line for line in header)
    assert any(line.startswith("# *") and f"{best['ndcg_at_k']:.4f}" in line for line in header)


def test_tune_stops_at_the_budget(cfg, tmp_path):
    cfg = gate_cfg(cfg)
    write_shop(cfg)
    result = tune(cfg, RUN_DATE, budget_seconds=0.0, out_file=str(tmp_path / "t.yaml"), seed=3)
    assert result["trials"] == 1  # the current settings always run, then the budget is spent


def test_tune_without_a_holdout_says_what_to_run(cfg, tmp_path):
    with pytest.raises(HoldoutMissingError, match=f"recs run --date {RUN_DATE}"):
        tune(cfg, RUN_DATE, budget_seconds=5, out_file=str(tmp_path / "t.yaml"), seed=1)


def test_search_space_is_wide_first_narrow_later_and_never_holds_a_pinned_key():
    current = settings_of(load_config())
    wide = search_space("wide", current, ())
    assert set(wide) == set(TUNABLE_KEYS)
    assert wide["als.regularization"].low <= 0.05 and wide["als.regularization"].high >= 30
    assert wide["als.alpha"].low <= 0.1 and wide["als.alpha"].high >= 10
    warm = search_space("warm", current, ())
    assert warm["als.regularization"] == LogUniform(0.0125, 0.2)
    assert warm["als.factors"] == Choice((32, 64, 128)) and warm["interactions.half_life_days"] == Choice((14.0, 30.0, 60.0))
    assert "als.alpha" not in search_space("wide", current, ("als.alpha",))
    off_grid = {**current, "interactions.half_life_days": 21.0}  # set by the user: not on the grid, not searched
    assert "interactions.half_life_days" not in search_space("wide", off_grid, ())


def test_mode_is_wide_then_warm_then_full_on_schedule():
    assert tuning_mode([], "2026-03-10", 7) == "wide"
    history = [{"run_date": "2026-03-01", "mode": "wide"}, {"run_date": "2026-03-05", "mode": "warm"}]
    assert tuning_mode(history, "2026-03-07", 7) == "warm"
    assert tuning_mode(history, "2026-03-08", 7) == "full"
    assert tuning_mode([{"run_date": "2026-03-01", "mode": "off"}], "2026-03-02", 7) == "wide"


def trial(n, ndcg, **settings):
    return {"trial": n, "settings": {"als.alpha": 10.0, **settings}, "ndcg_at_k": ndcg, "map_at_k": ndcg / 2,
            "recall_at_k": ndcg}


def test_adoption_needs_the_margin_and_records_what_changed():
    kept = adoption([trial(0, 0.100), trial(1, 0.101, **{"als.alpha": 3.0})], min_relative_gain=0.02)
    assert not kept["adopted"] and kept["settings"] == {"als.alpha": 10.0} and kept["changes"] == {}
    taken = adoption([trial(0, 0.100), trial(1, 0.103, **{"als.alpha": 3.0})], min_relative_gain=0.02)
    assert taken["adopted"] and taken["settings"] == {"als.alpha": 3.0}
    assert taken["changes"] == {"als.alpha": [10.0, 3.0]}
    assert taken["figures"]["current"]["ndcg_at_k"] == 0.100 and taken["figures"]["best"]["ndcg_at_k"] == 0.103
