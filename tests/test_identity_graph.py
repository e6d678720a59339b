"""Identity stitching (issue #4) on tiny hand-made events whose answer can be worked out by hand: the graph,
its guards, stable person ids (`jobs.identity.graph`) and which person each event goes to
(`jobs.identity.attribution`)."""
import datetime as dt

import pytest
from conftest import rows
from identity_events import ev, events_df
from pyspark.sql import functions as F

from jobs.config import IdentityConfig
from jobs.identity.attribution import attribute_events
from jobs.identity.components import connected_components
from jobs.identity.graph import person_id_for, stitch

pytestmark = pytest.mark.spark

D1, D2 = "2026-03-01", "2026-03-02"


def run_stitch(spark, evs, prior=None, run_date=D1, **kw):
    settings = IdentityConfig(**{"hub_max_accounts": 20, "max_iterations": 30, "email_max_accounts": 5,
                                 "email_max_devices": 100, **kw})
    return stitch(events_df(spark, evs), prior, settings, run_date=run_date)


def id_map(result):
    return {(r["id_type"], r["id"]): r["person_id"] for r in result.identity_map.collect()}


def attributed(result, evs, spark):
    out = attribute_events(events_df(spark, evs), result.state.nodes)
    return {r["event_id"]: r["person_id"] for r in out.collect()}


def test_connected_components__labels_each_node_with_its_smallest(spark):
    edges = spark.createDataFrame([("n5", "n4"), ("n4", "n3"), ("n3", "n2"), ("n2", "n1"), ("x2", "x1"),
                                   ("x3", "x2"), ("n1", "n1")], "src string, dst string")
    comps, rounds = connected_components(edges, max_iterations=10)
    assert rows(comps) == [("n1", "n1"), ("n2", "n1"), ("n3", "n1"), ("n4", "n1"), ("n5", "n1"),
                           ("x1", "x1"), ("x2", "x1"), ("x3", "x1")]
    assert 0 < rounds <= 10
    with pytest.raises(RuntimeError, match="max_iterations"):
        connected_components(edges, max_iterations=0)


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
    out = attribute_events(events_df(spark, [ev("9", "09:00", "stranger"), ev("8", "09:00", "a2", "u1")]),
                              result.state.nodes)
    assert out.columns[-1] == "person_id" and "item_id" in out.columns
    assert rows(out, "event_id", "person_id") == [("8", person_id_for("anonymous_id", "a1")), ("9", None)]
    with pytest.raises(ValueError, match="session_id"):
        attribute_events(events_df(spark, []).drop("session_id"), result.state.nodes)

