"""The stitch stage (`jobs.stages.stitch.run`) on hand-made validated days: what it writes, nightly runs vs a
backfill, late partitions, and the state it leaves for interactions (`jobs.identity.state`)."""
import datetime as dt

import pytest
from conftest import rows

from jobs.identity.state import load_state_nodes, read_state
from jobs.stages import stitch as st
from jobs.storage.layout import Layout

pytestmark = pytest.mark.spark

D1, D2, D3 = "2026-03-01", "2026-03-02", "2026-03-03"


def ev(event_id, when, anon, user=None, *, session=None, email=None, event_type=None, day=None):
    """One event row as a dict: `when` is 'HH:MM' on `day` (D1 by default)."""
    day = day or D1
    t = dt.datetime.fromisoformat(f"{day}T{when}:00")
    return {"event_id": event_id, "event_time": t, "anonymous_id": anon, "user_id": user, "session_id": session,
            "email_hash": email, "event_type": event_type or ("login" if email else "product_view"),
            "item_id": None if email else "i1"}


def events_df(spark, evs):
    from schemas import load

    schema = load("events").spark()
    return spark.createDataFrame([tuple(e.get(f.name) for f in schema.fields) for e in evs], schema)


NIGHTS = {
    D1: [ev("1", "09:00", "laptop", day=D1), ev("2", "10:00", "phone", "u1", email="e1", session="s", day=D1),
         ev("3", "11:00", "tablet", "u1", session="t", day=D1), ev("4", "12:00", "x", "u9", day=D1)],
    D2: [ev("5", "08:00", "tablet", session="w", day=D2), ev("6", "09:00", "tablet", "u2", session="w", day=D2),
         ev("7", "11:00", "laptop", "u1", email="e1", day=D2), ev("8", "13:00", "y", "u8", email="e1", day=D2)],
    D3: [ev("9", "10:00", "z", day=D3), ev("10", "10:05", "z", "u2", email="e2", day=D3),
         ev("11", "12:00", "tablet", day=D3)],
}


def write_validated(spark, cfg, days):
    for day in days:
        events_df(spark, NIGHTS[day]).coalesce(1).write.mode("overwrite").parquet(
            Layout(cfg.data_root).validated("events", day))


def snapshot(spark, cfg, day):
    state = read_state(spark, Layout(cfg.data_root).identity_state(day))
    identity = spark.read.parquet(Layout(cfg.data_root).identity(day))
    return {"identity": rows(identity, "id_type", "id", "person_id"),
            "nodes": rows(state.nodes, "node", "role", "person_id", "map_person_id"),
            "persons": rows(state.persons), "merges": rows(state.merges), "links": rows(state.links)}


def test_run__writes_contract_identity_and_report(spark, cfg):
    from schemas import load

    write_validated(spark, cfg, [D1])
    report = st.run(spark, cfg, D1)
    identity = spark.read.parquet(report["path"])
    assert [(f.name, f.dataType) for f in identity.schema] == [(f.name, f.dataType) for f in load("identity").spark()]
    assert report["persons"] == 3 and report["days_read"] == 1 and report["prior_state"] is None
    assert report["events"] == 4 and report["share_attributed"] == 1.0
    assert report["path"].endswith(f"identity/dt={D1}")


def test_backfill_equals_nightly(spark, cfg, tmp_path):
    write_validated(spark, cfg, [D1, D2, D3])
    for day in (D1, D2, D3):                      # nightly: each night reads the state of the night before
        st.run(spark, cfg, day)
    nightly = {day: snapshot(spark, cfg, day) for day in (D1, D2, D3)}
    assert nightly[D2]["merges"]                  # the scenario does merge (laptop + phone via u1)

    other = cfg.replace(data_root=str(tmp_path / "backfill"))
    write_validated(spark, other, [D1, D2, D3])
    st.run(spark, other, D3)                      # a first run on D3 alone reads every validated day <= D3
    cold = snapshot(spark, other, D3)
    assert cold["identity"] == nightly[D3]["identity"] and cold["nodes"] == nightly[D3]["nodes"]
    assert cold["links"] == nightly[D3]["links"]

    for day in (D1, D2, D3):                      # a backfill over the range, with later states present
        report = st.run(spark, other, day)
        assert report["days_read"] == 1
        assert snapshot(spark, other, day) == nightly[day]


def test_run__late_partition_is_read_by_the_next_night(spark, cfg):
    write_validated(spark, cfg, [D1, D3])        # D2 missing at first
    st.run(spark, cfg, D1)
    write_validated(spark, cfg, [D2])            # validated late: D3's run must still read it
    report = st.run(spark, cfg, D3)
    assert report["days_read"] == 2 and report["prior_state"] == D1
    ids = {(r["id_type"], r["id"]): r["person_id"] for r in spark.read.parquet(report["path"]).collect()}
    assert ids[("user_id", "u8")] == ids[("anonymous_id", "laptop")]   # u8 joined through e1 on D2


def test_load_state_nodes__missing_night_is_a_clear_error(spark, cfg):
    with pytest.raises(FileNotFoundError, match="run the stitch stage"):
        load_state_nodes(spark, cfg.data_root, D1)
    with pytest.raises(FileNotFoundError, match="no validated events"):
        st.run(spark, cfg, D1)

