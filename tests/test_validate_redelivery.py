"""Issue #8: re-deliveries, normalised ids and timestamps, email_hash digests and personal fields in quarantine."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.storage.layout import Layout
from quality import QualityGateError

pytestmark = pytest.mark.spark

D = "2026-03-05"
UTC = dt.timezone.utc
DIGEST = "a" * 64


def _folder(cfg, dataset: str, ds: str = D) -> str:
    folder = Layout(cfg.data_root).raw(dataset, ds)
    os.makedirs(folder, exist_ok=True)
    return folder


def _parquet(cfg, dataset: str, rows: list[dict], name: str = "part-0.parquet", schema=None) -> str:
    path = os.path.join(_folder(cfg, dataset), name)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _jsonl(cfg, dataset: str, rows: list[dict], name: str) -> str:
    path = os.path.join(_folder(cfg, dataset), name)
    with open(path, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _view(i: int, **changes) -> dict:
    row = {"event_id": f"e{i}", "event_time": dt.datetime(2026, 3, 5, 10, i % 60, tzinfo=UTC),
           "event_type": "product_view", "anonymous_id": f"a{i % 7}", "item_id": f"i{i % 3}"}
    row.update(changes)
    return row


def _catalog(cfg, items=("i0", "i1", "i2")) -> None:
    _parquet(cfg, "catalog", [{"item_id": it, "title": it, "category_path": "A > B", "price": 5.0,
                               "is_available": True} for it in items])


def test_redelivery_same_ids_counts_once_new_ids_is_caught_by_content(spark, cfg):
    from jobs.stages import validate

    cfg = cfg.replace(window_days=1)
    _catalog(cfg)
    # two identical views in one file (same second, same cookie) are legitimate repeats
    rows = [_view(i) for i in range(20)] + [_view(99, event_time=_view(0)["event_time"], anonymous_id="a0",
                                                  item_id="i0")]
    first = _parquet(cfg, "events", rows, name="batch-1.parquet")
    shutil.copy(first, os.path.join(_folder(cfg, "events"), "batch-1-copy.parquet"))  # exact re-delivery

    summary = validate.run(spark, cfg, D)
    day = summary["days"][D]["events"]
    assert summary["passed"] and summary["warnings"] == []
    assert (day["rows"], day["good"], day["quarantined"], day["duplicates_dropped"]) == (21, 21, 0, 21)
    assert day["content_twins"] == 0

    # the same rows again under new event_ids and a new file name: the day's volume doubles
    _parquet(cfg, "events", [{**r, "event_id": "new-" + r["event_id"]} for r in rows], name="batch-2.parquet")
    summary = validate.run(spark, cfg, D)
    day = summary["days"][D]["events"]
    assert summary["passed"]  # on_content_duplicates: warn
    assert [(w["check"], w["observed"]) for w in summary["warnings"]] == [("content_duplicates", 0.5)]
    assert (day["rows"], day["good"], day["reasons"]) == (42, 21, {"duplicate_content": 21})
    good_ids = {r["event_id"] for r in spark.read.parquet(Layout(cfg.data_root).validated("events", D)).collect()}
    assert good_ids == {r["event_id"] for r in rows}

    # a severity is not part of a day's marker: validate the day again under `fail`
    os.remove(os.path.join(Layout(cfg.data_root).validated("events", D), "_recs_validated.json"))
    strict = cfg.replace(quality=dataclasses.replace(cfg.quality, on_content_duplicates="fail"))
    with pytest.raises(QualityGateError, match="content_duplicates"):
        validate.run(spark, strict, D)


def test_ids_trimmed_timestamps_to_utc_numeric_text_email_digest_and_masked_personal_fields(spark, cfg):
    from jobs.stages import validate

    cfg = cfg.replace(window_days=1)
    _parquet(cfg, "catalog", [{"item_id": "SKU1 ", "title": "a", "category_path": "A > B", "price": "12.50",
                               "is_available": True},
                              {"item_id": "SKU1", "title": "b", "category_path": "A > B", "price": "cheap",
                               "is_available": True},
                              {"item_id": "SKU2", "title": "c", "category_path": "A > B", "price": "7",
                               "is_available": True}])
    naive = pa.schema([("event_id", pa.string()), ("event_time", pa.timestamp("us")), ("event_type", pa.string()),
                       ("anonymous_id", pa.string()), ("item_id", pa.string()), ("price", pa.string()),
                       ("quantity", pa.int64()), ("order_id", pa.string())])
    _parquet(cfg, "events", [
        {"event_id": " p1", "event_time": dt.datetime(2026, 3, 5, 10), "event_type": "purchase",
         "anonymous_id": "a1 ", "item_id": " SKU1", "price": "12.50", "quantity": 1, "order_id": "o1"},
        {"event_id": "p2", "event_time": dt.datetime(2026, 3, 5, 11), "event_type": "purchase",
         "anonymous_id": "a1", "item_id": "SKU2", "price": "twelve", "quantity": 1, "order_id": "o2"}],
        schema=naive)
    _jsonl(cfg, "events", [
        {"event_id": "j1", "event_time": "2026-03-05T12:00:00+02:00", "event_type": "purchase", "anonymous_id": "a2",
         "item_id": "SKU2", "price": "12.50", "quantity": "1", "order_id": "o3"},
        {"event_id": "j2", "event_time": "2026-03-05 12:00:00", "event_type": "purchase", "anonymous_id": "a2",
         "item_id": "SKU2", "price": "twelve", "quantity": 1, "order_id": "o4"},
        {"event_id": "j3", "event_time": "2026-03-05T13:00:00Z", "event_type": "login", "anonymous_id": "a3",
         "user_id": "u3", "email_hash": f" {DIGEST.upper()} "},
        {"event_id": "j4", "event_time": "2026-03-05T13:00:00Z", "event_type": "login", "anonymous_id": "a4",
         "user_id": "u4", "session_id": "s4", "email_hash": "Jane.Doe@example.com"},
        {"event_id": "j5", "event_time": "2026-03-05T14:00:00Z", "event_type": "search", "anonymous_id": "a5",
         "user_id": "u5", "query": "jane doe's address", "device_type": "fridge"}], name="more.jsonl")
    relaxed = cfg.replace(quality=dataclasses.replace(cfg.quality, on_quarantine_share="warn",
                                                      on_catalog_coverage="warn"))

    summary = validate.run(spark, relaxed, D)
    layout = Layout(cfg.data_root)
    good = {r["event_id"]: r for r in spark.read.parquet(layout.validated("events", D)).collect()}
    assert (good["p1"]["anonymous_id"], good["p1"]["item_id"], good["p1"]["price"]) == ("a1", "SKU1", 12.5)
    assert good["p1"]["event_time"] == dt.datetime(2026, 3, 5, 10)  # naive Parquet timestamp read as UTC
    assert good["j1"]["event_time"] == dt.datetime(2026, 3, 5, 10)  # +02:00 converted to UTC
    assert good["j3"]["email_hash"] == DIGEST
    assert summary["days"][D]["events"]["naive_timestamps"] == 3  # p1, p2 (Parquet) and j2 (JSON)
    q = {r["event_id"]: r for r in spark.read.parquet(layout.quarantine("events", D)).collect()}
    assert {k: v["reasons"] for k, v in q.items()} == {
        "p2": ["bad_type:price"], "j2": ["bad_type:price"], "j4": ["email_hash_not_a_digest"],
        "j5": ["unknown_device_type"]}
    j4, j5 = json.loads(q["j4"]["row_json"]), json.loads(q["j5"]["row_json"])
    assert j4["email_hash"] == "<masked>" and "example.com" not in q["j4"]["row_json"]
    assert j4["user_id"].startswith("h:") and len(j4["user_id"]) == 14 and j4["session_id"].startswith("h:")
    assert (j5["query"], j5["user_id"][:2], j5["anonymous_id"][:2]) == ("<masked>", "h:", "h:")
    assert "doe" not in q["j5"]["row_json"]
    catalog = {(r["item_id"], r["reasons"][0]) for r in spark.read.parquet(layout.quarantine("catalog", D)).collect()}
    assert catalog == {("SKU1", "bad_type:price")} or catalog == {("SKU1", "duplicate_item_id")}
    assert summary["quarantine"]["catalog"] in ({"bad_type:price": 1, "duplicate_item_id": 1}, {"bad_type:price": 1})

    # the other settings: zone-less timestamps rejected, personal fields kept (a raw email never is)
    strict = relaxed.replace(quality=dataclasses.replace(relaxed.quality, naive_timestamps="reject",
                                                         quarantine_keep_personal=True))
    summary = validate.run(spark, strict, D)
    q = {r["event_id"]: r for r in spark.read.parquet(layout.quarantine("events", D)).collect()}
    assert q["p1"]["reasons"] == ["naive_timestamp"] and q["j2"]["reasons"] == ["bad_type:price", "naive_timestamp"]
    j4 = json.loads(q["j4"]["row_json"])
    assert (j4["user_id"], j4["email_hash"]) == ("u4", "<masked>")
