"""Known-answer tests for jobs.evaluation.splits: temporal, per-user and Recommenders-compatible splits."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from jobs.evaluation import splits as ev


def frame(rows, cols=("person_id", "item_id")):
    return pd.DataFrame(rows, columns=list(cols))


# --------------------------------------------------------------------------------------------- splits

def test_temporal_holdout__cutoff_day_goes_to_test():
    times = pd.to_datetime(["2026-02-28 23:59:59", "2026-03-01 00:00:00", "2026-03-02 12:00:00"], utc=True)
    df = pd.DataFrame({"person_id": ["a", "b", "c"], "event_time": times})
    train, test = ev.temporal_holdout(df, cutoff="2026-03-01")
    assert train["person_id"].tolist() == ["a"] and test["person_id"].tolist() == ["b", "c"]
    naive = df.assign(event_time=df["event_time"].dt.tz_localize(None))
    train, test = ev.temporal_holdout(naive, cutoff=pd.Timestamp("2026-03-01", tz="UTC"))
    assert train["person_id"].tolist() == ["a"]


@pytest.mark.parametrize("run_date, holdout_days, first_test_day", [
    ("2026-10-29", 7, dt.date(2026, 10, 23)),
    ("2026-10-29", 1, dt.date(2026, 10, 29)),  # one day: the run date itself
    ("2026-03-01", 2, dt.date(2026, 2, 28)),
    ("2026-01-02", 3, dt.date(2025, 12, 31)),
])
def test_holdout_test_start__first_day_of_the_test_part(run_date, holdout_days, first_test_day):
    assert ev.holdout_test_start(run_date, holdout_days) == first_test_day


def test_holdout_test_start__train_before_its_midnight_utc_test_through_the_run_date():
    times = pd.to_datetime(["2026-10-22 23:59:59", "2026-10-23 00:00:00", "2026-10-29 23:59:59"], utc=True)
    df = pd.DataFrame({"person_id": ["a", "b", "c"], "event_time": times})
    train, test = ev.temporal_holdout(df, cutoff=ev.holdout_test_start("2026-10-29", 7))
    assert train["person_id"].tolist() == ["a"] and test["person_id"].tolist() == ["b", "c"]
    test_days = test["event_time"].dt.date
    assert (dt.date(2026, 10, 29) - test_days.min()).days + 1 == 7


@pytest.mark.parametrize("holdout_days", [0, -1, True, 1.5])
def test_holdout_test_start__needs_a_positive_whole_number_of_days(holdout_days):
    with pytest.raises(ValueError, match="holdout_days must be a positive integer"):
        ev.holdout_test_start("2026-10-29", holdout_days)


def test_random_split_per_user__sizes_round_half_even_and_seeded():
    df = frame([("u1", f"i{i}") for i in range(4)] + [("u2", f"i{i}") for i in range(2)]
               + [("u3", f"i{i}") for i in range(6)] + [("u4", "i0")])
    train, test = ev.random_split_per_user(df, ratio=0.75, seed=7)
    # 0.75 * n = 3, 1.5, 4.5, 0.75 -> 3, 2, 4, 1 in train
    assert train.groupby("person_id").size().to_dict() == {"u1": 3, "u2": 2, "u3": 4, "u4": 1}
    assert test.groupby("person_id").size().to_dict() == {"u1": 1, "u3": 2}
    assert sorted(train.index.tolist() + test.index.tolist()) == list(range(len(df)))
    again, _ = ev.random_split_per_user(df, ratio=0.75, seed=7)
    assert again.index.tolist() == train.index.tolist()
    assert any(ev.random_split_per_user(df, ratio=0.75, seed=s)[0].index.tolist() != train.index.tolist()
               for s in range(10))


def _upstream_per_group_sample(data, ratio, split_col, seed):
    """Transcription of recommenders' pre-July-2022 `_do_stratification(is_random=True)` for one ratio:
    groupby, `split_pandas_data_with_ratios(group, [ratio, 1 - ratio], shuffle=True, seed=seed)`."""
    trains, tests = [], []
    for _, group in data.groupby(split_col):
        shuffled = group.sample(frac=1, random_state=seed)
        cut = round(ratio * len(shuffled))  # np.split(data, [round(ratio * len(data))])
        trains.append(shuffled.iloc[:cut])
        tests.append(shuffled.iloc[cut:])
    return pd.concat(trains), pd.concat(tests)


def _upstream_global_random_rank(data, ratio, split_col, seed):
    """Transcription of recommenders' current `_do_stratification(is_random=True)` for one ratio
    (`np.random.seed(seed); np.random.rand(n)` is the same stream as `RandomState(seed).rand(n)`)."""
    data = data.copy()
    data["random"] = np.random.RandomState(seed).rand(data.shape[0])
    data = data.sort_values([split_col, "random"])
    groups = data.groupby(split_col)
    data["count"] = groups[split_col].transform("count")
    data["rank"] = groups.cumcount() + 1
    data = data.drop("random", axis=1)
    splits, prev = [], None
    for threshold in np.cumsum([ratio, 1 - ratio]):
        condition = data["rank"] <= round(threshold * data["count"])
        if prev is not None:
            condition &= data["rank"] > round(prev * data["count"])
        splits.append(data[condition].drop(["rank", "count"], axis=1))
        prev = threshold
    return splits[0], splits[1]


@pytest.fixture
def interactions():
    rng = np.random.default_rng(5)
    n = 300
    return pd.DataFrame({"person_id": [f"u{u:02d}" for u in rng.integers(0, 25, n)],
                         "item_id": [f"i{i:02d}" for i in rng.zipf(1.6, n) % 40],
                         "weight": np.arange(n, dtype=float)},
                        index=pd.RangeIndex(1000, 1000 + n))


@pytest.mark.parametrize("filter_by", ["item", "user"])
@pytest.mark.parametrize("ratio, seed", [(0.75, 42), (0.5, 1), (0.8, 123)])
@pytest.mark.parametrize("method, reference", [("per_group_sample", _upstream_per_group_sample),
                                               ("global_random_rank", _upstream_global_random_rank)])
def test_python_stratified_split__identical_to_upstream_row_for_row(interactions, filter_by, ratio, seed,
                                                                      method, reference):
    split_col = "person_id" if filter_by == "user" else "item_id"
    train, test = ev.python_stratified_split(interactions, ratio=ratio, filter_by=filter_by, seed=seed,
                                             method=method)
    expected_train, expected_test = reference(interactions, ratio, split_col, seed)
    pd.testing.assert_frame_equal(train, expected_train)
    pd.testing.assert_frame_equal(test, expected_test)
    assert list(interactions.columns) == ["person_id", "item_id", "weight"]  # input left untouched


def test_python_stratified_split__known_small_example():
    df = frame([("u", "A")] * 4 + [("u", "B")] * 2 + [("u", "C")] * 6 + [("u", "D")])
    df["n"] = range(len(df))
    train, test = ev.python_stratified_split(df, ratio=0.75, seed=42)
    # per item: 0.75 * n = 3, 1.5, 4.5, 0.75 -> round half to even 3, 2, 4, 1 in train
    assert train.groupby("item_id").size().to_dict() == {"A": 3, "B": 2, "C": 4, "D": 1}
    assert test.groupby("item_id").size().to_dict() == {"A": 1, "C": 2}
    # groups come out in key order; A's rows (frame order 0 1 2 3) shuffled by RandomState(42).permutation(4)
    assert train["item_id"].tolist() == list("AAABBCCCCD")
    permutation = np.random.RandomState(42).permutation(4).tolist()
    assert train["n"].tolist()[:3] == permutation[:3] and test["n"].tolist()[0] == permutation[3]
    again = ev.python_stratified_split(df, ratio=0.75, seed=42)
    pd.testing.assert_frame_equal(again[0], train)


def test_python_stratified_split__min_rating_drops_small_groups():
    df = frame([("u", "A")] * 4 + [("u", "B")] * 2)
    train, test = ev.python_stratified_split(df, ratio=0.5, min_rating=3)
    assert set(train["item_id"]) | set(test["item_id"]) == {"A"} and len(train) == len(test) == 2


# --------------------------------------------------------------------------------------------- bad input

@pytest.fixture
def truth():
    # any (person_id, item_id) frame: the bad-input cases drop or lack a column
    return frame([("u1", "i1"), ("u1", "i2"), ("u1", "i3"),
                  ("u2", "i2"), ("u2", "i5"),
                  ("u3", "i4"),
                  ("u4", "i1")])


@pytest.mark.parametrize("call, column", [
    (lambda t: ev.temporal_holdout(t, cutoff="2026-01-01"), "event_time"),
    (lambda t: ev.python_stratified_split(t.drop(columns="item_id")), "item_id"),
])
def test_missing_column_raises_value_error_naming_it(truth, call, column):
    with pytest.raises(ValueError, match=f"missing column '{column}'"):
        call(truth)


def test_python_stratified_split__ratio_must_be_strictly_between_0_and_1(truth):
    with pytest.raises(ValueError, match="ratio must be"):
        ev.python_stratified_split(truth, ratio=1.0)
