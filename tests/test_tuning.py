"""`recs tune` on the tiny shop of test_gate.py (90 persons, 3 taste groups, 120 items)."""
import json
import time

import pytest
import yaml
from known_shop import RUN_DATE, gate_cfg, write_shop

from jobs.config import load_config
from jobs.evaluation.holdout import HoldoutMissingError
from jobs.evaluation.tuning import tune
from jobs.models.tuning import SEARCH_SPACE, TUNED_KEYS, candidate_settings


def test_tune_writes_a_loadable_config_with_the_best_trial(cfg, tmp_path):
    cfg = gate_cfg(cfg)
    write_shop(cfg)
    out = tmp_path / "conf" / "tuned.yaml"
    started = time.perf_counter()
    result = tune(cfg, RUN_DATE, budget_seconds=20, out_file=str(out), seed=3, max_trials=5)
    assert time.perf_counter() - started < 20
    trials = json.loads((tmp_path / "conf" / "tuned.yaml.trials.json").read_text())["trials"]
    assert result["trials"] == len(trials) == 5
    assert {k: trials[0][k] for k in TUNED_KEYS} == {"factors": 8, "iterations": 10, "regularization": 0.05,
                                                    "alpha": 10.0}  # trial 0 = the current settings
    best = max(trials, key=lambda t: t["ndcg_at_k"])
    assert result["best"]["trial"] == best["trial"] and result["best"]["ndcg_at_k"] >= trials[0]["ndcg_at_k"]

    tuned = load_config(conf_file=out)
    written = {k: getattr(tuned.als, k) for k in TUNED_KEYS}
    assert written == {k: best[k] for k in TUNED_KEYS}
    assert written in [{k: t[k] for k in TUNED_KEYS} for t in trials]
    assert tuned.als.threads == load_config().als.threads  # only the tuned keys are set
    text = out.read_text()
    assert set(yaml.safe_load(text)) == {"als"}
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


def test_candidates_are_seeded_distinct_and_start_with_the_current_settings():
    current = {"factors": 64, "iterations": 15, "regularization": 0.05, "alpha": 10.0}
    a = candidate_settings(SEARCH_SPACE, seed=1, current=current)
    assert a == candidate_settings(SEARCH_SPACE, seed=1, current=current)
    assert a != candidate_settings(SEARCH_SPACE, seed=2, current=current)
    assert a[0] == current and current not in a[1:]
    assert len({tuple(c.values()) for c in a}) == len(a)
    assert all(c[k] in SEARCH_SPACE[k] for c in a for k in TUNED_KEYS)
