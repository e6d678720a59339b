"""Importers: a hand-made known-answer test of the Online Retail core, then the real files (skipped when absent)."""
from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from schemas import load

ONLINE_RETAIL = SHARED_DATA / "online_retail" / "online_retail.parquet"
MOVIELENS = SHARED_DATA / "ml-100k"
needs_online_retail = pytest.mark.skipif(not ONLINE_RETAIL.exists(), reason=f"{ONLINE_RETAIL} not present")
needs_movielens = pytest.mark.skipif(not (MOVIELENS / "u.data").exists(), reason=f"{MOVIELENS} not present")


def _line(invoice, code, description, quantity, when, price, customer, country="United Kingdom"):
    return {"InvoiceNo": invoice, "StockCode": code, "Description": description, "Quantity": quantity,
            "InvoiceDate": pd.Timestamp(when), "UnitPrice": price, "CustomerID": customer, "Country": country}


@pytest.fixture
def order_lines() -> pd.DataFrame:
    nan = float("nan")
    return pd.DataFrame([
        _line("536365", "85123a", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:26", 2.55, 17850.0),
        _line("536365", "85123a", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:26", 2.55, 17850.0),
        _line("C536366", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", -2, "2010-12-03 10:00", 2.95, 17850.0),
        _line("536367", "22752", "SET 7 BABUSHKA NESTING BOXES", 1, "2010-12-02 09:00", 7.65, nan, "EIRE"),
        _line("536368", "85123A", "CREAM HANGING HEART T-LIGHT HOLDER", 1, "2010-12-02 11:00", 2.75, 12680.0,
              "Channel Islands"),
        _line("536369", "POST", "POSTAGE", 1, "2010-12-02 12:00", 18.0, 12680.0, "France"),
        _line("536370", "22139", "nan", 56, "2010-12-02 12:30", 0.0, nan),
        _line("536371", "22139", "RETROSPOT TEA SET CERAMIC 11 PC", 3, "2010-12-02 12:40", 0.0, nan),
        _line("536372", "22139", "RETROSPOT TEA SET CERAMIC 11 PC", -3, "2010-12-02 12:50", 4.95, nan),
    ])


def test_convert_order_lines__known_answer(order_lines):
    from jobs.importers.online_retail import convert_order_lines

    conv = convert_order_lines(order_lines, min_items_per_category=1)

    assert conv.dropped == {"bad_invoice": 0, "non_product_code": 1, "missing_description": 1,
                            "non_positive_price": 1, "bad_quantity": 1, "duplicate_row": 1}
    assert len(conv.events) + sum(conv.dropped.values()) == len(order_lines)
    ev = conv.events.set_index("order_id")
    assert list(conv.events["order_id"]) == ["536365", "536367", "536368", "536366"]  # ordered by time
    # a customer's purchase, item code upper-cased
    p = ev.loc["536365"]
    assert (p.event_type, p.item_id, p.quantity, p.price, p.user_id, p.anonymous_id, p.country) == \
        ("purchase", "85123A", 6, 2.55, "c17850", "ca17850", "GB")
    assert p.event_time == pd.Timestamp("2010-12-01 08:26", tz="UTC")
    # the cancellation: a return with a positive quantity, the line's price, the invoice number without "C"
    r = ev.loc["536366"]
    assert (r.event_type, r.item_id, r.quantity, r.price, r.user_id) == ("return", "85123A", 2, 2.95, "c17850")
    # a guest: one anonymous shopper per invoice, no account
    g = ev.loc["536367"]
    assert (g.anonymous_id, g.country) == ("g536367", "IE") and pd.isna(g.user_id)
    assert pd.isna(ev.loc["536368"].country) and conv.unmapped_countries == {"Channel Islands": 1}
    assert conv.events["event_id"].is_unique and conv.events["event_id"].str.startswith("or-").all()
    assert list(conv.events.columns) == [c for c in load("events").names if c in conv.events.columns]

    items = conv.items.set_index("item_id")
    assert sorted(items.index) == ["22752", "85123A"]
    # most common description wins; the median over the three kept lines; first sale time
    assert items.loc["85123A", "title"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert items.loc["85123A", "price"] == pytest.approx(2.75)
    assert items.loc["85123A", "created_at"] == pd.Timestamp("2010-12-01 08:26", tz="UTC")
    assert items.loc["85123A", "category_path"] == "Home > Holder"
    assert items.loc["22752", "category_path"] == "Home > Box"
    assert (items["currency"] == "GBP").all()


def test_convert_order_lines__ids_are_stable_and_content_based(order_lines):
    from jobs.importers.online_retail import convert_order_lines

    first = convert_order_lines(order_lines).events.set_index("order_id")["event_id"]
    changed = order_lines.copy()
    changed.loc[3, "Quantity"] = 2  # the guest line
    again = convert_order_lines(changed).events.set_index("order_id")["event_id"]
    assert first.drop("536367").equals(again.drop("536367"))
    assert first["536367"] != again["536367"]


def test_convert_order_lines__missing_column_is_named(order_lines):
    from jobs.importers.online_retail import convert_order_lines

    with pytest.raises(ValueError, match="UnitPrice"):
        convert_order_lines(order_lines.drop(columns=["UnitPrice"]))


def test_category_paths__last_known_keyword_and_other():
    from jobs.importers.online_retail import category_keyword, category_paths

    assert category_keyword("LUNCH BAG RED RETROSPOT") == "BAG"
    assert category_keyword("PACK OF 72 RETROSPOT CAKE CASES") == "CASE"
    assert category_keyword("12 PENCILS SMALL TUBE RED RETROSPOT") == "TUBE"
    titles = pd.Series(["LUNCH BAG RED RETROSPOT", "JUMBO BAG PINK POLKADOT", "VINTAGE KEEPSAKE BAG TRAVELOGUE",
                        "GARDEN THERMOMETER"])
    # TRAVELOGUE and THERMOMETER end one title each: too rare to be categories
    assert list(category_paths(titles, min_items=2)) == ["Home > Bag", "Home > Bag", "Home > Bag", "Home > Other"]


def test_catalog_snapshots__listing_and_availability_window(order_lines):
    from jobs.importers.online_retail import catalog_snapshots, convert_order_lines

    conv = convert_order_lines(order_lines)
    snaps = dict(catalog_snapshots(conv.items, conv.events, first_day="2010-12-01", last_day="2010-12-04",
                                   available_days=2))
    assert list(snaps) == ["2010-12-01", "2010-12-02", "2010-12-03", "2010-12-04"]
    avail = {ds: dict(zip(t.column("item_id").to_pylist(), t.column("is_available").to_pylist()))
             for ds, t in snaps.items()}
    # 22752 is first sold on 12-02; 85123A sold 12-01 and 12-02 (the 12-03 return is no sale)
    assert avail["2010-12-01"] == {"85123A": True}
    assert avail["2010-12-02"] == {"22752": True, "85123A": True}
    assert avail["2010-12-03"] == {"22752": True, "85123A": True}
    assert avail["2010-12-04"] == {"22752": False, "85123A": False}
    assert all(t.schema.equals(load("catalog").arrow()) for t in snaps.values())


def test_import_refuses_a_root_holding_another_dataset(tmp_path):
    from jobs.storage.layout import Layout
    from jobs.importers import check_no_foreign_partitions

    (tmp_path / "raw" / "events" / "dt=2026-01-01").mkdir(parents=True)
    with pytest.raises(ValueError, match="dt=2026-01-01"):
        check_no_foreign_partitions(Layout(str(tmp_path)), {"events": ["2011-01-01"]})
    check_no_foreign_partitions(Layout(str(tmp_path)), {"events": ["2026-01-01"]})  # a re-import is fine


# ---------------------------------------------------------------- real files


def _read(root: Path, dataset: str, columns=None):
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    table = pads.dataset(str(root / "raw" / dataset), format="parquet", partitioning="hive").to_table(
        columns=None if columns is None else [*columns, "dt"])
    return table.set_column(table.schema.get_field_index("dt"), "dt", pc.cast(table.column("dt"), "string"))


def _assert_contract_files(root: Path, dataset: str) -> int:
    import pyarrow.parquet as pq

    files = sorted((root / "raw" / dataset).glob("dt=*/*.parquet"))
    assert files, f"no {dataset} files"
    expected = load(dataset).arrow()
    for f in files:
        assert f.name == "part-00000.parquet"
        assert pq.read_schema(f).equals(expected), f
    return len(files)


def _assert_items_in_day_catalog(root: Path) -> None:
    events = _read(root, "events", ["item_id"])
    catalog = _read(root, "catalog", ["item_id"])
    orphans = events.join(catalog, keys=["dt", "item_id"], join_type="left anti")
    assert orphans.num_rows == 0, orphans.slice(0, 5).to_pylist()


def _assert_identical_trees(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(p) for p in files_a], shallow=False)
    assert mismatch == [] and errors == []


@pytest.fixture(scope="module")
def online_retail(tmp_path_factory):
    from jobs.importers.online_retail import import_online_retail

    root = tmp_path_factory.mktemp("online_retail")
    return root, import_online_retail(str(ONLINE_RETAIL), str(root))


@needs_online_retail
def test_online_retail__counts(online_retail):
    root, summary = online_retail
    assert summary["rows_read"] == 541_909
    by_type = summary["events_by_type"]
    assert set(by_type) == {"purchase", "return"} and by_type["return"] > 8_000
    assert by_type["purchase"] + by_type["return"] + sum(summary["rows_dropped"].values()) == 541_909
    assert summary["rows_written"] == _read(root, "events", ["event_id"]).num_rows
    # PROVENANCE: 5,268 exact duplicate rows; those that are also non-product or price-0 count under that reason
    assert 5_000 < summary["rows_dropped"]["duplicate_row"] <= 5_268
    assert (summary["first_day"], summary["last_day"], summary["days"]) == ("2010-12-01", "2011-12-09", 374)
    assert summary["event_days"] < summary["days"]  # no partition on days without orders
    assert len(list((root / "raw" / "catalog").glob("dt=*"))) == 374
    assert not (root / "raw" / "profiles").exists()


@needs_online_retail
def test_online_retail__events_and_catalog(online_retail):
    import pyarrow.compute as pc

    root, summary = online_retail
    events = _read(root, "events").to_pandas()
    product = r"^\d{5}[A-Z]{0,2}$"
    assert events["item_id"].str.match(product).all()
    last = _read(root, "catalog").filter(pc.equal(pc.field("dt"), "2011-12-09")).to_pandas()
    assert len(last) == summary["items"] and last["item_id"].str.match(product).all()
    assert last["category_path"].str.match(r"^Home > \w").all() and (last["price"] > 0).all()
    assert 0 < last["is_available"].mean() < 1

    returns = events[events["event_type"] == "return"]
    assert (returns["quantity"] > 0).all() and not returns["order_id"].str.startswith("C").any()
    # C536383: one set of 3 coloured flying ducks cancelled by customer 15311 (the file's 2nd cancellation)
    duck = returns[returns["order_id"] == "536383"]
    assert duck[["item_id", "quantity", "price", "user_id"]].values.tolist() == [["35004C", 1, 4.65, "c15311"]]

    guests = events[events["user_id"].isna()]
    assert len(guests) > 0 and guests["anonymous_id"].str.match(r"^g\d+$").all()
    customers = events[events["user_id"].notna()]
    assert (customers["anonymous_id"] == "ca" + customers["user_id"].str[1:]).all()
    assert events["event_id"].is_unique
    assert (events["event_time"].dt.strftime("%Y-%m-%d") == events["dt"]).all()
    assert set(events["country"].dropna()) >= {"GB", "DE", "FR", "IE"}

    _assert_items_in_day_catalog(root)
    assert _assert_contract_files(root, "events") == summary["event_days"]
    assert _assert_contract_files(root, "catalog") == summary["days"]


@needs_online_retail
def test_online_retail__reimport_is_identical(online_retail, tmp_path):
    from jobs.importers.online_retail import import_online_retail

    root, summary = online_retail
    again = import_online_retail(str(ONLINE_RETAIL), str(tmp_path))
    assert {k: v for k, v in again.items() if k not in ("data_root", "seconds")} == \
        {k: v for k, v in summary.items() if k not in ("data_root", "seconds")}
    _assert_identical_trees(root / "raw", tmp_path / "raw")


@pytest.mark.spark
@needs_online_retail
def test_online_retail__spark_reads_it_with_the_contract_schema(online_retail, spark):
    from pyspark.sql import functions as F

    from jobs.storage.io import read_spark_parquet
    from jobs.storage.layout import Layout

    root, _ = online_retail
    layout = Layout(str(root))
    df = read_spark_parquet(spark, layout.raw("events", "2010-12-01"), "events")
    row = df.agg(F.count("*").alias("n"), F.min(F.to_date("event_time")).alias("lo"),
                 F.max(F.to_date("event_time")).alias("hi")).first()
    expected = _read(root, "events", []).to_pandas()["dt"].eq("2010-12-01").sum()
    assert row["n"] == expected and str(row["lo"]) == str(row["hi"]) == "2010-12-01"


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    from jobs.importers.movielens import import_movielens

    root = tmp_path_factory.mktemp("movielens")
    return root, import_movielens(str(MOVIELENS), str(root))


@needs_movielens
def test_movielens__counts(movielens):
    root, summary = movielens
    assert (summary["rows_read"], summary["rows_written"], summary["users"], summary["items"], summary["profiles"]) \
        == (100_000, 100_000, 943, 1_682, 943)
    assert summary["rows_dropped"] == {"unknown_item": 0, "bad_timestamp": 0, "duplicate_rating": 0}
    assert (summary["first_day"], summary["last_day"], summary["days"]) == ("1997-09-20", "1998-04-22", 215)
    events = _read(root, "events").to_pandas()
    assert len(events) == 100_000 and events["event_id"].is_unique
    assert (events["event_type"] == "purchase").all() and (events["quantity"] == 1).all()
    assert events["user_id"].nunique() == 943 and events["item_id"].nunique() == 1_682
    catalog = _read(root, "catalog", ["item_id"]).to_pandas()
    assert catalog.groupby("dt").size().eq(1_682).all() and catalog["dt"].nunique() == 215
    _assert_items_in_day_catalog(root)
    assert _assert_contract_files(root, "events") == summary["event_days"]
    assert _assert_contract_files(root, "catalog") == 215
    assert _assert_contract_files(root, "profiles") == 1


@needs_movielens
def test_movielens__known_rows(movielens):
    root, _ = movielens
    events = _read(root, "events").to_pandas().set_index("event_id")
    # u.data line 1: "196\t242\t3\t881250949"
    e = events.loc["ml-196-242"]
    assert (e.user_id, e.anonymous_id, e.item_id, e.order_id, e.price) == ("u196", "m196", "i242", "o196-242", 1.0)
    assert e.event_time == pd.Timestamp(881250949, unit="s", tz="UTC") and e["dt"] == "1997-12-04"
    catalog = _read(root, "catalog").to_pandas()
    toy = catalog[(catalog["item_id"] == "i1") & (catalog["dt"] == "1997-09-20")].iloc[0]
    # Toy Story: Animation|Children's|Comedy -> the first in u.genre order
    assert (toy.title, toy.category_path, toy.price, toy.is_available) == \
        ("Toy Story (1995)", "Movies > Animation", 1.0, True)
    assert toy.created_at == pd.Timestamp("1995-01-01", tz="UTC")
    assert catalog["title"].str.contains("é").any()  # latin-1 decoded
    profiles = _read(root, "profiles").to_pandas().set_index("user_id")
    assert set(profiles["dt"]) == {"1997-09-20"} and len(profiles) == 943
    u1 = profiles.loc["u1"]  # u.user line 1: "1|24|M|technician|85711"
    assert (u1.age_band, u1.gender) == ("18-24", "M") and pd.isna(u1.country)
    assert u1.signup_time == events[events["user_id"] == "u1"]["event_time"].min()


@needs_movielens
def test_movielens__reimport_is_identical(movielens, tmp_path):
    from jobs.importers.movielens import import_movielens

    root, _ = movielens
    import_movielens(str(MOVIELENS), str(tmp_path))
    _assert_identical_trees(root / "raw", tmp_path / "raw")


@needs_movielens
def test_movielens__bad_file_names_file_column_and_line(tmp_path):
    from jobs.importers.movielens import read_movielens

    for name in ("u.item", "u.user", "u.genre"):
        shutil.copy(MOVIELENS / name, tmp_path / name)
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\tx302\t3\t891717742\n")
    with pytest.raises(ValueError, match=r"u\.data: column 'item' is not an integer in 1 row\(s\); first at line 2"):
        read_movielens(str(tmp_path))
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n")
    os.remove(tmp_path / "u.user")
    with pytest.raises(FileNotFoundError, match="u.user"):
        read_movielens(str(tmp_path))


def test_age_band():
    from jobs.importers.movielens import age_band

    out = age_band(pd.Series([7, 17, 18, 24, 25, 44, 45, 64, 65, np.nan]))
    assert out.iloc[:9].tolist() == ["<18", "<18", "18-24", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
    assert pd.isna(out.iloc[9])
