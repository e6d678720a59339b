"""Known-answer tests for jobs.evaluation.baselines: global and per-segment popularity recommendations."""
import pandas as pd
import pytest

from jobs.evaluation import baselines as ev


def frame(rows, cols=("person_id", "item_id")):
    return pd.DataFrame(rows, columns=list(cols))


# --------------------------------------------------------------------------------------------- baselines

@pytest.fixture
def shop():
    # distinct users per item: a 3, b 2, c 1, d 1 (c and d tie: id order); u1 saw a and c
    return pd.DataFrame({
        "person_id": ["u1", "u2", "u3", "u2", "u3", "u1", "u2", "u3"],
        "item_id": ["a", "a", "a", "b", "b", "c", "d", "d"],
        "event_time": pd.to_datetime(["2026-01-01"] * 6 + ["2026-02-10", "2026-02-11"], utc=True),
    }).iloc[:7]  # d once: its two rows would give it 2 users otherwise


def test_popularity_recs__excludes_seen_and_returns_k_per_user(shop):
    recs = ev.popularity_recs(shop, ["u1", "u9"], k=2, exclude=shop)
    by_user = recs.groupby("person_id")["item_id"].apply(list).to_dict()
    assert by_user == {"u1": ["b", "d"], "u9": ["a", "b"]}
    assert recs["rank"].tolist() == [1, 2, 1, 2]
    assert recs.loc[recs.person_id == "u9", "score"].tolist() == [3.0, 2.0]
    seen = set(zip(shop.person_id, shop.item_id))
    assert not seen & set(zip(recs.person_id, recs.item_id))


def test_popularity_recs__since_counts_recent_interactions_only(shop):
    recs = ev.popularity_recs(shop, pd.DataFrame({"person_id": ["u9"]}), k=3, since="2026-02-01")
    # only d was touched since February; all-time popularity orders the rest
    assert recs["item_id"].tolist() == ["d", "a", "b"]
    assert recs["score"].is_monotonic_decreasing


def test_popularity_recs__fewer_than_k_only_when_the_user_saw_everything(shop):
    recs = ev.popularity_recs(shop, ["u2", "u1"], k=4, exclude=shop)
    assert recs.groupby("person_id").size().to_dict() == {"u1": 2, "u2": 1}
    assert recs["person_id"].tolist()[0] == "u2"  # order of `users` kept


def test_segment_popularity_recs__segment_first_then_global(shop):
    segments = pd.DataFrame({"person_id": ["u1", "u2", "u3", "n1", "n2"],
                             "segment": ["S", "T", "T", "S", None]})
    recs = ev.segment_popularity_recs(shop, segments, k=3, exclude=shop)
    by_user = recs.groupby("person_id")["item_id"].apply(list).to_dict()
    # segment S (u1) touched a and c; T (u2, u3) touched a, b, d (a 2 users, b 2, d 1)
    assert by_user["n1"] == ["a", "c", "b"]  # S's items (a, c: tie on 1 user, global breaks it), then global
    assert by_user["u1"] == ["b", "d"]  # everything else u1 has not seen, by global popularity
    assert by_user["n2"] == ["a", "b", "c"]  # no segment: global list (c before d: id order)
    assert recs.loc[recs.person_id == "n1", "score"].is_monotonic_decreasing


# --------------------------------------------------------------------------------------------- bad input

@pytest.fixture
def truth():
    # any (person_id, item_id) frame: the bad-input cases drop or lack a column
    return frame([("u1", "i1"), ("u1", "i2"), ("u1", "i3"),
                  ("u2", "i2"), ("u2", "i5"),
                  ("u3", "i4"),
                  ("u4", "i1")])


@pytest.mark.parametrize("call, column", [
    (lambda t: ev.popularity_recs(t.drop(columns="item_id"), ["u1"], k=2), "item_id"),
    (lambda t: ev.popularity_recs(t, ["u1"], k=2, exclude=t.drop(columns="person_id")), "person_id"),
    (lambda t: ev.segment_popularity_recs(t, t, k=2), "segment"),
])
def test_missing_column_raises_value_error_naming_it(truth, call, column):
    with pytest.raises(ValueError, match=f"missing column '{column}'"):
        call(truth)
