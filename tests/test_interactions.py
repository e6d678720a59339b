import datetime as dt

import pytest

from jobs.decay import HALF_LIFE_GRID_DAYS
from jobs.evaluation.person_split import choose_holdout, per_person_cuts
from jobs.stages.interactions import (active_persons, build_interactions, holdout_days_for, holdout_split,
                                     per_person_split, returning_persons)

pytestmark = pytest.mark.spark
W = {"product_view": 1.0, "add_to_cart": 4.0, "purchase": 10.0, "return": -10.0, "search": 0.0}
SCHEMA = "person_id string, item_id string, event_type string, event_time timestamp, country string, device_type string"


def ev(spark, data):
    return spark.createDataFrame([(p, i, t, dt.datetime.fromisoformat(ts), c, d) for p, i, t, ts, c, d in data], SCHEMA)


def test_weights_decay_and_returns_cancel_purchases(spark):
    events = ev(spark, [
        ("p1", "a", "product_view", "2026-03-10 23:59:59", "DE", "ios"),   # age 0 -> 1.0
        ("p1", "a", "purchase", "2026-02-08 23:59:59", "DE", "ios"),       # age 30 days, half-life 30 -> 5.0
        ("p1", "b", "purchase", "2026-03-09 12:00:00", "DE", "ios"),
        ("p1", "b", "return", "2026-03-10 12:00:00", "DE", "ios"),         # returned: not bought, weight <= 0
        ("p2", "a", "search", "2026-03-10 10:00:00", "FR", None),          # weight 0 type
        (None, "a", "purchase", "2026-03-10 10:00:00", "FR", None),        # no person
        ("p2", "c", "add_to_cart", "2026-03-11 10:00:00", "FR", None),     # after the run date
    ])
    out = build_interactions(events, run_date="2026-03-10", event_weights=W, half_life_days=30.0, max_weight=100.0)
    got = {(r.person_id, r.item_id): (r.weight, r.purchased) for r in out.collect()}
    assert set(got) == {("p1", "a")}
    assert got[("p1", "a")][0] == pytest.approx(6.0, rel=1e-6) and got[("p1", "a")][1] is True


def test_weights_hold_every_half_life_of_the_grid(spark):
    events = ev(spark, [
        ("p1", "a", "purchase", "2026-02-08 23:59:59", "DE", "ios"),       # age 30 days
        ("p1", "a", "product_view", "2026-03-10 23:59:59", "DE", "ios"),   # age 0
    ])
    [row] = build_interactions(events, run_date="2026-03-10", event_weights=W, half_life_days=30.0,
                               max_weight=100.0).collect()
    expected = [1.0 + 10.0 * 0.5 ** (30 / h) for h in HALF_LIFE_GRID_DAYS]
    assert row.weights == pytest.approx(expected, rel=1e-6)
    assert row.weights[HALF_LIFE_GRID_DAYS.index(30.0)] == pytest.approx(row.weight, rel=1e-9)


def test_a_holdout_with_too_few_test_persons_widens(spark):
    # p1..p3 come back 3 days before D, p4 20 days before: 7 days holds 3 testable persons, 28 days 4
    rows = [(f"p{n}", "a", "purchase", "2026-01-01 10:00:00", "DE", "ios") for n in range(1, 5)]
    rows += [(f"p{n}", "b", "purchase", "2026-03-07 10:00:00", "DE", "ios") for n in range(1, 4)]
    rows += [("p4", "b", "purchase", "2026-02-18 10:00:00", "DE", "ios")]
    events = ev(spark, rows)
    kwargs = {"run_date": "2026-03-10", "holdout_days": 7, "test_event_types": ("purchase",)}
    assert holdout_days_for(events, max_holdout_days=56, min_test_persons=3, **kwargs)[0] == 7
    days, counts = holdout_days_for(events, max_holdout_days=56, min_test_persons=4, **kwargs)
    assert days == 28 and counts == {7: 3, 14: 3, 28: 4, 56: 4}
    assert holdout_days_for(events, max_holdout_days=7, min_test_persons=4, **kwargs) == (7, {})


def test_holdout_split_tests_on_new_items_after_the_cutoff(spark):
    events = ev(spark, [
        ("p1", "a", "purchase", "2026-03-01 10:00:00", "DE", "ios"),
        ("p1", "a", "purchase", "2026-03-09 10:00:00", "DE", "ios"),   # re-buy in test: not a new item
        ("p1", "b", "add_to_cart", "2026-03-09 10:00:00", "DE", "ios"),
        ("p1", "c", "product_view", "2026-03-10 10:00:00", "DE", "ios"),  # a view is not a test event
    ])
    train, test = holdout_split(events, run_date="2026-03-10", holdout_days=2, event_weights=W, half_life_days=30.0,
                                max_weight=100.0, test_event_types=("purchase", "add_to_cart"))
    assert sorted((r.person_id, r.item_id) for r in train.collect()) == [("p1", "a")]
    assert sorted((r.person_id, r.item_id) for r in test.collect()) == [("p1", "b")]


def test_active_persons_keeps_latest_known_context(spark):
    events = ev(spark, [("p1", "a", "product_view", "2026-03-01 10:00:00", "DE", "ios"),
                        ("p1", None, "search", "2026-03-05 10:00:00", None, "android"),
                        ("p2", None, "login", "2026-03-02 10:00:00", "FR", None)])
    got = {r.person_id: (r.country, r.device_type, r.events) for r in active_persons(events).collect()}
    assert got == {"p1": ("DE", "android", 2), "p2": ("FR", None, 1)}


def test_one_person_cannot_make_one_item_weigh_without_bound(spark):
    events = ev(spark, [("p1", "a", "purchase", "2026-03-10 23:59:59", "DE", "ios")] * 50
                + [("p1", "b", "product_view", "2026-03-10 23:59:59", "DE", "ios")])
    got = {r.item_id: r.weight for r in build_interactions(events, run_date="2026-03-10", event_weights=W,
                                                          half_life_days=30.0, max_weight=25.0).collect()}
    assert got["a"] == pytest.approx(25.0) and got["b"] == pytest.approx(1.0, rel=1e-3)


def test_per_person_holdout_keeps_each_persons_last_items_by_day(spark):
    day = lambda d, h=10: f"2026-03-{d:02d} {h:02d}:00:00"  # noqa: E731
    rows = [("p1", i, "purchase", day(2, 10 + n), "DE", "ios") for n, i in enumerate("abcde")]  # one day, 5 items
    rows += [("p2", i, "purchase", day(1), "DE", "ios") for i in "abc"]                       # comes back
    rows += [("p2", "d", "add_to_cart", day(5), "DE", "ios"), ("p2", "e", "purchase", day(9), "DE", "ios"),
             ("p2", "c", "product_view", day(9), "DE", "ios"),    # on the cut day, not held out: train
             ("p2", "a", "product_view", day(10), "DE", "ios"),   # after the cut day: not train
             ("p2", "f", "product_view", day(10), "DE", "ios")]
    rows += [("p3", i, "purchase", day(3), "DE", "ios") for i in "abc"]                       # too few items
    events = ev(spark, rows)
    cuts, held = per_person_cuts(events, test_event_types=("purchase", "add_to_cart"), share=0.2, min_items=5,
                                 max_persons=10, seed=42)
    got = {r.person_id: (str(r.cut_day), r.items, r.held_out) for r in cuts.collect()}
    assert got == {"p1": ("2026-03-02", 5, 1), "p2": ("2026-03-09", 5, 1)}
    held_pairs = sorted((r.person_id, r.item_id) for r in held.collect())
    assert [p for p, _ in held_pairs] == ["p1", "p2"] and ("p2", "e") in held_pairs  # p1's: a seeded draw
    train, test = per_person_split(events, cuts, held, run_date="2026-03-10", event_weights=W, half_life_days=30.0,
                                   max_weight=100.0)
    pairs = {(r.person_id, r.item_id): r.weight for r in train.collect()}
    assert sorted((r.person_id, r.item_id) for r in test.collect()) == held_pairs
    assert not set(held_pairs) & set(pairs)
    assert {i for p, i in pairs if p == "p2"} == {"a", "b", "c", "d"}
    age = lambda d: (10 - d) + 13.99972 / 24  # noqa: E731  (days from 10:00 of day d to the end of the 10th)
    assert pairs[("p2", "a")] == pytest.approx(10.0 * 0.5 ** (age(1) / 30.0), rel=1e-5)
    assert pairs[("p2", "c")] == pytest.approx(10.0 * 0.5 ** (age(1) / 30.0) + 0.5 ** (age(9) / 30.0), rel=1e-5)
    assert len([p for p in pairs if p[0] == "p1"]) == 4 and len([p for p in pairs if p[0] == "p3"]) == 3


def test_auto_holdout_is_temporal_when_persons_come_back_and_per_person_when_they_do_not(spark):
    def choose(rows):
        events = ev(spark, rows)
        returning = returning_persons(events, run_date="2026-03-28", lengths=[7, 14, 28],
                                      test_event_types=("purchase",))
        persons = lambda: per_person_cuts(events, test_event_types=("purchase",), share=0.2, min_items=5,  # noqa: E731
                                          max_persons=3, seed=1)[0].count()
        return choose_holdout("auto", returning=returning, holdout_days=7, max_stretch=2, min_test_persons=3,
                              per_person_persons=persons)

    # four raters, each rating 6 movies on one day, weeks apart: nobody comes back
    one_day = [(f"p{n}", f"m{i}", "purchase", f"2026-03-{1 + 7 * n:02d} 10:00:00", "DE", "ios")
               for n in range(4) for i in range(6)]
    kind, reason = choose(one_day)
    assert kind == "per_person" and "leave-last-out for 3 persons" in reason  # 4 could be: a sample of at most 3
    # four shoppers who bought early in the month and come back in its last week
    returning = [(f"p{n}", "a", "purchase", "2026-03-01 10:00:00", "DE", "ios") for n in range(4)]
    returning += [(f"p{n}", "b", "purchase", "2026-03-25 10:00:00", "DE", "ios") for n in range(4)]
    kind, reason = choose(returning)
    assert kind == "temporal" and reason.startswith("auto: 4 persons")
