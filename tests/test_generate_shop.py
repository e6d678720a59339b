"""The synthetic shop: contract schemas, good rows that are really good, bad rows that are really bad, and
ground truth that matches the events. One tiny shop (200 people x 100 items x 5 days) per setting."""
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from jobs.shop import DEFECT_KINDS, TRUTH_SCHEMAS, generate_shop

START, DAYS = "2026-03-01", 5
SHOP = {"start": START, "days": DAYS, "users": 200, "items": 100, "seed": 3}
DATES = [(dt.date.fromisoformat(START) + dt.timedelta(days=d)).isoformat() for d in range(DAYS)]
ITEM_EVENTS = {"product_view", "add_to_cart", "remove_from_cart", "purchase", "return", "rec_impression",
               "rec_click"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    summary = generate_shop(str(root), **SHOP)
    return root, summary


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    root = tmp_path_factory.mktemp("dirty")
    summary = generate_shop(str(root), **SHOP, defect_rate=0.05)
    return root, summary


def _part(root: Path, dataset: str, ds: str) -> pa.Table:
    return pq.read_table(root / dataset / f"dt={ds}" / "part-00000.parquet")


def _events(root: Path) -> pd.DataFrame:
    frames = []
    for ds in DATES:
        df = _part(root, "raw/events", ds).to_pandas()
        df["dt"] = ds
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _truth(root: Path, name: str) -> pd.DataFrame:
    return pq.read_table(root / "truth" / name / "part-00000.parquet").to_pandas()


def _defects(root: Path) -> pd.DataFrame:
    return pd.concat([_part(root, "truth/defects", ds).to_pandas() for ds in DATES], ignore_index=True)


def _person_of(root: Path) -> pd.Series:
    ids = _truth(root, "identities")
    return ids.set_index(ids.id_type + ":" + ids.id).person


def test_same_arguments_give_byte_identical_files(clean, tmp_path):
    root, _ = clean
    generate_shop(str(tmp_path), **SHOP)
    first = {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}
    second = {p.relative_to(tmp_path): p.read_bytes() for p in sorted(tmp_path.rglob("*.parquet"))}
    assert len(first) == 4 * DAYS + 3
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_every_file_has_its_contract_schema(dirty):
    root, _ = dirty
    for ds in DATES:
        for dataset in ("events", "catalog", "profiles"):
            assert _part(root, "raw/" + dataset, ds).schema.equals(schemas.load(dataset).arrow()), (dataset, ds)
        assert _part(root, "truth/defects", ds).schema.equals(TRUTH_SCHEMAS["defects"])
    for name in ("identities", "shared_devices", "persons"):
        assert pq.read_table(root / "truth" / name / "part-00000.parquet").schema.equals(TRUTH_SCHEMAS[name])


def test_clean_shop_has_no_bad_rows(clean):
    root, summary = clean
    ev = _events(root)
    assert len(_defects(root)) == 0 and summary["defects_total"] == 0
    assert len(ev) == summary["events_total"] > 1000
    for name in schemas.load("events").required:
        assert ev[name].notna().all(), name
    assert ev.event_id.is_unique
    assert set(ev.event_type) <= set(schemas.load("events").field("event_type").enum)
    assert set(ev.device_type) == set(schemas.load("events").field("device_type").enum)
    items = ev[ev.event_type.isin(ITEM_EVENTS)]
    assert items.item_id.notna().all()
    assert ev.loc[ev.event_type == "category_view", "category_id"].notna().all()
    assert ev.loc[ev.event_type == "search", "query"].notna().all()
    money = ev[ev.event_type.isin(["purchase", "return"])]
    assert len(money) > 0 and (money.price > 0).all() and money.order_id.notna().all()
    counted = ev[ev.event_type.isin(["add_to_cart", "purchase", "return"])]
    assert (counted.quantity > 0).all()
    logins = ev[ev.event_type == "login"]
    assert logins.user_id.notna().all() and logins.email_hash.str.fullmatch("[0-9a-f]{64}").all()
    recs = ev[ev.event_type.isin(["rec_impression", "rec_click"])]
    assert len(recs) > 0 and (recs.experiment_id == "exp-home-1").all()
    assert set(recs.variant) == {"control", "treatment"}
    assert ev.loc[~ev.event_type.isin(["rec_impression", "rec_click"]), "experiment_id"].isna().all()


def test_good_events_fall_on_their_day_and_sessions_do_not_cross_midnight(dirty):
    root, _ = dirty
    ev = _events(root)
    good = ev[~ev.event_id.isin(_defects(root).event_id)]
    day = good.event_time.dt.strftime("%Y-%m-%d")
    assert (day == good.dt).all()
    assert good.groupby("session_id").dt.nunique().max() == 1


def test_good_item_events_reference_that_days_catalog_and_its_price(dirty):
    root, _ = dirty
    ev = _events(root)
    good = ev[~ev.event_id.isin(_defects(root).event_id)]
    for ds in DATES:
        cat = _part(root, "raw/catalog", ds).to_pandas().set_index("item_id")
        day = good[(good.dt == ds) & good.event_type.isin(ITEM_EVENTS)]
        assert day.item_id.isin(cat.index).all(), ds
        bought = day[day.event_type == "purchase"]
        assert np.allclose(bought.price.to_numpy(), cat.price.loc[bought.item_id].to_numpy()), ds
        carted = day[day.event_type.isin(["add_to_cart", "purchase"])]
        assert cat.is_available.loc[carted.item_id].all(), ds


def test_catalog_grows_keeps_items_and_has_a_3_level_tree(clean):
    root, summary = clean
    first = _part(root, "raw/catalog", DATES[0]).to_pandas()
    last = _part(root, "raw/catalog", DATES[-1]).to_pandas()
    assert set(first.item_id) < set(last.item_id) and len(last) == 100
    assert summary["catalog_items_first_day"] == len(first) < 100
    assert last.category_path.str.count(" > ").eq(2).all()
    assert last.category_path.str.split(" > ").str[0].nunique() == 6
    assert (last.price > 0).all() and last.margin_rate.between(0.1, 0.6).all() and (last.currency == "EUR").all()
    assert (last.loc[~last.is_available, "stock_qty"] == 0).all()
    start = pd.Timestamp(START, tz="UTC")
    for ds in DATES:  # an item is listed from the day it was created on
        cat = _part(root, "raw/catalog", ds).to_pandas()
        assert (cat.created_at < pd.Timestamp(ds, tz="UTC") + pd.Timedelta(days=1)).all()
    assert (last.created_at >= start).sum() == len(last) - len(first)


def test_defects_are_planted_of_every_kind_and_really_bad(dirty, clean):
    root, summary = dirty
    ev = _events(root)
    defects = _defects(root)
    assert set(defects.defect) == set(DEFECT_KINDS)
    assert len(defects) == summary["defects_total"] == pytest.approx(0.05 * summary["good_events_total"], abs=DAYS)
    catalog_items = set(_part(root, "raw/catalog", DATES[-1]).column("item_id").to_pylist())
    enum = set(schemas.load("events").field("event_type").enum)
    required = schemas.load("events").required
    dup_ids = set(defects.loc[defects.defect == "duplicate_event_id", "event_id"])
    for kind, ids in defects.groupby("defect").event_id:
        rows = ev[ev.event_id.isin(ids)]
        if kind == "null_required":
            assert rows[required].isna().any(axis=1).all() and rows.event_id.notna().all()
        elif kind == "unknown_event_type":
            assert (~rows.event_type.isin(enum)).all()
        elif kind == "bad_price":
            assert rows.event_type.isin(["purchase", "return"]).all() and (rows.price <= 0).all()
        elif kind == "bad_quantity":
            assert (rows.quantity <= 0).all()
        elif kind == "duplicate_event_id":
            assert (rows.groupby("event_id").size() == 2).all()
            assert len(rows.drop_duplicates()) == len(ids)  # exact copies
        elif kind == "outside_day":
            day_start = pd.to_datetime(rows.dt).dt.tz_localize("UTC")
            off = (rows.event_time - day_start) / pd.Timedelta(hours=1)
            assert ((off <= -12) | (off >= 36)).all()  # >= 12 h outside its day
        elif kind == "unknown_item":
            assert (~rows.item_id.isin(catalog_items)).all()
    # with the bad rows (and one copy of each duplicate) removed, the events are exactly the clean shop's
    bad_ids = set(defects.event_id) - dup_ids
    good = ev[~ev.event_id.isin(bad_ids)].drop(columns="dt").drop_duplicates()
    clean_ev = _events(clean[0]).drop(columns="dt")
    cols = list(clean_ev.columns)
    assert len(good) == len(clean_ev)
    assert good.sort_values("event_id")[cols].reset_index(drop=True).equals(
        clean_ev.sort_values("event_id")[cols].reset_index(drop=True))


def test_truth_covers_every_id_in_the_events_except_shared_devices(clean):
    root, _ = clean
    ev = _events(root)
    ids = _truth(root, "identities")
    shared = _truth(root, "shared_devices")
    assert set(shared.kind) == {"household", "kiosk"}
    assert not set(shared.anonymous_id) & set(ids.id)
    users = set(ids.loc[ids.id_type == "user_id", "id"])
    anons = set(ids.loc[ids.id_type == "anonymous_id", "id"])
    assert set(ev.user_id.dropna()) == users
    assert set(ev.anonymous_id) == anons | set(shared.anonymous_id)
    assert set(ids.person) <= set(_truth(root, "persons").person)


def test_registered_devices_all_log_in_and_guests_stay_on_one_device(clean):
    root, _ = clean
    ev = _events(root)
    person_of = _person_of(root)
    persons = _truth(root, "persons").set_index("person")
    ev["person"] = ("anonymous_id:" + ev.anonymous_id).map(person_of)
    personal = ev[ev.person.notna()]
    registered = personal[persons.is_registered.loc[personal.person].to_numpy()]
    logged_in_on = set(registered.loc[registered.event_type == "login", "anonymous_id"])
    assert set(registered.anonymous_id) == logged_in_on
    # a device's user_ids belong to the device's own person
    with_user = personal[personal.user_id.notna()]
    assert (("user_id:" + with_user.user_id).map(person_of) == with_user.person).all()
    guests = personal[~persons.is_registered.loc[personal.person].to_numpy()]
    assert len(guests) > 0 and guests.user_id.isna().all() and (guests.event_type != "login").all()
    assert guests.groupby("person").anonymous_id.nunique().max() == 1


def test_shared_devices_are_used_by_several_accounts(clean):
    root, _ = clean
    ev = _events(root)
    person_of = _person_of(root)
    shared = _truth(root, "shared_devices").set_index("anonymous_id")
    logins = ev[ev.event_type == "login"]
    by_device = logins.groupby("anonymous_id").user_id.agg(lambda u: set(("user_id:" + u).map(person_of)))
    for anon, row in shared.iterrows():
        assert len(by_device[anon]) == row.n_persons, (anon, row.kind)
    kiosk = shared[shared.kind == "kiosk"]
    assert len(kiosk) == 1 and (kiosk.n_persons > 20).all()  # over identity.hub_max_accounts
    assert (shared.loc[shared.kind == "household", "n_persons"] == 2).all()


def test_one_email_hash_per_person_even_with_two_accounts(clean):
    root, _ = clean
    ids = _truth(root, "identities")
    accounts_per_person = ids[ids.id_type == "user_id"].groupby("person").size()
    assert (accounts_per_person == 2).any() and accounts_per_person.max() == 2
    logins = _events(root).query("event_type == 'login'")
    person = ("user_id:" + logins.user_id).map(_person_of(root))
    assert logins.groupby(person).email_hash.nunique().max() == 1
    assert person.groupby(logins.email_hash).nunique().max() == 1
    two = accounts_per_person[accounts_per_person == 2].index
    assert logins[person.isin(two)].groupby(person).user_id.nunique().max() == 2


def test_profiles_cover_some_accounts_once_each(clean):
    root, summary = clean
    profiles = pd.concat([_part(root, "raw/profiles", ds).to_pandas() for ds in DATES], ignore_index=True)
    ids = _truth(root, "identities")
    accounts = ids[ids.id_type == "user_id"]
    assert profiles.user_id.is_unique and len(profiles) == summary["profiles_total"]
    assert set(profiles.user_id) <= set(accounts.id)
    assert 0.25 < len(profiles) / summary["accounts"] < 0.55
    first_day = _part(root, "raw/profiles", DATES[0]).to_pandas()
    assert (first_day.signup_time < pd.Timestamp(START, tz="UTC")).all()
    later = profiles[profiles.signup_time >= pd.Timestamp(START, tz="UTC")]
    assert profiles.declared_categories.map(len).min() >= 1
    assert len(later) + len(first_day) == len(profiles)


def test_returns_refer_to_earlier_purchases_at_the_price_paid(tmp_path):
    generate_shop(str(tmp_path), start=START, days=20, users=200, items=100, seed=3)
    ev = pd.concat([pq.read_table(p).to_pandas() for p in sorted((tmp_path / "raw/events").rglob("*.parquet"))])
    bought = ev[ev.event_type == "purchase"].set_index(["order_id", "item_id"])
    returned = ev[ev.event_type == "return"]
    assert len(returned) > 0
    original = bought.loc[list(zip(returned.order_id, returned.item_id))]
    assert (original.event_time.dt.floor("D").to_numpy() + pd.Timedelta(days=2) <=
            returned.event_time.dt.floor("D").to_numpy()).all()
    assert np.allclose(original.price.to_numpy(), returned.price.to_numpy())
    assert (original.anonymous_id.to_numpy() == returned.anonymous_id.to_numpy()).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"start": "2026-13-01"}, "start must be a date"),
    ({"days": 0}, "days must be an integer >= 1"),
    ({"users": 5}, "users must be an integer >= 20"),
    ({"defect_rate": 0.9}, "defect_rate must be between 0 and 0.5"),
])
def test_bad_arguments_name_the_argument(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_shop(str(tmp_path), **{**SHOP, **kwargs})
    assert not any(tmp_path.iterdir())


def test_gaps__rows_stay_valid_and_only_the_planted_thing_changes(clean, tmp_path):
    """`gaps` (for `recs assess`): the same shop with all three planted, day by day against the clean one."""
    summary = generate_shop(str(tmp_path), **SHOP, gaps=("views_stop", "brands_fade", "fragmented_ids"))
    assert summary["gaps"] == ["views_stop", "brands_fade", "fragmented_ids"]
    clean_root = clean[0]
    for d, ds in enumerate(DATES):
        ev = pq.read_table(tmp_path / f"raw/events/dt={ds}/part-00000.parquet").to_pandas()
        base = pq.read_table(Path(clean_root) / f"raw/events/dt={ds}/part-00000.parquet").to_pandas()
        ios_views = (ev.event_type == "product_view") & (ev.device_type == "ios")
        assert ios_views.any() == (d < DAYS // 2)  # the ios app stops sending views halfway
        kept = base[~((base.event_type == "product_view") & (base.device_type == "ios") & (d >= DAYS // 2))]
        assert list(ev.event_id) == list(kept.event_id)
        assert (ev.anonymous_id == "f" + ev.session_id).all()  # a new anonymous id every session
        cat = pq.read_table(tmp_path / f"raw/catalog/dt={ds}/part-00000.parquet").to_pandas()
        assert cat.brand.isna().any() == (d >= DAYS // 2)
    with pytest.raises(ValueError, match="unknown planted gap"):
        generate_shop(str(tmp_path / "x"), **SHOP, gaps=("no_such_gap",))


def test_a_shop_too_small_for_an_order_on_some_day_still_generates(tmp_path):
    from jobs.shop import generate_shop

    summary = generate_shop(str(tmp_path), start="2026-08-01", days=5, users=50, items=40, defect_rate=0.0)
    assert summary["good_events_total"] > 0
    assert len(list((tmp_path / "raw" / "events").glob("dt=*"))) == 5
