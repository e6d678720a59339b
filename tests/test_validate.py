"""The validate stage (issue #3): row checks, batch gates, idempotent re-runs, reports.

Tiny hand-made raw days (a few rows each) written as Parquet with the contract's Arrow schema; the
expected reasons and figures are worked out by hand in each test.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from jobs.storage.layout import Layout
from quality import QualityGateError

pytestmark = pytest.mark.spark

D = "2026-03-05"
DEVICES = ("desktop", "mobile_web", "ios", "android")


def _days(n: int, end: str = D) -> list[str]:
    e = dt.date.fromisoformat(end)
    return [(e - dt.timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]


def _ts(ds: str, hour: int = 10, minute: int = 0) -> dt.datetime:
    d = dt.date.fromisoformat(ds)
    return dt.datetime(d.year, d.month, d.day, hour, minute, tzinfo=dt.timezone.utc)


def _event(ds: str, i: int, **changes) -> dict:
    row = dict(event_id=f"e-{ds}-{i}", event_time=_ts(ds, 10, i % 60), event_type="product_view",
               anonymous_id=f"a{i % 5}", device_type=DEVICES[i % 4], country="DE", item_id=f"i{i % 3}")
    row.update(changes)
    return row


def _item(i: int, **changes) -> dict:
    row = dict(item_id=f"i{i}", title=f"Item {i}", category_path="Women > Shoes > Sneakers", price=10.0 + i,
               is_available=True, brand="acme")
    row.update(changes)
    return row


def _write(cfg, dataset: str, ds: str, rows: list[dict], *, name: str = "part-0.parquet", schema=None) -> str:
    folder = Layout(cfg.data_root).raw(dataset, ds)
    os.makedirs(folder, exist_ok=True)
    schema = schema or schemas.load(dataset).arrow()
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)
    pq.write_table(table, f"{folder}/{name}")
    return f"{folder}/{name}"


def _shop(cfg, days: list[str], per_day: int = 20) -> None:
    """Healthy days: a 4-item catalog and `per_day` product views spread evenly over the device types."""
    for ds in days:
        _write(cfg, "catalog", ds, [_item(i) for i in range(4)])
        _write(cfg, "events", ds, [_event(ds, i) for i in range(per_day)])


def _events_frame(spark, rows: list[dict]):
    from pyspark.sql import types as T

    schema = T.StructType(list(schemas.load("events").spark().fields)
                          + [T.StructField("dt", T.StringType()), T.StructField("_source_file", T.StringType()),
                             T.StructField("_source_pos", T.LongType())])
    full = [{**{f.name: r.get(f.name) for f in schema.fields}, "_source_file": "f", "_source_pos": pos}
            for pos, r in enumerate(rows)]
    return spark.createDataFrame(full, schema=schema)


def _contract_rows(df, dataset: str) -> list[tuple]:
    names = schemas.load(dataset).names
    return sorted(tuple(r[n] for n in names) for r in df.select(*names).collect())


def _arrow_rows(rows: list[dict], dataset: str) -> list[tuple]:
    """What Spark reads back for rows written with the contract schema (timestamps as naive UTC)."""
    names = schemas.load(dataset).names
    out = []
    for r in rows:
        vals = []
        for n in names:
            v = r.get(n)
            vals.append(v.astimezone(dt.timezone.utc).replace(tzinfo=None) if isinstance(v, dt.datetime) else v)
        out.append(tuple(vals))
    return sorted(out)


# ---------------------------------------------------------------- row checks (pure functions)


def test_check_event_rows__each_rule_gives_its_reasons(spark):
    from quality.rules import check_event_rows

    prev = "2026-03-04"
    rows = {
        "good": _event(D, 1),
        "null_type": _event(D, 2, event_type=None),
        "unknown_type": _event(D, 3, event_type="page_view"),
        "purchase_no_price": _event(D, 4, event_type="purchase", quantity=1, order_id="o1"),
        "bad_price": _event(D, 5, event_type="purchase", quantity=1, order_id="o2", price=-5.0),
        "bad_quantity": _event(D, 6, event_type="add_to_cart", quantity=0),
        "late_but_tolerated": _event(D, 7, event_time=_ts(prev, 23, 0)),  # 1 h before the day, tolerance 2 h
        "outside_day": _event(D, 8, event_time=dt.datetime(2026, 3, 6, 5, 0, tzinfo=dt.timezone.utc)),
        "unknown_item": _event(D, 9, item_id="zz"),
        "item_of_another_day": _event(D, 10, item_id="i9"),  # only in the previous day's catalog
        "search_no_query": _event(D, 11, event_type="search", item_id=None),
        "blank_anonymous_id": _event(D, 12, anonymous_id="  "),
        "many": _event(D, 13, event_type="purchase", quantity=-1, device_type="tv"),
        "published_before": _event(D, 14, event_id="old-1"),
        "login_without_item": _event(D, 15, event_type="login", item_id=None),
    }
    first = _event(D, 16, event_id="dup-1")
    copy = dict(first)
    frame = _events_frame(spark, [{**r, "dt": D} for r in rows.values()] + [{**first, "dt": D}, {**copy, "dt": D}])
    catalog_items = spark.createDataFrame([(D, "i0"), (D, "i1"), (D, "i2"), (prev, "i9")], "dt string, item_id string")
    prior = spark.createDataFrame([("old-1",)], "event_id string")

    checked = check_event_rows(frame, catalog_items=catalog_items, late_arrival_hours=2.0, prior_event_ids=prior)
    got = [(r["event_id"], r["_source_pos"], r["reasons"]) for r in checked.collect()]
    by_id = {eid: reasons for eid, pos, reasons in got if eid != "dup-1"}
    reasons = {name: by_id[row["event_id"]] for name, row in rows.items()}

    assert reasons == {
        "good": [],
        "null_type": ["null_required:event_type"],
        "unknown_type": ["unknown_event_type"],
        "purchase_no_price": ["null_required:price"],
        "bad_price": ["bad_price"],
        "bad_quantity": ["bad_quantity"],
        "late_but_tolerated": [],
        "outside_day": ["outside_day"],
        "unknown_item": ["unknown_item"],
        "item_of_another_day": ["unknown_item"],
        "search_no_query": ["null_required:query"],
        "blank_anonymous_id": ["null_required:anonymous_id"],
        "many": ["bad_quantity", "null_required:order_id", "null_required:price", "unknown_device_type"],
        "published_before": ["duplicate_event_id"],
        "login_without_item": [],
    }
    # the first delivery of a repeated id stays good, the later copy is the duplicate
    dups = sorted((pos, r) for eid, pos, r in got if eid == "dup-1")
    assert [r for _, r in dups] == [[], ["duplicate_event_id"]]


def test_check_catalog_and_profile_rows(spark):
    from quality.rules import check_catalog_rows, check_profile_rows

    catalog = spark.createDataFrame(
        [{**_item(0), "dt": D}, {**_item(1, title=None), "dt": D}, {**_item(2, price=0.0), "dt": D},
         {**_item(3, margin_rate=1.5), "dt": D}, {**_item(0, title="again"), "dt": D},
         {**_item(0), "dt": "2026-03-04"}],  # the same item on another day is no duplicate
        schema=schemas.load("catalog").spark().add("dt", "string"))
    got = sorted((r["dt"], r["item_id"], r["title"], r["reasons"]) for r in check_catalog_rows(catalog).collect())
    assert got == [("2026-03-04", "i0", "Item 0", []),
                   (D, "i0", "Item 0", []), (D, "i0", "again", ["duplicate_item_id"]),
                   (D, "i1", None, ["null_required:title"]), (D, "i2", "Item 2", ["bad_price"]),
                   (D, "i3", "Item 3", ["bad_margin_rate"])]

    profiles = spark.createDataFrame([("u1", D), (None, D), ("u1", D)], "user_id string, dt string")
    got = sorted((r["user_id"] or "", r["reasons"]) for r in check_profile_rows(profiles).collect())
    assert got == [("", ["null_required:user_id"]), ("u1", []), ("u1", ["duplicate_user_id"])]


def test_read_normalized__bad_types_become_reasons_not_crashes(spark, cfg):
    """A string price column and float quantities in Parquet, and JSON Lines with text, epoch and broken lines."""
    from quality import raw
    from quality.rules import check_event_rows

    layout = Layout(cfg.data_root)
    arrow = schemas.load("events").arrow()
    drifted = pa.schema([f if f.name not in ("price", "quantity") else
                         pa.field(f.name, pa.string() if f.name == "price" else pa.float64()) for f in arrow])
    base = dict(event_type="purchase", order_id="o")
    _write(cfg, "events", D, [_event(D, 1, price="12.5", quantity=2.0, **base),
                              _event(D, 2, price="abc", quantity=2.5, **base)], schema=drifted)
    lines = [json.dumps({"event_id": "j1", "event_time": "2026-03-05T08:00:00Z", "event_type": "add_to_cart",
                         "anonymous_id": "a", "item_id": "i0", "quantity": 3}),
             json.dumps({"event_id": "j2", "event_time": 1772697600000, "event_type": "product_view",  # epoch ms
                         "anonymous_id": "a", "item_id": "i0", "quantity": "lots"}),
             "{not json"]
    with gzip.open(f"{layout.raw('events', D)}/more.jsonl.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")

    inspected = raw.inspect_files(raw.list_raw_files(layout.raw("events", D), "events", D))
    status = {(os.path.basename(x["file"]), x["column"]): x["status"] for i in inspected for x in i.findings}
    assert status[("part-0.parquet", "price")] == "text"  # parsed value by value, as in JSON Lines
    assert status[("part-0.parquet", "quantity")] == "ok"  # whole floats are fine for an int column

    frame = raw.read_normalized(spark, inspected, "events")
    catalog_items = spark.createDataFrame([(D, "i0"), (D, "i1"), (D, "i2")], "dt string, item_id string")
    got = {r["event_id"]: r for r in check_event_rows(frame, catalog_items=catalog_items,
                                                      late_arrival_hours=2.0).collect()}
    assert (got["e-2026-03-05-1"]["price"], got["e-2026-03-05-1"]["quantity"], got["e-2026-03-05-1"]["reasons"]) == (
        12.5, 2, [])
    assert got["e-2026-03-05-2"]["reasons"] == ["bad_type:price", "bad_type:quantity"]
    # the map holds every typed column (nulls where a value parsed or was absent); the quarantine keeps non-nulls
    assert {k: v for k, v in got["e-2026-03-05-2"]["_raw"].items() if v is not None} == {"price": "abc",
                                                                                          "quantity": "2.5"}
    assert got["j1"]["event_time"] == dt.datetime(2026, 3, 5, 8, 0) and got["j1"]["reasons"] == []
    assert got["j2"]["event_time"] == dt.datetime(2026, 3, 5, 8, 0)
    assert got["j2"]["reasons"] == ["bad_type:quantity"]
    broken = [r for r in got.values() if r["event_id"] is None]
    assert len(broken) == 1 and "malformed_record" in broken[0]["reasons"]


# ---------------------------------------------------------------- the stage


def test_run__good_rows_untouched_quarantine_holds_reasons_and_rerun_is_idempotent(spark, cfg):
    from jobs.stages import validate

    cfg = cfg.replace(window_days=5)
    days = _days(5)
    _shop(cfg, days)
    bad_day = days[2]
    good = [_event(bad_day, i) for i in range(20)]
    bad = [_event(bad_day, 100, event_type="purchase", quantity=1, order_id="o1", price=-1.0),
           _event(bad_day, 101, item_id="zz", event_time=_ts(days[0], 10)),
           _event(bad_day, 102, event_type=None),
           dict(good[0])]  # a second delivery of the first event: counts once, dropped (not a bad row)
    _write(cfg, "events", bad_day, good + bad)

    summary = validate.run(spark, cfg, D)
    layout = Layout(cfg.data_root)

    assert summary["passed"] and summary["pending_days"] == days
    assert summary["quarantine"]["events"] == {"bad_price": 1, "null_required:event_type": 1, "outside_day": 1,
                                               "unknown_item": 1}
    assert summary["days"][bad_day]["events"]["duplicates_dropped"] == 1
    # good rows pass through untouched, with exactly the contract columns
    out = spark.read.parquet(layout.validated("events", bad_day))
    assert out.columns == schemas.load("events").names
    assert _contract_rows(out, "events") == _arrow_rows(good, "events")
    q = {r["event_id"]: r for r in spark.read.parquet(layout.quarantine("events", bad_day)).collect()}
    assert sorted(q) == ["e-2026-03-03-100", "e-2026-03-03-101", "e-2026-03-03-102"]
    assert q["e-2026-03-03-101"]["reasons"] == ["outside_day", "unknown_item"]
    assert json.loads(q["e-2026-03-03-100"]["row_json"])["price"] == -1.0
    # an older day's high quarantine share (3 of 23 > 10%; the dropped duplicate is not counted) is a warning
    assert [(w["ds"], w["check"]) for w in summary["warnings"]] == [(bad_day, "quarantine_share")]
    # reports
    report = json.load(open(summary["reports"]["json"]))
    assert report["passed"] is True and report["days"][bad_day]["events"]["quarantined"] == 3
    assert "data_docs/index.html" in open(summary["reports"]["html"]).read()
    assert os.path.exists(os.path.join(layout.reports(D), "data_docs", "index.html"))

    # a second run finds every day validated and leaves the outputs alone
    marker = os.path.join(layout.validated("events", bad_day), "_recs_validated.json")
    before = os.stat(marker).st_mtime_ns
    again = validate.run(spark, cfg, D)
    assert again["pending_days"] == [] and again["skipped_days"] == 5 and again["passed"]
    assert os.stat(marker).st_mtime_ns == before
    # a late re-delivery of one day makes only that day pending; an id already published by another
    # day is a duplicate delivery: dropped and counted, not quarantined
    resent = dict(_event(days[0], 5), event_time=_ts(days[1], 11))
    _write(cfg, "events", days[1], [_event(days[1], i) for i in range(21)] + [resent])
    third = validate.run(spark, cfg, D)
    assert third["pending_days"] == [days[1]]
    assert spark.read.parquet(layout.validated("events", days[1])).count() == 21
    assert third["days"][days[1]]["events"]["duplicates_dropped"] == 1
    assert not os.path.exists(layout.quarantine("events", days[1]))


def test_run__volume_device_and_catalog_gates_stop_the_run_day(spark, cfg):
    """A tenth of the usual volume, no ios events, half the catalog without a category."""
    from jobs.stages import validate

    cfg = cfg.replace(window_days=5)
    days = _days(5)
    _shop(cfg, days[:-1], per_day=40)  # 10 events per device type per day
    _write(cfg, "catalog", D, [_item(0), _item(1), _item(2, category_path=None), _item(3, category_path=None)])
    _write(cfg, "events", D, [_event(D, i, device_type=("desktop", "mobile_web", "android", "desktop")[i])
                              for i in range(4)])

    with pytest.raises(QualityGateError) as err:
        validate.run(spark, cfg, D)
    failures = {(f["check"], f.get("subject")): f for f in err.value.failures}
    vol = failures[("volume_vs_median_7d", None)]
    assert (vol["dataset"], vol["ds"], vol["observed"], vol["threshold"]) == ("events", D, pytest.approx(0.1), 0.3)
    assert failures[("device_volume_vs_median_7d", "ios")]["observed"] == 0.0
    cov = failures[("catalog_category_coverage", None)]
    assert (cov["dataset"], cov["observed"], cov["threshold"]) == ("catalog", 0.5, 0.9)
    assert "events dt=2026-03-05: volume_vs_median_7d FAILED: observed 0.1, threshold >= 0.3" in str(err.value)
    layout = Layout(cfg.data_root)
    assert not os.path.exists(layout.validated("events", D))  # nothing a later stage could use
    assert os.path.exists(layout.validated("events", days[-2]))  # older days are published
    assert json.load(open(os.path.join(layout.reports(D), "validation.json")))["passed"] is False

    # the same day passes when the volume and coverage gates only warn
    relaxed = cfg.replace(quality=dataclasses.replace(cfg.quality, on_volume_anomaly="warn",
                                                      on_catalog_coverage="warn"))
    summary = validate.run(spark, relaxed, D)
    assert summary["passed"] and summary["pending_days"] == [D]
    assert {"volume_vs_median_7d", "device_volume_vs_median_7d", "catalog_category_coverage"} <= {
        w["check"] for w in summary["warnings"]}
    assert spark.read.parquet(layout.validated("events", D)).count() == 4


def test_run__schema_drift_and_unreadable_file_fail_until_the_input_is_fixed(spark, cfg):
    from jobs.stages import validate

    cfg = cfg.replace(window_days=3)
    days = _days(3)
    _shop(cfg, days)
    layout = Layout(cfg.data_root)
    assert validate.run(spark, cfg, D)["passed"]
    assert os.path.exists(layout.validated("events", D))

    # D is re-delivered broken: purchases without a price column, and a file that is not Parquet
    no_price = pa.schema([f for f in schemas.load("events").arrow() if f.name != "price"])
    _write(cfg, "events", D, [_event(D, i) for i in range(19)] + [_event(D, 19, event_type="purchase", quantity=1,
                                                                         order_id="o")], schema=no_price)
    broken = os.path.join(layout.raw("events", D), "broken.parquet")
    with open(broken, "w") as f:
        f.write("event_id,event_time\nx,2026-03-05\n")

    with pytest.raises(QualityGateError) as err:
        validate.run(spark, cfg, D)
    checks = {f["check"]: f for f in err.value.failures}
    assert set(checks) == {"schema_drift", "unreadable_file"}
    assert checks["schema_drift"]["dataset"] == "events" and "column price" in checks["schema_drift"]["subject"]
    assert checks["schema_drift"]["threshold"] == "double"
    assert "broken.parquet" in checks["unreadable_file"]["subject"] and "broken.parquet" in str(err.value)
    assert not os.path.exists(layout.validated("events", D))  # the earlier good version is withdrawn
    q = spark.read.parquet(layout.quarantine("events", D)).collect()
    assert [(r["reasons"], json.loads(r["row_json"])["_file"]) for r in q if r["reasons"] == ["unreadable_file"]] == [
        (["unreadable_file"], broken)]

    # fixed input: the price is back and the stray file is gone
    os.remove(broken)
    _write(cfg, "events", D, [_event(D, i) for i in range(19)] + [_event(D, 19, event_type="purchase", quantity=1,
                                                                         order_id="o", price=9.5)])
    summary = validate.run(spark, cfg, D)
    assert summary["passed"] and summary["pending_days"] == [D]
    assert spark.read.parquet(layout.validated("events", D)).count() == 20


def test_run__empty_events_partition_fails_only_for_the_run_day(spark, cfg):
    from jobs.stages import validate

    cfg = cfg.replace(window_days=3)
    first, second, _ = _days(3)
    _write(cfg, "catalog", first, [_item(i) for i in range(4)])  # no events at all that day: normal
    _shop(cfg, [second])
    _write(cfg, "catalog", D, [_item(i) for i in range(4)])
    _write(cfg, "events", D, [])  # the collector delivered an empty file

    with pytest.raises(QualityGateError) as err:
        validate.run(spark, cfg, D)
    assert [(f["dataset"], f["check"], f["observed"], f["threshold"]) for f in err.value.failures] == [
        ("events", "events_partition_present", 0.0, 1)]
    layout = Layout(cfg.data_root)
    assert spark.read.parquet(layout.validated("events", first)).count() == 0  # an empty, readable day
