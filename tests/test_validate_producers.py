"""Issue #8: inputs as real producers send them (optional columns left out, attributes a shop never sends).

Each raw file is written as a shop would: only the required columns (plus the ones its event type needs),
JSON Lines with the absent keys left out, Parquet with pyarrow's inferred types.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.storage.layout import Layout
from quality import QualityGateError

pytestmark = pytest.mark.spark

D = "2026-03-05"
UTC = dt.timezone.utc

# only what the contract requires for each event type
MINIMAL = {
    "product_view": {"item_id": "i0"},
    "category_view": {"category_id": "c1"},
    "search": {"query": "red shoes"},
    "add_to_cart": {"item_id": "i1", "quantity": 2},
    "remove_from_cart": {"item_id": "i1"},
    "purchase": {"item_id": "i2", "quantity": 1, "price": 12.5, "order_id": "o1"},
    "return": {"item_id": "i2", "quantity": 1, "price": 12.5, "order_id": "o1"},
    "login": {},
    "rec_impression": {"item_id": "i0", "experiment_id": "x1", "variant": "control"},
    "rec_click": {"item_id": "i0", "experiment_id": "x1", "variant": "control"},
}


def _days(n: int, end: str = D) -> list[str]:
    e = dt.date.fromisoformat(end)
    return [(e - dt.timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]


def _folder(cfg, dataset: str, ds: str) -> str:
    folder = Layout(cfg.data_root).raw(dataset, ds)
    os.makedirs(folder, exist_ok=True)
    return folder


def _parquet(cfg, dataset: str, ds: str, rows: list[dict], name: str = "part-0.parquet") -> str:
    path = os.path.join(_folder(cfg, dataset, ds), name)
    pq.write_table(pa.Table.from_pylist(rows), path)  # inferred types, only the columns the rows have
    return path


def _jsonl(cfg, dataset: str, ds: str, rows: list[dict], name: str) -> str:
    path = os.path.join(_folder(cfg, dataset, ds), name)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, default=lambda v: v.isoformat().replace("+00:00", "Z")) + "\n")
    return path


def _minimal_event(ds: str, event_type: str, i: int) -> dict:
    t = dt.datetime.fromisoformat(ds).replace(hour=10, minute=i % 60, tzinfo=UTC)
    return {"event_id": f"{event_type}-{ds}-{i}", "event_time": t, "event_type": event_type,
            "anonymous_id": f"a{i}", **MINIMAL[event_type]}


def _minimal_catalog(ds: str, n: int = 4, **extra) -> list[dict]:
    return [{"item_id": f"i{i}", "title": f"Item {i}", "category_path": "Women > Shoes", "price": 10.0 + i,
             "is_available": True, **{k: v[i] if isinstance(v, list) else v for k, v in extra.items()}}
            for i in range(n)]


def test_minimal_files_of_every_event_type_in_parquet_and_json_lines_pass(spark, cfg):
    from jobs.stages import validate

    cfg = cfg.replace(window_days=1)
    for n, et in enumerate(MINIMAL):
        _parquet(cfg, "events", D, [_minimal_event(D, et, n)], name=f"{et}.parquet")
        _jsonl(cfg, "events", D, [_minimal_event(D, et, 100 + n)], name=f"{et}.jsonl")
    _jsonl(cfg, "events", D, [{**_minimal_event(D, "login", 200), "referrer": "newsletter"}], name="extra.jsonl")
    _parquet(cfg, "catalog", D, _minimal_catalog(D))  # no brand, color, ... at all
    _parquet(cfg, "profiles", D, [{"user_id": "u1"}, {"user_id": "u2"}])

    summary = validate.run(spark, cfg, D)

    assert summary["passed"], summary["failures"]
    assert summary["quarantine"] == {"events": {}, "catalog": {}, "profiles": {}}
    day = summary["days"][D]
    assert (day["events"]["rows"], day["events"]["good"]) == (21, 21)
    assert (day["catalog"]["good"], day["profiles"]["good"]) == (4, 2)
    # the only warning: the unknown extra key; absent optional columns are not findings at all
    assert [(w["check"], w["subject"]) for w in summary["warnings"]] == [
        ("schema_extra_column", f"file {Layout(cfg.data_root).raw('events', D)}/extra.jsonl, column referrer")]
    out = spark.read.parquet(Layout(cfg.data_root).validated("events", D))
    purchase = out.where("event_id = 'purchase-2026-03-05-5'").collect()[0]
    assert (purchase["price"], purchase["quantity"], purchase["user_id"], purchase["device_type"]) == (12.5, 1, None, None)

    # a required column missing from a file still fails, naming the file and the column
    bad = _parquet(cfg, "events", D, [{k: v for k, v in _minimal_event(D, "login", 300).items() if k != "anonymous_id"}],
                   name="no_anonymous_id.parquet")
    with pytest.raises(QualityGateError) as err:
        validate.run(spark, cfg, D)
    drift = [f for f in err.value.failures if f["check"] == "schema_drift"]
    assert [f["subject"] for f in drift] == [f"file {bad}, column anonymous_id"]


def test_optional_attribute_coverage_is_judged_against_the_shops_own_history(spark, cfg):
    """brand on every item for 5 days, then on 1 of 4: a gap. A shop that never sends brand is not judged."""
    from jobs.stages import validate

    cfg = cfg.replace(window_days=6)
    days = _days(6)

    def shop(root_cfg, brand_today, brand_before):
        for ds in days:
            events = [_minimal_event(ds, "product_view", i) for i in range(8)]
            _parquet(root_cfg, "events", ds, events)
            brand = brand_today if ds == D else brand_before
            _parquet(root_cfg, "catalog", ds, _minimal_catalog(ds, **({"brand": brand} if brand else {})))

    shop(cfg, ["acme", None, None, None], "acme")
    with pytest.raises(QualityGateError) as err:
        validate.run(spark, cfg, D)
    gap = [(f["check"], f["subject"], f["observed"], f["threshold"]) for f in err.value.failures]
    assert gap == [("catalog_attribute_coverage_vs_trailing", "brand", 0.25, 0.5)]

    relaxed = cfg.replace(quality=dataclasses.replace(cfg.quality, on_catalog_coverage="warn"))
    assert [w["subject"] for w in validate.run(spark, relaxed, D)["warnings"]] == ["brand"]

    never = cfg.replace(data_root=cfg.data_root + "-nobrand")
    shop(never, None, None)
    summary = validate.run(spark, never, D)
    assert summary["passed"] and summary["warnings"] == []
    skipped = [c for c in summary["checks"] if c["check"] == "catalog_attribute_coverage_vs_trailing"]
    assert {c["status"] for c in skipped} == {"skipped"} and len(skipped) == len(cfg.quality.catalog_attributes)
