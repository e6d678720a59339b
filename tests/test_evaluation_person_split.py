"""`gate.holdout: auto`'s rule (jobs/evaluation/person_split.py), on returning-person counts like the real data's."""
import pytest

from jobs.evaluation.person_split import choose_holdout

MOVIELENS = {7: 39, 14: 66, 28: 77, 56: 124}  # raters with earlier history in the last N days (bench train)
ONLINE_RETAIL = {7: 390, 14: 683, 28: 1048, 56: 1487}


def choose(mode, returning, per_person=900, **kw):
    asked = []
    kind, reason = choose_holdout(mode, returning=returning, holdout_days=7, max_stretch=kw.get("stretch", 2),
                                  min_test_persons=100, per_person_persons=lambda: asked.append(1) or per_person)
    return kind, reason, bool(asked)


def test_auto_stays_temporal_where_enough_persons_come_back_within_the_stretch():
    assert choose("auto", ONLINE_RETAIL)[:3:2] == ("temporal", False)  # the per-person count is not even asked
    assert choose("auto", {7: 60, 14: 100, 28: 300})[0] == "temporal"  # one doubling is allowed


def test_auto_cuts_per_person_where_the_window_would_have_to_stretch_far():
    kind, reason, asked = choose("auto", MOVIELENS)
    assert kind == "per_person" and asked and "66 in 14 days" in reason and "900 persons" in reason
    assert choose("auto", MOVIELENS, stretch=8)[0] == "temporal"  # 124 within 56 days


def test_auto_falls_back_to_temporal_when_neither_holdout_has_enough_persons():
    kind, reason, _ = choose("auto", {7: 3, 14: 5}, per_person=40)
    assert kind == "temporal" and "too little data" in reason


@pytest.mark.parametrize("mode", ["temporal", "per_person"])
def test_a_configured_holdout_is_used_as_it_is(mode):
    assert choose(mode, MOVIELENS if mode == "temporal" else ONLINE_RETAIL)[:3:2] == (mode, False)


def test_an_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="gate.holdout"):
        choose("random", ONLINE_RETAIL)
