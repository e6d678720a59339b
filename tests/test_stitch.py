"""The stitch stage (`jobs.stages.stitch.run`) on hand-made validated days: what it writes, nightly runs vs a
backfill, late partitions, and the state it leaves for interactions (`jobs.identity.state`)."""
import datetime as dt

import pytest
from conftest import rows
from identity_events import ev, events_df

from jobs.identity.graph import person_id_for
from jobs.identity.state import load_state_nodes, read_consumed_days, read_state
from jobs.stages import stitch as st
from jobs.storage.layout import Layout

pytestmark = pytest.mark.spark

D1, D2, D3 = "2026-03-01", "2026-03-02", "2026-03-03"


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
            "persons": rows(state.persons), "merges": rows(state.merges), "links": rows(state.links),
            "link_days": rows(state.link_days)}


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


# ------------------------------------------------------------------------------- late days (issue #8, item 7)

def publish_validated(spark, cfg, day, evs, fingerprint, files=1):
    """Publishes day `day`'s validated events the way the validate stage does: a staged folder with the data
    and the marker `_recs_validated.json` (its `fingerprint`), moved into place whole."""
    from jobs.storage.layout import VALIDATED_MARKER as MARKER
    from jobs.storage import io

    staged = f"{cfg.data_root}/.staged-{day}-{fingerprint}"
    events_df(spark, evs).repartition(files).write.parquet(staged)
    io.write_json(f"{staged}/{MARKER}", {"ds": day, "fingerprint": fingerprint, "dataset": "events"})
    io.promote(staged, Layout(cfg.data_root).validated("events", day))


LATE = {  # d1 first holds only anonymous browsing of cookie c9 (plus u1's logins); d1 is then re-delivered
    D1: [ev("c9-1", "10:00", "c9", day=D1), ev("c9-2", "10:05", "c9", day=D1),
         ev("u1-1", "09:00", "c1", "u1", email="e1", day=D1), ev("u1-2", "09:30", "c1", "u1", day=D1)],
    D2: [ev("u9-1", "08:00", "c8", "u9", email="e9", day=D2), ev("u1-3", "12:00", "c1", "u1", day=D2)],
    D3: [ev("c5-1", "10:00", "c5", day=D3)],
    "d1 extra file": [ev("c9-login", "14:00", "c9", "u9", event_type="login", day=D1)],
}


def test_run__day_validated_again_is_read_again_and_counts_nothing_twice(spark, cfg, tmp_path):
    publish_validated(spark, cfg, D1, LATE[D1], "d1-first")
    publish_validated(spark, cfg, D2, LATE[D2], "d2-first")
    night1 = st.run(spark, cfg, D2)                                    # stitches d1 and d2
    assert night1["days_read"] == 2 and night1["days_reread"] == []
    before = snapshot(spark, cfg, D2)
    ids1 = {(t, i): p for t, i, p in before["identity"]}
    assert ids1[("anonymous_id", "c9")] == person_id_for("anonymous_id", "c9") != ids1[("user_id", "u9")]

    # Late partition: a second raw file for d1 arrives, validate re-validates d1 (new fingerprint).
    publish_validated(spark, cfg, D1, LATE[D1] + LATE["d1 extra file"], "d1-second", files=2)
    publish_validated(spark, cfg, D3, LATE[D3], "d3-first")
    night2 = st.run(spark, cfg, D3)
    assert night2["days_read"] == 2 and night2["days_reread"] == [D1]
    after = snapshot(spark, cfg, D3)
    ids2 = {(t, i): p for t, i, p in after["identity"]}
    c9_person = person_id_for("anonymous_id", "c9")                    # c9 (seen first) anchors u9's person now
    assert ids2[("anonymous_id", "c9")] == ids2[("user_id", "u9")] == ids2[("anonymous_id", "c8")] == c9_person
    assert after["merges"] == [(ids1[("user_id", "u9")], c9_person, dt.date(2026, 3, 3))]

    # Every link of night 1 is unchanged (u1's 3 events across d1 and d2 are not counted twice); the only new
    # links are the late login's, once.
    links1, links2 = set(before["links"]), set(after["links"])
    assert links1 <= links2
    assert ("a:c1", "u:u1", dt.date(2026, 3, 1), dt.datetime(2026, 3, 1, 9), dt.datetime(2026, 3, 2, 12), 3) in links2
    assert {(s, d, n) for s, d, _, _, _, n in links2 - links1} == {("a:c9", "u:u9", 1)}
    assert len(after["link_days"]) == len(set(after["link_days"]))     # one row per link and day
    consumed = read_consumed_days(Layout(cfg.data_root).identity_state(D3))
    assert consumed == {D1: "d1-second", D2: "d2-first", D3: "d3-first"}

    # Nothing changed since: the next night reads no day; the same data stitched from scratch agrees.
    assert st.run(spark, cfg, "2026-03-04")["days_read"] == 0
    assert snapshot(spark, cfg, "2026-03-04")["links"] == after["links"]
    other = cfg.replace(data_root=str(tmp_path / "rebuild"))
    for day, fp in ((D1, "d1-second"), (D2, "d2-first"), (D3, "d3-first")):
        publish_validated(spark, other, day, LATE[day] + (LATE["d1 extra file"] if day == D1 else []), fp)
    st.run(spark, other, D3)
    cold = snapshot(spark, other, D3)
    assert (cold["identity"], cold["links"], cold["link_days"]) == (after["identity"], after["links"],
                                                                    after["link_days"])


def test_run__older_state_format_is_read_and_its_days_stay_consumed(spark, cfg):
    from jobs.storage import io

    publish_validated(spark, cfg, D1, LATE[D1], "d1-first")
    st.run(spark, cfg, D1)
    state = Layout(cfg.data_root).identity_state(D1)
    io.write_json(f"{state}/days.json", [D1])                         # the older format: a plain list of days
    fs, path = io.fs_for(f"{state}/link_days")
    fs.rm(path, recursive=True)                                        # ... and no per-day link contributions
    before = snapshot(spark, cfg, D1)

    publish_validated(spark, cfg, D1, LATE[D1] + LATE["d1 extra file"], "d1-second", files=2)
    publish_validated(spark, cfg, D2, LATE[D2], "d2-first")
    report = st.run(spark, cfg, D2)
    assert report["days_read"] == 1 and report["days_reread"] == []   # fingerprint unknown: consumed, as before
    assert read_consumed_days(Layout(cfg.data_root).identity_state(D2)) == {D1: None, D2: "d2-first"}
    links = {(s, d): n for s, d, _, _, _, n in snapshot(spark, cfg, D2)["links"]}
    assert links[("a:c1", "u:u1")] == 3 and ("a:c9", "u:u9") not in links
    assert {(s, d): n for s, d, _, _, _, n in before["links"]}[("a:c1", "u:u1")] == 2
