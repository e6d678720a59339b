"""Ids with inhuman activity (quality/activity.py)."""
import datetime as dt

import pytest

from quality.activity import inhuman_ids, without_ids

pytestmark = pytest.mark.spark


def test_an_id_over_the_daily_limit_is_flagged_and_all_its_events_dropped(spark):
    day1, day2 = dt.datetime(2026, 3, 1, 10), dt.datetime(2026, 3, 2, 10)
    events = spark.createDataFrame(
        [("bot", None, day1)] * 30 + [("bot", None, day2)]           # busy on day 1, quiet on day 2
        + [("c1", "u1", day1)] * 5 + [("c2", "u1", day1)] * 6          # u1: 11 events over two devices
        + [("c3", None, day1)] * 10,                                   # at the limit: human
        "anonymous_id string, user_id string, event_time timestamp")
    flagged = inhuman_ids(events, max_events_per_id_day=10)
    got = sorted((r.id_type, r.id, r.events) for r in flagged.collect())
    assert got == [("anonymous_id", "bot", 30), ("user_id", "u1", 11)]
    kept = without_ids(events, flagged)
    assert sorted({r.anonymous_id for r in kept.collect()}) == ["c3"]  # the bot's quiet day goes too
