"""Identity stitching (issue #4) on tiny hand-made events whose answer can be worked out by hand."""
import datetime as dt

import pandas as pd
import pytest
from conftest import rows
from pyspark.sql import functions as F

from jobs.stages import stitch as st
from jobs.stages.stitch import person_id_for

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


def run_stitch(spark, evs, prior=None, run_date=D1, **kw):
    kw = {"hub_max_accounts": 20, "max_iterations": 30, **kw}
    return st.stitch(events_df(spark, evs), prior, run_date=run_date, **kw)


def id_map(result):
    return {(r["id_type"], r["id"]): r["person_id"] for r in result.identity_map.collect()}


def attributed(result, evs, spark):
    out = st.attribute_events(events_df(spark, evs), result.state.nodes)
    return {r["event_id"]: r["person_id"] for r in out.collect()}


def test_connected_components__labels_each_node_with_its_smallest(spark):
    edges = spark.createDataFrame([("n5", "n4"), ("n4", "n3"), ("n3", "n2"), ("n2", "n1"), ("x2", "x1"),
                                   ("x3", "x2"), ("n1", "n1")], "src string, dst string")
    comps, rounds = st.connected_components(edges, max_iterations=10)
    assert rows(comps) == [("n1", "n1"), ("n2", "n1"), ("n3", "n1"), ("n4", "n1"), ("n5", "n1"),
                           ("x1", "x1"), ("x2", "x1"), ("x3", "x1")]
    assert 0 < rounds <= 10
    with pytest.raises(RuntimeError, match="max_iterations"):
        st.connected_components(edges, max_iterations=0)


def test_person_on_three_devices__one_person(spark):
    evs = [ev("1", "08:00", "laptop"), ev("2", "08:05", "laptop", "u1", email="e1"),
           ev("3", "12:00", "phone"), ev("4", "12:01", "phone", "u1", email="e1"),
           ev("5", "20:00", "app", "u1"), ev("6", "20:30", "app")]
    result = run_stitch(spark, evs)
    expected = person_id_for("anonymous_id", "laptop")  # the earliest-seen id anchors the person
    assert id_map(result) == {("anonymous_id", "laptop"): expected, ("anonymous_id", "phone"): expected,
                              ("anonymous_id", "app"): expected, ("user_id", "u1"): expected}
    assert set(attributed(result, evs, spark).values()) == {expected}
    assert result.stats["persons"] == 1 and result.stats["merges"] == 0


def test_shared_tablet__two_persons_and_anonymous_events_by_session_then_next_login(spark):
    evs = [ev("m0", "07:00", "mom_phone", "mom", email="em", session="p1"),
           ev("d0", "07:30", "dad_phone", "dad", email="ed", session="p2"),
           ev("t1", "09:50", "tablet", session="s1"),            # before mom's login, same session -> mom
           ev("t2", "10:00", "tablet", "mom", email="em", session="s1"),
           ev("t3", "10:30", "tablet", session="s1"),            # after mom's login, same session -> mom
           ev("t4", "12:00", "tablet", session="s3"),            # no login in s3: next login on tablet (dad 15:00)
           ev("t5", "15:00", "tablet", "dad", email="ed", session="s2"),
           ev("t6", "15:10", "tablet", "dad", session="s2"),
           ev("t7", "18:00", "tablet", session="s4"),            # nobody logs in after: no person
           ev("t8", "19:00", "tablet")]                          # no session, no later login: no person
    result = run_stitch(spark, evs)
    mom, dad = person_id_for("anonymous_id", "mom_phone"), person_id_for("anonymous_id", "dad_phone")
    assert mom != dad
    assert id_map(result) == {("anonymous_id", "mom_phone"): mom, ("user_id", "mom"): mom,
                              ("anonymous_id", "dad_phone"): dad, ("user_id", "dad"): dad,
                              ("anonymous_id", "tablet"): dad}  # a shared device maps to its latest account
    assert attributed(result, evs, spark) == {"m0": mom, "d0": dad, "t1": mom, "t2": mom, "t3": mom, "t4": dad,
                                              "t5": dad, "t6": dad, "t7": None, "t8": None}
    roles = {r["id"]: r["role"] for r in result.state.nodes.collect()}
    assert roles["tablet"] == "shared" and roles["mom_phone"] == "linked"
    assert result.stats["shared_devices"] == 1 and result.stats["persons"] == 2


def test_kiosk_used_by_hundreds_of_accounts__flagged_and_merges_nobody(spark):
    evs = [ev(f"k{i}", f"{8 + i // 60:02d}:{i % 60:02d}", "kiosk", f"user{i:03d}", session=f"s{i}")
           for i in range(200)]
    evs += [ev("own", "23:00", "home_pc", "user007", session="h"), ev("anon", "23:30", "kiosk", session="x"),
            ev("anon_in_session", "08:00", "kiosk", session="s0")]
    result = run_stitch(spark, evs)
    ids = id_map(result)
    assert ("anonymous_id", "kiosk") not in ids           # left out: the storefront serves it a segment list
    persons = {p for (t, _), p in ids.items() if t == "user_id"}
    assert len(persons) == 200                            # no two accounts merged through the kiosk
    assert ids[("anonymous_id", "home_pc")] == ids[("user_id", "user007")]
    assert result.stats["hubs"] == 1
    hub = result.state.nodes.where(F.col("id") == "kiosk").first()
    assert (hub["role"], hub["accounts"]) == ("hub", 200)
    by_event = attributed(result, evs, spark)
    assert by_event["anon"] is None and by_event["anon_in_session"] is None   # anonymous on a hub: nobody
    assert by_event["k5"] == ids[("user_id", "user005")]                      # logged in on a hub: the account


def test_login_a_day_after_anonymous_browsing__merged_next_night_older_id_survives(spark):
    night1 = [ev("1", "09:00", "laptop"), ev("2", "10:00", "phone", "u1", email="e1")]
    r1 = run_stitch(spark, night1, run_date=D1)
    laptop_p, phone_p = person_id_for("anonymous_id", "laptop"), person_id_for("anonymous_id", "phone")
    assert id_map(r1) == {("anonymous_id", "laptop"): laptop_p, ("anonymous_id", "phone"): phone_p,
                          ("user_id", "u1"): phone_p}
    night2 = [ev("3", "11:00", "laptop", "u1", email="e1", day=D2)]
    r2 = run_stitch(spark, night2, prior=r1.state, run_date=D2)
    assert set(id_map(r2).values()) == {laptop_p}          # laptop was seen first: its person survives
    assert rows(r2.merges) == [(phone_p, laptop_p, dt.date(2026, 3, 2))]
    merged = r2.state.persons.where(F.col("person_id") == phone_p).first()
    assert (merged["status"], merged["merged_into"]) == ("merged", laptop_p)
    assert r2.stats["merges"] == 1 and r2.stats["persons"] == 1


def test_two_accounts_with_one_email__one_person_but_a_mailbox_of_many_merges_nobody(spark):
    evs = [ev("1", "09:00", "a1", "u1", email="family"), ev("2", "10:00", "a2", "u2", email="family")]
    evs += [ev(f"t{i}", f"11:{i:02d}", f"qa{i}", f"test{i}", email="qa@shop") for i in range(6)]
    result = run_stitch(spark, evs, email_max_accounts=5)
    ids = id_map(result)
    assert ids[("user_id", "u1")] == ids[("user_id", "u2")] == person_id_for("anonymous_id", "a1")
    assert len({ids[("user_id", f"test{i}")] for i in range(6)}) == 6
    assert result.stats["email_hubs"] == 1


def test_person_ids_unchanged_from_night_to_night_without_merge(spark):
    night1 = [ev("1", "09:00", "a1", "u1", email="e1"), ev("2", "09:30", "a2"), ev("3", "10:00", "a3", "u3")]
    r1 = run_stitch(spark, night1, run_date=D1)
    night2 = [ev("4", "09:00", "a1", day=D2), ev("5", "09:10", "a4", "u1", day=D2), ev("6", "12:00", "a5", day=D2)]
    r2 = run_stitch(spark, night2, prior=r1.state, run_date=D2)
    before, after = id_map(r1), id_map(r2)
    assert {k: after[k] for k in before} == before
    assert after[("anonymous_id", "a4")] == before[("user_id", "u1")]        # a new device joins, same id
    assert after[("anonymous_id", "a5")] == person_id_for("anonymous_id", "a5")
    assert r2.stats["merges"] == 0 and r2.stats["new_persons"] == 1


def test_attribute_events__unknown_ids_get_no_person_and_columns_are_kept(spark):
    result = run_stitch(spark, [ev("1", "09:00", "a1", "u1")])
    out = st.attribute_events(events_df(spark, [ev("9", "09:00", "stranger"), ev("8", "09:00", "a2", "u1")]),
                              result.state.nodes)
    assert out.columns[-1] == "person_id" and "item_id" in out.columns
    assert rows(out, "event_id", "person_id") == [("8", person_id_for("anonymous_id", "a1")), ("9", None)]
    with pytest.raises(ValueError, match="session_id"):
        st.attribute_events(events_df(spark, []).drop("session_id"), result.state.nodes)


# ---------------------------------------------------------------------------------------------- run()

NIGHTS = {
    D1: [ev("1", "09:00", "laptop", day=D1), ev("2", "10:00", "phone", "u1", email="e1", session="s", day=D1),
         ev("3", "11:00", "tablet", "u1", session="t", day=D1), ev("4", "12:00", "x", "u9", day=D1)],
    D2: [ev("5", "08:00", "tablet", session="w", day=D2), ev("6", "09:00", "tablet", "u2", session="w", day=D2),
         ev("7", "11:00", "laptop", "u1", email="e1", day=D2), ev("8", "13:00", "y", "u8", email="e1", day=D2)],
    D3: [ev("9", "10:00", "z", day=D3), ev("10", "10:05", "z", "u2", email="e2", day=D3),
         ev("11", "12:00", "tablet", day=D3)],
}


def write_validated(spark, cfg, days):
    from jobs.storage.layout import Layout

    for day in days:
        events_df(spark, NIGHTS[day]).coalesce(1).write.mode("overwrite").parquet(
            Layout(cfg.data_root).validated("events", day))


def snapshot(spark, cfg, day):
    from jobs.storage.layout import Layout

    state = st.read_state(spark, Layout(cfg.data_root).identity_state(day))
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


def test_load_state__missing_night_is_a_clear_error(spark, cfg):
    with pytest.raises(FileNotFoundError, match="run the stitch stage"):
        st.load_state(spark, cfg, D1)
    with pytest.raises(FileNotFoundError, match="no validated events"):
        st.run(spark, cfg, D1)


# ----------------------------------------------------------------------------------------- evaluation

def test_evaluate_stitching__pair_counts_from_contingency_table():
    truth = pd.DataFrame({"id_type": ["user_id", "anonymous_id", "anonymous_id", "user_id", "anonymous_id",
                                      "anonymous_id"],
                          "id": ["a", "b", "c", "d", "e", "shared"], "person": ["X", "X", "X", "Y", "Y", "X"]})
    predicted = pd.DataFrame({"id_type": ["user_id", "anonymous_id", "anonymous_id", "user_id", "anonymous_id"],
                              "id": ["a", "b", "c", "d", "shared"], "person_id": ["p1", "p1", "p2", "p1", "p9"]})
    m = st.evaluate_stitching(predicted, truth, exclude_anonymous_ids=["shared"])
    # cells (p1,X)=2 (p2,X)=1 (p1,Y)=1 (missing e,Y)=1 -> together 1; predicted pairs: p1 has 3 -> 3;
    # true pairs: X has 3 -> 3, Y has 2 -> 1.
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 4)
    assert (m["persons_found"], m["true_persons"], m["ids_missing"], m["ids_evaluated"]) == (3, 2, 1, 5)
    perfect = st.evaluate_stitching(truth.rename(columns={"person": "person_id"}), truth)
    assert perfect["precision"] == perfect["recall"] == perfect["persons_ratio"] == 1.0
