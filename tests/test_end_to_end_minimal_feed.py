"""Issue #8, done when: a feed whose files carry only the required columns runs to published lists.

Written by hand as a small shop's own collector would send it, not by the generator: events with only the
contract's required fields (plus what each event type needs), half the days as JSON Lines with the absent keys
left out, half as Parquet with pyarrow's inferred types; a catalog with only its five required columns; no
profiles, no devices, no countries, no sessions, no email hashes, no brands.
"""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.spark

START, DAYS = dt.date(2026, 5, 1), 14
RUN_DATE = (START + dt.timedelta(days=DAYS - 1)).isoformat()
SHOPPERS, ITEMS, GROUPS = 60, 40, 4


def _events_of_day(day: dt.date, rng: np.random.Generator) -> list[dict]:
    rows = []
    for s in range(SHOPPERS):
        own = [i for i in range(ITEMS) if i % GROUPS == s % GROUPS]
        at = dt.datetime.combine(day, dt.time(9), tzinfo=dt.timezone.utc) + dt.timedelta(minutes=s)
        base = {"anonymous_id": f"cookie-{s}"}
        if s % 3 == 0:  # a third of the shoppers log in; their user_id rides on every event after
            base["user_id"] = f"user-{s}"
            rows.append({"event_type": "login", "event_time": at, **base})
        for n, item in enumerate(rng.choice(own, size=3, replace=False)):
            rows.append({"event_type": "product_view", "item_id": f"sku-{item}",
                         "event_time": at + dt.timedelta(seconds=10 + n), **base})
        if rng.random() < 0.3:
            item = f"sku-{rng.choice(own)}"
            rows.append({"event_type": "add_to_cart", "item_id": item, "quantity": 1,
                         "event_time": at + dt.timedelta(seconds=30), **base})
            rows.append({"event_type": "purchase", "item_id": item, "quantity": 1, "price": 9.5,
                         "order_id": f"o-{day}-{s}", "event_time": at + dt.timedelta(seconds=40), **base})
    for n, row in enumerate(rows):
        row["event_id"] = f"{day}-{n}"
    return rows


def _write_feed(root) -> None:
    rng = np.random.default_rng(11)
    catalog = [{"item_id": f"sku-{i}", "title": f"Thing {i}", "category_path": f"Home > Group {i % GROUPS}",
                "price": 9.5, "is_available": True} for i in range(ITEMS)]
    for d in range(DAYS):
        day = START + dt.timedelta(days=d)
        events_dir = root / "raw" / "events" / f"dt={day}"
        catalog_dir = root / "raw" / "catalog" / f"dt={day}"
        events_dir.mkdir(parents=True)
        catalog_dir.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(catalog), catalog_dir / "catalog.parquet")
        rows = _events_of_day(day, rng)
        if d % 2:  # JSON Lines: absent keys are simply not there
            with open(events_dir / "events.jsonl", "w") as f:
                for r in rows:
                    f.write(json.dumps({**r, "event_time": r["event_time"].isoformat()}) + "\n")
        else:  # Parquet: each event type in its own file, with only the columns its rows carry
            for event_type in sorted({r["event_type"] for r in rows}):
                part = [r for r in rows if r["event_type"] == event_type]
                pq.write_table(pa.Table.from_pylist(part), events_dir / f"{event_type}.parquet")


def test_a_feed_of_only_required_columns_runs_to_published_lists(spark, tmp_path):
    from jobs.config import load_config
    from jobs.pipeline import run_all
    from jobs.serving.kvstore import KVReader
    from jobs.storage.layout import Layout

    root = tmp_path / "shop"
    _write_feed(root)
    cfg = load_config(data_root=str(root), overrides=["spark.master=local[1]", "spark.shuffle_partitions=1",
                                                      "window_days=14"])
    summary = run_all(cfg, RUN_DATE, spark=spark)
    assert summary["status"] in ("published", "published_popularity_fallback")
    validation = summary["stages"]["validate"]
    assert sum(d["events"]["quarantined"] for d in validation["days"].values()) == 0

    layout = Layout(str(root))
    recs = pq.read_table(layout.recommendations(RUN_DATE)).to_pandas()
    persons = recs[recs.subject_type == "person"]
    assert len(persons) and persons.groupby("subject_id").size().eq(cfg.top_n).all()
    assert set(recs[recs.subject_type == "segment"].subject_id) == {"global"}  # no context was ever sent
    reader = KVReader(layout.kv())
    logged_in = reader.lookup("user-3")
    assert logged_in["source"] == "person" and len(logged_in["items"]) == cfg.top_n
    assert reader.lookup("cookie-3")["person_id"] == logged_in["person_id"]  # the login stitched the cookie
    assert reader.lookup("never-seen")["source"] == "segment:global"
