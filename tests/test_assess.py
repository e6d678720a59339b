"""`recs assess`: figures on a hand-written feed whose answers are worked out below, verdicts and fix order on
made-up figures, the report files, and synthetic shops with one planted gap each: that area flagged, only that."""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SHARED_DATA
from jobs.config import load_config
from jobs.shop import generate_shop
from jobs.shop.gaps import PLANTED_GAPS

TEST_SPARK = ["spark.master=local[1]", "spark.shuffle_partitions=1", "spark.driver_memory=1g"]


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _parquet(path, rows, schema):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _ev(eid, t, etype, anon, user=None, **kw):
    return {"event_id": eid, "event_time": t, "event_type": etype, "anonymous_id": anon, "user_id": user, **kw}


def write_hand_feed(root):
    """Three event days (03-01 JSON Lines, 03-02 Parquet without device_type and session_id, 03-04 Parquet)
    and two catalog snapshots (03-01 JSON Lines, 03-04 Parquet without description and image_url).

    People: u1 (devices a1, a4; orders o1, o3, o5), u2 (a5); a2 buys once on one day and never logs in (a guest
    checkout: untied); a3 never logs in but comes back on 03-02 (an anonymous shopper: tied)."""
    raw = root / "raw"
    _jsonl(raw / "events/dt=2026-03-01/part-0.jsonl", [
        _ev("e1", "2026-03-01T10:00:00Z", "product_view", "a1", "u1", device_type="desktop", item_id="i1"),
        _ev("e2", "2026-03-01T10:01:00Z", "product_view", "a1", "u1", device_type="desktop", item_id="i2"),
        _ev("e3", "2026-03-01T10:02:00Z", "purchase", "a1", "u1", device_type="desktop", item_id="i1",
            quantity=1, price="10.0", order_id="o1"),  # a number sent as text
        _ev("e4", "2026-03-01T11:00:00Z", "product_view", "a2", device_type="mobile_web", item_id="i1"),
        _ev("e5", "2026-03-01T11:01:00Z", "purchase", "a2", device_type="mobile_web", item_id="i2", quantity=1,
            price=12.0, order_id="o2"),
        _ev("e6", "2026-03-01T12:00:00Z", "product_view", "a3", device_type="ios", item_id="i3"),
    ])
    lean = pa.schema([("event_id", pa.string()), ("event_time", pa.timestamp("us", tz="UTC")),
                      ("event_type", pa.string()), ("anonymous_id", pa.string()), ("user_id", pa.string()),
                      ("item_id", pa.string()), ("quantity", pa.int32()), ("price", pa.float64()),
                      ("order_id", pa.string()), ("email_hash", pa.string())])
    import datetime as dt

    def t(s):
        return dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC)

    _parquet(raw / "events/dt=2026-03-02/part-0.parquet", [
        {"event_id": "e7", "event_time": t("2026-03-02T09:00:00"), "event_type": "login", "anonymous_id": "a4",
         "user_id": "u1", "email_hash": "0" * 64},
        {"event_id": "e8", "event_time": t("2026-03-02T09:05:00"), "event_type": "purchase", "anonymous_id": "a4",
         "user_id": "u1", "item_id": "i2", "quantity": 1, "price": 10.0, "order_id": "o3"},
        {"event_id": "e9", "event_time": t("2026-03-02T15:00:00"), "event_type": "purchase", "anonymous_id": "a3",
         "item_id": "i3", "quantity": 1, "price": 5.0, "order_id": "o4"},
    ], lean)
    full = lean.append(pa.field("device_type", pa.string()))
    _parquet(raw / "events/dt=2026-03-04/part-0.parquet", [
        {"event_id": "e10", "event_time": t("2026-03-04T09:00:00"), "event_type": "purchase", "anonymous_id": "a1",
         "user_id": "u1", "item_id": "i1", "quantity": 2, "price": 10.0, "order_id": "o5", "device_type": "desktop"},
        {"event_id": "e11", "event_time": t("2026-03-04T10:00:00"), "event_type": "product_view",
         "anonymous_id": "a5", "user_id": "u2", "item_id": "i1", "device_type": "desktop"},
    ], full)
    item = {"title": "t", "category_path": "Home > Mugs", "price": 3.5, "is_available": True}
    _jsonl(raw / "catalog/dt=2026-03-01/part-0.jsonl",
           [{**item, "item_id": i, "brand": "B", "description": "d"} for i in ("i1", "i2", "i3")])
    cat = pa.schema([("item_id", pa.string()), ("title", pa.string()), ("category_path", pa.string()),
                     ("price", pa.float64()), ("is_available", pa.bool_()), ("brand", pa.string())])
    _parquet(raw / "catalog/dt=2026-03-04/part-0.parquet",
             [{**item, "item_id": "i1", "brand": "B"}, {**item, "item_id": "i2", "brand": "C"},
              {**item, "item_id": "i3", "brand": "  "}, {**item, "item_id": "i4", "brand": None}], cat)


@pytest.fixture(scope="module")
def hand_report(spark, tmp_path_factory):
    from jobs.assess.job import run

    root = tmp_path_factory.mktemp("hand") / "data"
    write_hand_feed(root)
    cfg = load_config(data_root=str(root), overrides=TEST_SPARK + ["assess.catalog_every_days=1"])
    return root, run(spark, cfg)


def test_history__days_gaps_and_seasonal_cycle(hand_report):
    _, r = hand_report
    h = r["figures"]["history"]
    assert (h["first_day"], h["last_day"], h["span_days"], h["days_with_events"]) == (
        "2026-03-01", "2026-03-04", 4, 3)
    assert h["longest_gap_days"] == 1 and h["active_day_share"] == pytest.approx(0.75)
    assert h["events"] == 11 and h["events_per_day"] == {"2026-03-01": 6, "2026-03-02": 3, "2026-03-04": 2}
    assert r["assessment"]["verdicts"]["history"] == "not ready"  # 4 days, far from a seasonal cycle


def test_people__repeat_buyers_and_logged_in_share(hand_report):
    p = hand_report[1]["figures"]["people"]
    assert (p["users"], p["buyers"], p["users_with_min_purchases"]) == (2, 1, 1)
    assert p["logged_in_share"] == pytest.approx(7 / 11)
    assert p["orders_per_user"]["3-5"] == 1 and p["orders_per_user"]["0"] == 1


def test_identity__devices_logins_and_untied_purchases(hand_report):
    i = hand_report[1]["figures"]["identity"]
    assert i["devices_per_user"]["mean"] == pytest.approx(1.5) and i["devices_per_user"]["max"] == 2
    assert (i["anonymous_ids"], i["anonymous_ids_logged_in"], i["one_off_anonymous_ids"]) == (5, 3, 1)
    assert (i["purchases"], i["anonymous_purchases"], i["untied_purchases"]) == (5, 2, 1)
    assert i["untied_purchase_share"] == pytest.approx(0.2)


def test_catalog__coverage_trend_and_idle_items(hand_report):
    c = hand_report[1]["figures"]["catalog"]
    assert c["latest_day"] == "2026-03-04" and c["items"] == 4 and c["snapshots"] == 2
    # a blank brand is no brand; a column left out of the file is an attribute nobody has
    assert c["coverage"] == {"category_path": 1.0, "brand": 0.5, "price": 1.0, "description": 0.0,
                             "image_url": 0.0}
    assert c["trend"]["brand"]["from"] == 1.0 and c["trend"]["brand"]["change"] == pytest.approx(-0.5)
    assert c["trend"]["description"]["change"] == pytest.approx(-1.0)
    assert c["items_without_interactions"] == 1  # i4


def test_event_collection__types_and_rates_per_platform(hand_report):
    e = hand_report[1]["figures"]["event_collection"]
    assert {p: v["event_types"] for p, v in e["platforms"].items()} == {
        "desktop": {"product_view": 3, "purchase": 2}, "mobile_web": {"product_view": 1, "purchase": 1},
        "ios": {"product_view": 1}, "unknown": {"login": 1, "purchase": 2}}
    assert e["platforms"]["ios"]["family"] == "app" and e["platforms"]["mobile_web"]["family"] == "web"
    assert e["device_type_share"] == pytest.approx(8 / 11)
    assert e["recent"]["views_per_purchase"] == pytest.approx(1.0)
    assert e["platforms"]["desktop"]["recent"]["views_per_purchase"] == pytest.approx(1.5)


def test_report__json_and_standalone_html_under_reports(hand_report):
    root, r = hand_report
    folder = root / "reports" / "dt=2026-03-04"
    assert json.loads((folder / "assessment.json").read_text())["assessment"] == json.loads(
        json.dumps(r["assessment"]))
    page = (folder / "assessment.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "<script" not in page
    assert sorted(os.listdir(root)) == ["raw", "reports"]  # nothing else is written
    assert [f for f in os.listdir(folder) if f.startswith(".")] == []  # no temporary left behind


def test_date__later_days_are_left_out(spark, hand_report):
    from jobs.assess.job import run

    root, _ = hand_report
    cfg = load_config(data_root=str(root), overrides=TEST_SPARK + ["assess.catalog_every_days=1"])
    r = run(spark, cfg, "2026-03-02")
    assert r["date"] == "2026-03-02" and r["figures"]["history"]["events"] == 9
    assert r["figures"]["catalog"]["latest_day"] == "2026-03-01"
    assert (root / "reports" / "dt=2026-03-02" / "assessment.json").exists()


def test_no_raw_events__a_clear_error(spark, tmp_path):
    from jobs.assess.job import run

    cfg = load_config(data_root=str(tmp_path / "empty"), overrides=TEST_SPARK)
    with pytest.raises(FileNotFoundError, match="no readable raw events under .*raw/events"):
        run(spark, cfg)


def test_judge__ready_usable_not_ready_both_directions():
    from jobs.assess.verdicts import CAVEATS, NOT_JUDGED, NOT_READY, READY, judge

    assert [judge(v, (10, 5), higher_is_better=True) for v in (10, 7, 4.9, None)] == [
        READY, CAVEATS, NOT_READY, NOT_JUDGED]
    assert [judge(v, (0.05, 0.25), higher_is_better=False) for v in (0.05, 0.2, 0.3)] == [READY, CAVEATS, NOT_READY]


def test_fixes__not_ready_first_then_collection_identity_catalog_people_history(hand_report):
    fixes = hand_report[1]["assessment"]["fixes"]
    rank = {"not ready": 0, "usable with caveats": 1}
    order = ("event_collection", "identity", "catalog", "people", "history")
    keys = [(rank[f["verdict"]], order.index(f["area"])) for f in fixes]
    assert keys == sorted(keys) and fixes[0]["verdict"] == "not ready"
    assert all(f["fix"] for f in fixes)


# A shop small enough for a test: thresholds scaled to it, so the clean shop is ready in every area.
SMALL_SHOP = dict(start="2026-01-01", days=60, users=400, items=120, seed=3)
SMALL_THRESHOLDS = ["assess.history_days=[45, 20]", "assess.users_with_min_purchases=[10, 5]"]
AREA_OF_GAP = {"views_stop": "event_collection", "brands_fade": "catalog", "fragmented_ids": "identity"}


@pytest.fixture(scope="module")
def shop_verdicts(spark, tmp_path_factory):
    from jobs.assess.job import run

    out = {}
    for gap in (None, *PLANTED_GAPS):
        root = tmp_path_factory.mktemp(gap or "clean") / "data"
        generate_shop(str(root), **SMALL_SHOP, gaps=(gap,) if gap else ())
        cfg = load_config(data_root=str(root), overrides=TEST_SPARK + SMALL_THRESHOLDS)
        out[gap] = run(spark, cfg)
    return out


def test_clean_shop__ready_everywhere(shop_verdicts):
    assert set(shop_verdicts[None]["assessment"]["verdicts"].values()) == {"ready"}
    assert shop_verdicts[None]["assessment"]["fixes"] == []


@pytest.mark.parametrize("gap", PLANTED_GAPS)
def test_planted_gap__flags_its_area_and_only_it(shop_verdicts, gap):
    verdicts = shop_verdicts[gap]["assessment"]["verdicts"]
    flagged = {a for a, v in verdicts.items() if v != "ready"}
    assert flagged == {AREA_OF_GAP[gap]}
    assert shop_verdicts[gap]["assessment"]["fixes"][0]["area"] == AREA_OF_GAP[gap]


def test_views_stop__names_the_platform_and_the_day(shop_verdicts):
    e = shop_verdicts["views_stop"]["figures"]["event_collection"]
    assert [(s["platform"], s["event_type"]) for s in e["stopped"]] == [("ios", "product_view")]
    assert e["stopped"][0]["last_day"] == "2026-01-30"  # day 29 of 60: the last before halfway
    assert e["parity"]["platform"] == "ios" and e["parity"]["ratio"] == 0.0


def test_cli__prints_the_summary(spark, hand_report, capsys):
    from jobs.cli import main

    root, _ = hand_report
    assert main(["assess", "--data-root", str(root), "--set", "spark.master=local[1]"]) == 0
    out = capsys.readouterr().out
    assert "Event collection" in out and "top fixes:" in out and "assessment.html" in out


def _daily(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["day", "platform", "event_type", "events", "logged_in"])


def _days(n):
    import datetime as dt

    return [(dt.date(2026, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(n)]


def test_platform_drops__a_platform_falling_behind_the_others_not_a_quiet_shop_day():
    from jobs.assess.figures import platform_drops, stopped_series

    rows = []
    for i, day in enumerate(_days(40)):
        quiet = 0.2 if i == 12 else 1.0  # the whole shop is quiet on day 12: no platform's gap
        for platform in ("desktop", "ios", "android"):
            views = 0 if platform == "ios" and i >= 30 else int(100 * quiet)
            rows.append((day, platform, "product_view", views, 0))
    drops = platform_drops(_daily(rows), drop_ratio=0.3, baseline_days=28, min_history_days=7, min_daily_events=20)
    assert {(d["platform"], d["event_type"]) for d in drops} == {("ios", "product_view")}
    assert [d["day"] for d in drops] == _days(40)[30:]
    stopped = stopped_series(_daily(rows), recent_from=_days(40)[33], min_daily_events=20)
    assert stopped == [{"platform": "ios", "event_type": "product_view", "last_day": _days(40)[29],
                        "median_before": 100.0}]


def test_platform_drops__one_platform_cannot_drop_behind_itself():
    from jobs.assess.figures import platform_drops

    rows = [(day, "unknown", "return", 100 if i % 7 else 1, 0) for i, day in enumerate(_days(60))]
    assert platform_drops(_daily(rows), drop_ratio=0.3, baseline_days=28, min_history_days=7,
                          min_daily_events=20) == []


def _real(spark, tmp_path, importer, source):
    from jobs.assess.job import run

    root = tmp_path / "data"
    importer(str(source), str(root))
    r = run(spark, load_config(data_root=str(root), overrides=TEST_SPARK))
    checks = {(c["check"], c["subject"]): c["verdict"] for cs in r["assessment"]["checks"].values() for c in cs}
    return r["assessment"]["verdicts"], checks


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "ml-100k" / "u.data").exists(), reason="MovieLens 100K not present")
def test_movielens__ratings_not_purchases_no_views_no_brands(spark, tmp_path):
    from jobs.importers.movielens import import_movielens

    verdicts, checks = _real(spark, tmp_path, import_movielens, SHARED_DATA / "ml-100k")
    assert verdicts == {"history": "usable with caveats", "people": "not ready", "identity": "ready",
                        "catalog": "not ready", "event_collection": "not ready"}
    assert checks[("purchases_are_orders", None)] == "not ready"  # every "purchase" is a rating at price 1.0
    assert checks[("views_per_purchase", None)] == "not ready"
    assert checks[("attribute_coverage", "brand")] == "not ready"
    assert checks[("device_type_share", None)] == "usable with caveats"  # no web/app split


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "online_retail" / "online_retail.parquet").exists(),
                    reason="Online Retail not present")
def test_online_retail__guest_checkouts_no_views_no_brands(spark, tmp_path):
    from jobs.importers.online_retail import import_online_retail

    verdicts, checks = _real(spark, tmp_path, import_online_retail,
                             SHARED_DATA / "online_retail" / "online_retail.parquet")
    assert verdicts["history"] == "ready"  # 374 days: a full seasonal cycle
    assert verdicts["identity"] == "not ready" and checks[("untied_purchase_share", None)] == "not ready"
    assert checks[("views_per_purchase", None)] == "not ready"
    assert checks[("attribute_coverage", "brand")] == "not ready"
    assert checks[("device_type_share", None)] == "usable with caveats"
    assert checks[("purchases_are_orders", None)] == "ready"


@pytest.mark.parametrize("prices, are_orders", [([1.0] * 120, False), ([1.0] * 100 + [2.5] * 20, True),
                                                ([1.0] * 99, True)])  # 99: too few to judge
def test_purchase_prices__one_price_for_all_is_not_orders(spark, prices, are_orders):
    from jobs.assess.figures import purchase_price_figures

    events = spark.createDataFrame([("purchase", p) for p in prices], "event_type string, price double")
    figures = purchase_price_figures(events, max_mode_share=0.99)
    assert figures["are_orders"] is are_orders and figures["priced_purchases"] == len(prices)


def test_html__values_from_the_feed_are_escaped(spark, tmp_path):
    from jobs.assess.job import run

    root = tmp_path / "data"
    _jsonl(root / "raw/events/dt=2026-03-01/part-0.jsonl", [
        _ev(f"e{i}", "2026-03-01T10:00:00Z", "<script>alert(1)</script>", "a1", device_type="<script>x</script>")
        for i in range(3)])
    run(spark, load_config(data_root=str(root), overrides=TEST_SPARK))
    page = (root / "reports/dt=2026-03-01/assessment.html").read_text()
    assert "<script" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
