"""A synthetic shop in the contract layout, with the ground truth that the pipeline is scored against.

`generate_shop` writes, day by day, the raw inputs a storefront would hand over (events, daily catalog
snapshots, onboarding profiles) plus `truth/`: which person is behind every id, which devices are shared,
each person's real tastes, and every bad row it planted. It is seeded and deterministic: the same arguments
give byte-identical files.

How the shop behaves (each choice gives a later stage something to find):

* Catalog: a 3-level category tree, brands, lognormal prices per leaf, Zipf(1.0) popularity inside each leaf,
  ~15% of items listed during the period, items going out of stock and coming back, a few that never sell.
* People: tastes are a Dirichlet mix over 1-3 top-level categories and a few of their leaves, two favourite
  brands and a price band. A session browses one leaf (15% of them one drawn from global popularity) and
  picks items by popularity x brand fit x price fit, so matrix factorization can beat popularity.
* Identity: guests have one device and never log in; registered people browse anonymously on each of their
  1-3 devices until a login (a `login` event with `email_hash`), after which that device carries their
  `user_id`. Some people have two accounts with one email, some devices are shared by a household, and a
  few kiosks are used by hundreds of accounts.
* Defects (`defect_rate`): extra bad rows drawn from a separate random stream, so the good rows are the same
  whatever the rate: `truth/defects` lists each one.
"""
from __future__ import annotations

import datetime as dt
import logging
import resource
import sys
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import schemas
from jobs.shop.arrays import DAY_US, STRING, hex_strings, probs, rng_for, take
from jobs.shop.catalog import Catalog, Market, build_catalog, catalog_snapshot
from jobs.shop.defects import DEFECT_KINDS, plant_defects
from jobs.shop.identities import DEVICE_TYPES, Identity, build_identity
from jobs.shop.knobs import (BRAND_FIT, CART_P, CATEGORY_VIEW_P, CONVERT_P, COUNTRIES, ENTRY_SOURCES,
                             EXPLORE_SHARE, HOURLY_TRAFFIC, LOGIN_MID_SESSION_P, PRICE_BAND_SIGMA,
                             PRICE_FIT_FLOOR, REAUTH_P, REC_BLOCK_P, REC_CLICK_P, REC_SLOTS, REMOVE_P_ABANDONED,
                             REMOVE_P_CONVERTED, RETURN_DAYS, RETURN_P, SEARCH_P, UNAVAILABLE_VIEW_FACTOR,
                             VIEWS_GEOMETRIC_P)
from jobs.shop.people import People, build_people, profiles
from jobs.shop.truth import TRUTH_SCHEMAS, write_truth
from jobs.storage import io
from jobs.storage.layout import Layout

__all__ = ["DEFECT_KINDS", "TRUTH_SCHEMAS", "generate_shop"]

log = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = schemas.load("events").field("event_type").enum
_ET = {name: code for code, name in enumerate(EVENT_TYPES)}
EXPERIMENT_ID = "exp-home-1"
VARIANTS = ("control", "treatment")


@dataclass
class _World:
    start: dt.date
    days: int
    catalog: Catalog
    people: People
    ident: Identity


def _pick_items(rng: np.random.Generator, world: _World, leaf: np.ndarray, person: np.ndarray,
                count: np.ndarray, day_weight: np.ndarray) -> np.ndarray:
    """`count[s]` items for each session `s`, from its leaf, by day weight x brand fit x price fit.

    Draws without replacement inside a session (Gumbel top-k), so a session views different items
    until its leaf runs out; returns the picks flat, session by session.
    """
    cat, ppl = world.catalog, world.people
    offsets = np.cumsum(count) - count
    out = np.empty(int(count.sum()), dtype=np.int64)
    order = np.argsort(leaf, kind="stable")
    bounds = np.flatnonzero(np.diff(leaf[order])) + 1
    for group in np.split(order, bounds):
        if group.size == 0:
            continue
        items = cat.leaf_items[leaf[group[0]]]
        w = day_weight[items]
        n_pickable = int((w > 0).sum())  # >= 1: the leaf's anchor is always listed and sells
        log_w = np.log(np.where(w > 0, w, 1.0)) - np.where(w > 0, 0.0, np.inf)
        brand, pz = cat.brand[items], cat.price_z[items]
        step = max(1, 2_000_000 // items.size)  # bounds the (sessions x items) matrices
        for lo in range(0, group.size, step):
            g = group[lo:lo + step]
            p = person[g]
            fav = (brand[None, :] == ppl.fav_brand[p, 0:1]) | (brand[None, :] == ppl.fav_brand[p, 1:2])
            price_fit = np.exp(-0.5 * ((pz[None, :] - ppl.price_offset[p, None]) / PRICE_BAND_SIGMA) ** 2)
            key = (log_w[None, :] + np.where(fav, np.log(BRAND_FIT), 0.0) + np.log(price_fit + PRICE_FIT_FLOOR)
                   + rng.gumbel(size=(g.size, items.size)))
            k = int(min(count[g].max(), n_pickable))
            top = np.argpartition(-key, k - 1, axis=1)[:, :k] if k < items.size else np.argsort(-key, axis=1)
            top = np.take_along_axis(top, np.argsort(-np.take_along_axis(key, top, axis=1), axis=1), axis=1)
            n = count[g]
            rows = np.repeat(np.arange(g.size), n)
            j = np.arange(rows.size) - np.repeat(np.cumsum(n) - n, n)
            out[np.repeat(offsets[g], n) + j] = items[top[rows, j % k]]  # past k: views repeat, in order
    return out


def _taste_leaves(rng: np.random.Generator, world: _World, person: np.ndarray) -> np.ndarray:
    """A leaf per person from their tastes, or (exploration) from global leaf popularity."""
    ppl, cat = world.people, world.catalog
    u = rng.random(person.size)
    idx = np.minimum((ppl.taste_cum[person] < u[:, None]).sum(axis=1), ppl.taste_n[person] - 1)
    leaf = ppl.taste_leaf[person, idx]
    explore = rng.random(person.size) < EXPLORE_SHARE
    leaf_cum = np.cumsum(cat.leaf_pop) / cat.leaf_pop.sum()
    leaf[explore] = np.minimum(np.searchsorted(leaf_cum, rng.random(int(explore.sum()))), cat.n_leaves - 1)
    return leaf


@dataclass
class _DayResult:
    events: pa.Table
    profiles: pa.Table
    n_sessions: int
    seen_devices: np.ndarray
    seen_accounts: np.ndarray


class _Pieces:
    """Event rows collected column by column before one sort by (session, step)."""
    COLS = ("sess", "step", "etype", "item", "qty", "price", "order", "query", "cat")

    def __init__(self):
        self.parts = {c: [] for c in self.COLS}

    def add(self, sess, step, etype, item=-1, qty=0, price=np.nan, order=-1, query=-1, cat=-1):
        n = np.asarray(sess).size
        if n == 0:
            return
        for c, v in zip(self.COLS, (sess, step, etype, item, qty, price, order, query, cat)):
            self.parts[c].append(np.broadcast_to(np.asarray(v), (n,)))

    def arrays(self) -> dict[str, np.ndarray]:
        dtypes = {"price": np.float64}
        return {c: (np.concatenate(v) if v else np.zeros(0)).astype(dtypes.get(c, np.int64))
                for c, v in self.parts.items()}


def _simulate_day(world: _World, market: Market, d: int, rng: np.random.Generator,
                  returns_due: dict | None, returns_later: dict[int, list[dict]]) -> _DayResult:
    cat, ppl, ident = world.catalog, world.people, world.ident
    start_us = _start_us(world.start)
    day_us = start_us + d * DAY_US
    pickable = (cat.first_day < d) | (cat.first_day == -1)
    day_weight = cat.popularity * pickable * np.where(market.available, 1.0, UNAVAILABLE_VIEW_FACTOR)
    global_cum = np.cumsum(day_weight)

    # --- sessions: Poisson per active person, on one of their devices; every login day gets a session.
    n_sess = rng.poisson(np.where(ppl.arrival <= d, ppl.activity, 0.0))
    sp = np.repeat(np.arange(n_sess.size), n_sess)
    u = rng.random(sp.size)
    slot = ident.slot_off[sp] + np.minimum((ident.slot_cum[sp] < u[:, None]).sum(axis=1), ident.slot_n[sp] - 1)
    due = np.flatnonzero(ident.slot_login_day == d)
    missing = due[np.bincount(slot, minlength=ident.slot_person.size)[due] == 0]
    slot = np.concatenate([slot, missing])
    sp = np.concatenate([sp, ident.slot_person[missing]])
    n_browse = sp.size
    pref = _session_starts(rng, n_browse)
    login_day = ident.slot_login_day[slot]
    order = np.lexsort((pref, slot))
    first = np.ones(n_browse, dtype=bool)
    first[order[1:]] = slot[order][1:] != slot[order][:-1]
    mode = np.where(d < login_day, 0, 1)          # 0 anonymous, 1 logged in, 2 login first, 3 login mid-session
    login_now = (login_day == d) & first
    mode[login_now] = np.where(rng.random(int(login_now.sum())) < LOGIN_MID_SESSION_P, 3, 2)
    device = ident.slot_device[slot]
    household = ident.device_kind[device] == 1
    mode[(mode == 1) & household] = 2              # on a shared device each person logs in every time
    mode[(mode == 1) & (rng.random(n_browse) < REAUTH_P)] = 2
    account = ident.slot_account[slot]

    # Kiosk sessions (log in first) and return "sessions" (one return event each).
    kiosk = np.flatnonzero(ident.kiosk_day == d)
    kp = ident.kiosk_person[kiosk]
    kiosk_account = ident.person_account[kp]
    ret = returns_due or {k: np.zeros(0, dtype=np.int64) for k in ("person", "device", "account", "item", "qty")}
    n_ret = ret["person"].size
    s_person = np.concatenate([sp, kp, ret["person"]])
    s_device = np.concatenate([device, ident.kiosk_device[kiosk], ret["device"]])
    s_account = np.concatenate([account, kiosk_account, ret["account"]])
    s_mode = np.concatenate([mode, np.full(kp.size, 2), np.where(ret["account"] >= 0, 1, 0)])
    s_pref = np.concatenate([pref, _session_starts(rng, kp.size + n_ret)])
    S = s_person.size
    n_shop = n_browse + kp.size  # sessions that browse (the rest are returns)
    entry_names, entry_p = probs(ENTRY_SOURCES)
    s_entry = rng.choice(len(entry_names), size=S, p=entry_p)
    s_entry[n_shop:] = entry_names.index("direct")

    pieces = _Pieces()
    shop = np.arange(n_shop)
    # --- product views, the heart of the signal
    n_views = np.minimum(rng.geometric(VIEWS_GEOMETRIC_P, n_shop), 30)
    s_leaf = _taste_leaves(rng, world, s_person[:n_shop])
    v_sess = np.repeat(shop, n_views)
    v_j = np.arange(v_sess.size) - np.repeat(np.cumsum(n_views) - n_views, n_views)
    v_item = _pick_items(rng, world, s_leaf, s_person[:n_shop], n_views, day_weight)

    # --- home-page recommendation block on some sessions (A/B test): a click opens the first product view
    rec = shop[(rng.random(n_shop) < REC_BLOCK_P) & (ident.device_kind[s_device[:n_shop]] != 2)]
    if rec.size:
        variant = ident.device_variant[s_device[rec]]
        r_sess = np.repeat(rec, REC_SLOTS)
        r_pos = np.tile(np.arange(REC_SLOTS), rec.size)
        treat = np.repeat(variant == 1, REC_SLOTS)
        r_item = np.empty(r_sess.size, dtype=np.int64)
        # control shows global best sellers, treatment items from the person's own tastes
        r_item[~treat] = np.minimum(np.searchsorted(global_cum, rng.random(int((~treat).sum())) * global_cum[-1],
                                                    side="right"), day_weight.size - 1)
        tp = s_person[r_sess[treat]]
        r_item[treat] = _pick_items(rng, world, _taste_leaves(rng, world, tp), tp, np.ones(tp.size, np.int64),
                                    day_weight)
        pieces.add(r_sess, 10 + r_pos, _ET["rec_impression"], item=r_item)
        click_p = np.where(variant == 1, REC_CLICK_P["treatment"], REC_CLICK_P["control"])
        clicked = rng.random(rec.size) < click_p
        click_pos = rng.integers(0, REC_SLOTS, rec.size)
        click_item = r_item.reshape(-1, REC_SLOTS)[np.arange(rec.size), click_pos]
        pieces.add(rec[clicked], 20, _ET["rec_click"], item=click_item[clicked])
        first_view = np.cumsum(n_views) - n_views
        v_item[first_view[rec[clicked]]] = click_item[clicked]

    # --- search or category page before the views
    kind = rng.random(n_shop)
    search = shop[kind < SEARCH_P]
    by_brand = rng.random(search.size) < 0.3
    q = np.where(by_brand, cat.n_leaves + ppl.fav_brand[s_person[search], 0], s_leaf[search])
    pieces.add(search, 50, _ET["search"], query=q)
    catview = shop[(kind >= SEARCH_P) & (kind < SEARCH_P + CATEGORY_VIEW_P)]
    pieces.add(catview, 50, _ET["category_view"], cat=s_leaf[catview])
    pieces.add(v_sess, 100 + 10 * v_j, _ET["product_view"], item=v_item)

    # --- cart and checkout: first view of an in-stock item may go to the cart; a session may convert
    key = v_sess * (len(cat.item_ids) + 1) + v_item
    _, first_idx = np.unique(key, return_index=True)
    is_first = np.zeros(v_sess.size, dtype=bool)
    is_first[first_idx] = True
    carted = np.flatnonzero(is_first & market.available[v_item] & (rng.random(v_sess.size) < CART_P))
    c_sess, c_item = v_sess[carted], v_item[carted]
    c_qty = rng.choice([1, 2, 3], size=carted.size, p=[0.85, 0.12, 0.03])
    pieces.add(c_sess, 100 + 10 * v_j[carted] + 1, _ET["add_to_cart"], item=c_item, qty=c_qty)
    converts = rng.random(n_shop) < CONVERT_P
    conv = converts[c_sess]
    removed = rng.random(carted.size) < np.where(conv, REMOVE_P_CONVERTED, REMOVE_P_ABANDONED)
    rk = np.arange(carted.size)
    pieces.add(c_sess[removed], 900 + rk[removed], _ET["remove_from_cart"], item=c_item[removed],
               qty=c_qty[removed])
    bought = conv & ~removed
    b_sess, b_item, b_qty = c_sess[bought], c_item[bought], c_qty[bought]
    order_sessions = np.unique(b_sess)
    new_orders = hex_strings(rng, order_sessions.size, 16, "o")
    b_order = np.searchsorted(order_sessions, b_sess)
    b_price = market.price[b_item]
    pieces.add(b_sess, 1000 + rk[bought], _ET["purchase"], item=b_item, qty=b_qty, price=b_price, order=b_order)

    # --- returns due today (their order ids are appended after today's new ones)
    ret_sess = np.arange(n_shop, S)
    if n_ret:
        pieces.add(ret_sess, 0, _ET["return"], item=ret["item"], qty=ret["qty"], price=ret["price"],
                   order=order_sessions.size + np.arange(n_ret))
    order_ids = pa.concat_arrays([new_orders, ret["order_id"]]) if n_ret else new_orders

    # --- logins
    login_first = np.flatnonzero(s_mode == 2)
    pieces.add(login_first, 0, _ET["login"])
    mid = np.flatnonzero(s_mode == 3)
    login_k = np.minimum(rng.integers(1, 3, mid.size), n_views[mid])
    login_step = np.full(S, -1)
    login_step[login_first] = 0
    login_step[mid] = 100 + 10 * login_k - 5
    pieces.add(mid, login_step[mid], _ET["login"])

    # --- order rows, then times: gaps inside a session, the whole session inside the day
    ev = pieces.arrays()
    o = np.lexsort((ev["step"], ev["sess"]))
    ev = {k: v[o] for k, v in ev.items()}
    n = ev["sess"].size
    sess = ev["sess"]
    starts_at = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1]]) if n else np.zeros(0, np.int64)
    gap = np.minimum(rng.lognormal(np.log(25.0), 0.9, n), 600.0)
    gap = (gap * 1_000_000).astype(np.int64)
    gap[starts_at] = 0
    cs = np.cumsum(gap)
    within = cs - np.repeat(cs[starts_at], np.diff(np.r_[starts_at, n]))
    duration = np.zeros(S, dtype=np.int64)
    duration[sess[starts_at]] = within[np.r_[starts_at[1:], n] - 1] if n else 0
    begin = np.clip(np.minimum(s_pref, DAY_US - 1 - duration), 0, None)
    t_us = day_us + begin[sess] + within

    # --- who: user_id from the login onwards (or the whole session when already logged in)
    m = s_mode[sess]
    logged = (m == 1) | (m == 2) | ((m == 3) & (ev["step"] >= login_step[sess]))
    user = np.where(logged, s_account[sess], -1)
    etype = ev["etype"]
    is_login = etype == _ET["login"]
    is_rec = (etype == _ET["rec_impression"]) | (etype == _ET["rec_click"])
    dev = s_device[sess]
    session_ids = hex_strings(rng, S, 16, "s")
    event_ids = hex_strings(rng, n, 32)
    item = ev["item"]
    qty = ev["qty"]
    price = ev["price"]
    countries = pa.array(list(COUNTRIES), STRING)
    cols = {
        "event_id": event_ids,
        "event_time": pa.array(t_us, pa.timestamp("us", tz="UTC")),
        "event_type": take(pa.array(EVENT_TYPES, STRING), etype),
        "anonymous_id": take(ident.device_ids, dev),
        "user_id": take(ident.account_ids, user),
        "session_id": take(session_ids, sess),
        "device_type": take(pa.array(DEVICE_TYPES, STRING), ident.device_type[dev]),
        "country": take(countries, ppl.country[s_person[sess]]),
        "entry_source": take(pa.array(entry_names, STRING), s_entry[sess]),
        "item_id": take(cat.item_ids, item),
        "category_id": take(cat.leaf_paths, ev["cat"]),
        "query": take(cat.queries, ev["query"]),
        "quantity": pa.array(qty.astype(np.int32), mask=qty <= 0),
        "price": pa.array(price, mask=np.isnan(price)),
        "order_id": take(order_ids, ev["order"]),
        "email_hash": take(ident.account_email_hash, np.where(is_login, user, -1)),
        "experiment_id": take(pa.array([EXPERIMENT_ID], STRING), np.where(is_rec, 0, -1)),
        "variant": take(pa.array(VARIANTS, STRING), np.where(is_rec, ident.device_variant[dev], -1)),
    }
    events = pa.table(cols, schema=schemas.load("events").arrow())
    by_time = np.lexsort((np.arange(n), t_us))
    events = events.take(pa.array(by_time))

    # --- returns of today's purchases, some days later
    b_rows = np.flatnonzero(etype == _ET["purchase"])
    later = b_rows[rng.random(b_rows.size) < RETURN_P]
    ret_day = d + rng.integers(RETURN_DAYS[0], RETURN_DAYS[1] + 1, later.size)
    keep = ret_day < world.days
    later, ret_day = later[keep], ret_day[keep]
    if later.size:
        bundle = {"person": s_person[sess[later]], "device": dev[later], "account": user[later],
                  "item": item[later], "qty": qty[later], "price": price[later],
                  "order_id": take(order_ids, ev["order"][later])}
        for rd in np.unique(ret_day).tolist():
            sel = ret_day == rd
            returns_later.setdefault(rd, []).append(
                {k: (v.filter(pa.array(sel)) if isinstance(v, pa.Array) else v[sel]) for k, v in bundle.items()})

    # --- profiles: accounts that sign up today (first login) or, on day 0, existed before the start
    signups = []
    if d == 0:
        signups.append(np.flatnonzero(ident.account_signup_day == -1))
    login_rows = np.flatnonzero(is_login)
    acc = np.unique(user[login_rows])
    t_first = np.full(acc.size, np.iinfo(np.int64).max)
    np.minimum.at(t_first, np.searchsorted(acc, user[login_rows]), t_us[login_rows])
    new_acc = ident.account_signup_day[acc] > world.days
    ident.account_signup_day[acc[new_acc]] = d
    ident.account_signup_us[acc[new_acc]] = t_first[new_acc]
    signups.append(acc[new_acc])
    signed = np.concatenate(signups)
    signed = np.sort(signed[ident.account_has_profile[signed]])
    day_profiles = profiles(rng, ppl, cat, take(ident.account_ids, signed), ident.account_person[signed],
                            ident.account_signup_us[signed])

    seen_devices = np.zeros(len(ident.device_ids), dtype=bool)
    seen_devices[dev] = True
    seen_accounts = np.zeros(len(ident.account_ids), dtype=bool)
    seen_accounts[user[user >= 0]] = True
    return _DayResult(events=events, profiles=day_profiles, n_sessions=S, seen_devices=seen_devices,
                      seen_accounts=seen_accounts)


def _session_starts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Preferred start (microseconds into the day), following the hourly traffic curve."""
    hour = rng.choice(24, size=n, p=HOURLY_TRAFFIC / HOURLY_TRAFFIC.sum())
    return hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, n)

# ----------------------------------------------------------------------------------------------------------
# the entry point


def _start_us(start: dt.date) -> int:
    return int(dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC).timestamp()) * 1_000_000


def _check_args(start: str, days: int, users: int, items: int, seed: int, defect_rate: float) -> dt.date:
    try:
        start_day = dt.date.fromisoformat(start)
    except (TypeError, ValueError):
        raise ValueError(f"generate_shop: start must be a date YYYY-MM-DD, got {start!r}") from None
    for name, value, low in (("days", days, 1), ("users", users, 20), ("items", items, 30), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"generate_shop: {name} must be an integer >= {low}, got {value!r}")
    if not 0.0 <= defect_rate <= 0.5:
        raise ValueError(f"generate_shop: defect_rate must be between 0 and 0.5, got {defect_rate!r}")
    return start_day


def generate_shop(data_root: str, *, start: str, days: int, users: int, items: int, seed: int = 1,
                  defect_rate: float = 0.0, progress: bool = False) -> dict:
    """Writes a synthetic shop's raw inputs and ground truth under `data_root`, one day at a time.

    Parameters
    ----------
    data_root : DATA_ROOT (local folder or fsspec URI). Partitions written here are replaced whole; other
        folders are left alone, so use a fresh root unless re-generating the same dates.
    start : first day, YYYY-MM-DD (UTC).
    days : number of days from `start`.
    users : number of people (registered or guests), >= 20.
    items : number of catalog items over the whole period, >= 30.
    seed : the same arguments give byte-identical files.
    defect_rate : bad rows added per good event each day (0 to 0.5), spread over `DEFECT_KINDS`.
    progress : print one line per day to stderr.

    Returns
    -------
    dict
        Summary: `events_per_day` {date: rows written incl. bad rows}, `events_total`, `good_events_total`,
        `events_by_type`, `defects` {kind: n}, `defects_total`, `sessions_total`, `catalog_items_first_day`,
        `catalog_items_last_day`, `profiles_total`, `persons`, `registered`, `accounts`, `devices`,
        `households`, `kiosks`, `seconds`, `peak_rss_mb`, and the arguments.

    Writes
    ------
    raw/events|catalog|profiles/dt=D/part-00000.parquet (contract schemas); truth/identities,
    truth/shared_devices, truth/persons (part-00000.parquet) and truth/defects/dt=D (`TRUTH_SCHEMAS`).
    """
    t0 = time.perf_counter()
    start_day = _check_args(start, days, users, items, seed, defect_rate)
    layout = Layout(data_root)
    start_us = _start_us(start_day)
    catalog = build_catalog(rng_for(seed, 1), items=items, days=days)
    people = build_people(rng_for(seed, 2), catalog, users=users, days=days)
    ident = build_identity(rng_for(seed, 3), people, days=days, start_us=start_us)
    world = _World(start=start_day, days=days, catalog=catalog, people=people, ident=ident)
    market = Market.opening(rng_for(seed, 4), catalog)
    item_id_width = max(6, len(str(items)))

    seen_devices = np.zeros(len(ident.device_ids), dtype=bool)
    seen_accounts = np.zeros(len(ident.account_ids), dtype=bool)
    returns_later: dict[int, list[dict]] = {}
    summary = {"start": start_day.isoformat(), "days": days, "users": users, "items": items, "seed": seed,
               "defect_rate": defect_rate, "events_per_day": {}, "events_total": 0, "good_events_total": 0,
               "events_by_type": dict.fromkeys(EVENT_TYPES, 0), "defects": dict.fromkeys(DEFECT_KINDS, 0),
               "defects_total": 0, "sessions_total": 0, "profiles_total": 0}
    for d in range(days):
        day = start_day + dt.timedelta(days=d)
        ds = day.isoformat()
        market.step(rng_for(seed, 10, d), catalog, d)
        snapshot = catalog_snapshot(catalog, market, d, start_us)
        due = _merge_returns(returns_later.pop(d, []))
        res = _simulate_day(world, market, d, rng_for(seed, 11, d), due, returns_later)
        events, defects = plant_defects(res.events, rate=defect_rate, rng=rng_for(seed, 12, d), day=day,
                                        unknown_item_from=items + 1000, item_id_width=item_id_width)
        io.write_arrow_parquet(events, layout.raw("events", ds))
        io.write_arrow_parquet(snapshot, layout.raw("catalog", ds))
        io.write_arrow_parquet(res.profiles, layout.raw("profiles", ds))
        io.write_arrow_parquet(defects, f"{layout.truth('defects')}/dt={ds}")
        seen_devices |= res.seen_devices
        seen_accounts |= res.seen_accounts
        summary["events_per_day"][ds] = events.num_rows
        summary["events_total"] += events.num_rows
        summary["good_events_total"] += res.events.num_rows
        summary["sessions_total"] += res.n_sessions
        summary["profiles_total"] += res.profiles.num_rows
        counts = np.unique(np.asarray(res.events["event_type"].to_numpy(zero_copy_only=False), dtype=object),
                           return_counts=True)
        for name, c in zip(*counts):
            summary["events_by_type"][name] += int(c)
        for name in defects["defect"].to_pylist():
            summary["defects"][name] += 1
        summary["defects_total"] += defects.num_rows
        if d == 0:
            summary["catalog_items_first_day"] = snapshot.num_rows
        summary["catalog_items_last_day"] = snapshot.num_rows
        if progress:
            print(f"generate-shop {ds}: {events.num_rows} events ({defects.num_rows} bad), "
                  f"{snapshot.num_rows} items, {res.profiles.num_rows} profiles, "
                  f"{time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)

    write_truth(layout, people, ident, seen_devices, seen_accounts)
    summary.update(persons=users, registered=int(people.registered.sum()), accounts=len(ident.account_ids),
                   devices=len(ident.device_ids), households=len(ident.household_partners),
                   kiosks=int((ident.device_kind == 2).sum()),
                   seconds=round(time.perf_counter() - t0, 2),
                   peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    log.info("generate-shop: %s events over %s days in %.1fs", summary["events_total"], days, summary["seconds"])
    return summary


def _merge_returns(parts: list[dict]) -> dict | None:
    if not parts:
        return None
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "order_id"}
    out["order_id"] = pa.concat_arrays([p["order_id"] for p in parts])
    return out
