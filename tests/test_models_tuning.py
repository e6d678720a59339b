"""jobs.models.tuning: the seeded, budgeted search (TPE and random) against a scorer with a known optimum."""
import math

import pytest

from jobs.models.tuning import Choice, LogUniform, best_trial, nested, search, warm_space

SPACE = {"als.factors": Choice((32, 64, 128)), "als.regularization": LogUniform(1e-3, 300.0)}
CURRENT = {"als.factors": 64, "als.regularization": 0.05}


def score(settings):
    """Best at regularization 30, factors 64: a bowl on the log scale."""
    miss = abs(math.log10(settings["als.regularization"] / 30.0)) + (settings["als.factors"] != 64) * 0.2
    return {"ndcg_at_k": 1.0 / (1.0 + miss), "seconds": 0.0}


@pytest.mark.parametrize("method", ["tpe", "random"])
def test_search_starts_with_the_current_settings_and_is_seeded(method):
    a = search(score, space=SPACE, current=CURRENT, budget_seconds=30, seed=1, method=method, max_trials=15)
    b = search(score, space=SPACE, current=CURRENT, budget_seconds=30, seed=1, method=method, max_trials=15)
    assert len(a) == 15 and a[0]["settings"] == CURRENT
    assert [t["settings"] for t in a] == [t["settings"] for t in b]
    assert len({tuple(sorted(t["settings"].items())) for t in a}) == len(a)  # no setting scored twice
    assert all(1e-3 <= t["settings"]["als.regularization"] <= 300 for t in a)
    assert best_trial(a)["ndcg_at_k"] > a[0]["ndcg_at_k"]


def test_tpe_gets_closer_than_random_on_a_smooth_bowl():
    def mean_gap(method):  # over seeds: one seed of either can be lucky
        gaps = [1 - best_trial(search(score, space=SPACE, current=CURRENT, budget_seconds=30, seed=seed,
                                      method=method, max_trials=40))["ndcg_at_k"] for seed in range(5)]
        return sum(gaps) / len(gaps)

    assert mean_gap("tpe") < mean_gap("random")


def test_search_stops_when_the_budget_is_spent():
    trials = search(lambda s: {"ndcg_at_k": 0.1, "seconds": 1.0}, space=SPACE, current=CURRENT,
                    budget_seconds=0.0, seed=1)
    assert len(trials) == 1  # the current settings always run


def test_min_trials_run_even_when_the_budget_is_spent():
    # a busy host makes every trial slow: the first night's search still tries this many before it stops
    trials = search(lambda s: {"ndcg_at_k": 0.1, "seconds": 1.0}, space=SPACE, current=CURRENT,
                    budget_seconds=0.0, seed=1, min_trials=4)
    assert len(trials) == 4


def test_a_current_value_outside_the_space_is_still_trial_zero():
    current = {"als.factors": 8, "als.regularization": 500.0}
    trials = search(score, space=SPACE, current=current, budget_seconds=30, seed=1, max_trials=3)
    assert trials[0]["settings"] == current


def test_warm_space_narrows_around_the_current_settings():
    warm = warm_space(SPACE, {"als.factors": 128, "als.regularization": 100.0})
    assert warm == {"als.factors": Choice((64, 128)), "als.regularization": LogUniform(25.0, 300.0)}


def test_nested_turns_dotted_keys_into_a_config_tree():
    assert nested({"als.alpha": 3.0, "interactions.half_life_days": 14.0}) == {
        "als": {"alpha": 3.0}, "interactions": {"half_life_days": 14.0}}


def test_search_stops_when_nothing_better_is_found_for_patience_trials():
    flat = search(lambda s: {"ndcg_at_k": 0.1, "seconds": 0.0}, space=SPACE, current=CURRENT, budget_seconds=60,
                  seed=1, patience=5)
    assert len(flat) == 6  # the current settings, then 5 trials that found nothing better
    improving = search(score, space=SPACE, current=CURRENT, budget_seconds=60, seed=1, patience=5, max_trials=30)
    assert len(improving) > 6  # improvements restart the count
