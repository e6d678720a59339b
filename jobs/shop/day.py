"""One simulated day: the sessions and their events, given times and ids, as the day's events file; the
purchases that will come back as returns on later days; the profiles of the accounts that sign up today."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import schemas
from jobs.shop.arrays import DAY_US, STRING, hex_strings, take
from jobs.shop.catalog import Catalog, Market
from jobs.shop.funnel import ET, EVENT_TYPES, IMPRESSION_STEP, session_events
from jobs.shop.identities import DEVICE_TYPES, Identity
from jobs.shop.knobs import COUNTRIES, RETURN_DAYS, RETURN_P, UNAVAILABLE_VIEW_FACTOR
from jobs.shop.people import People, profiles
from jobs.shop.sessions import LOGGED_IN, LOGIN_FIRST, LOGIN_MID, Sessions, day_sessions

EXPERIMENT_ID = "exp-home-1"
VARIANTS = ("control", "treatment")


@dataclass
class World:
    """Everything fixed for the whole period (the identity's signup days fill in as accounts sign up)."""
    start: dt.date
    days: int
    catalog: Catalog
    people: People
    ident: Identity


@dataclass
class DayResult:
    events: pa.Table
    profiles: pa.Table
    n_sessions: int
    seen_devices: np.ndarray
    seen_accounts: np.ndarray


def start_us(start: dt.date) -> int:
    """Microseconds since the epoch at midnight UTC starting `start`."""
    return int(dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC).timestamp()) * 1_000_000


def simulate_day(world: World, market: Market, d: int, rng: np.random.Generator,
                 returns_due: dict | None, returns_later: dict[int, list[dict]]) -> DayResult:
    """Day `d`'s good events and new profiles; the returns of today's purchases are added to `returns_later`
    under the day they are due."""
    cat, ppl, ident = world.catalog, world.people, world.ident
    day_us = start_us(world.start) + d * DAY_US
    pickable = (cat.first_day < d) | (cat.first_day == -1)
    day_weight = cat.popularity * pickable * np.where(market.available, 1.0, UNAVAILABLE_VIEW_FACTOR)

    s = day_sessions(rng, ppl, ident, d, returns_due)
    ev, order_ids, login_step = session_events(rng, cat, ppl, ident, market, s, day_weight)
    t_us = event_times(rng, ev["sess"], s, day_us)
    m = s.mode[ev["sess"]]
    # who: user_id from the login onwards (or the whole session when already logged in)
    logged = (m == LOGGED_IN) | (m == LOGIN_FIRST) | ((m == LOGIN_MID) & (ev["step"] >= login_step[ev["sess"]]))
    user = np.where(logged, s.account[ev["sess"]], -1)
    events = _generated_events(rng, world, s, ev, user, t_us, order_ids)
    _schedule_returns(rng, world, d, s, ev, user, order_ids, returns_later)
    day_profiles = _signup_profiles(rng, world, d, ev, user, t_us)

    seen_devices = np.zeros(len(ident.device_ids), dtype=bool)
    seen_devices[s.device[ev["sess"]]] = True
    seen_accounts = np.zeros(len(ident.account_ids), dtype=bool)
    seen_accounts[user[user >= 0]] = True
    return DayResult(events=events, profiles=day_profiles, n_sessions=s.size, seen_devices=seen_devices,
                     seen_accounts=seen_accounts)


def event_times(rng: np.random.Generator, sess: np.ndarray, s: Sessions, day_us: int) -> np.ndarray:
    """Event times: lognormal gaps inside a session, the whole session inside the day."""
    n = sess.size
    starts_at = np.flatnonzero(np.r_[True, sess[1:] != sess[:-1]]) if n else np.zeros(0, np.int64)
    gap = np.minimum(rng.lognormal(np.log(25.0), 0.9, n), 600.0)
    gap = (gap * 1_000_000).astype(np.int64)
    gap[starts_at] = 0
    cs = np.cumsum(gap)
    within = cs - np.repeat(cs[starts_at], np.diff(np.r_[starts_at, n]))
    duration = np.zeros(s.size, dtype=np.int64)
    duration[sess[starts_at]] = within[np.r_[starts_at[1:], n] - 1] if n else 0
    begin = np.clip(np.minimum(s.preferred_start, DAY_US - 1 - duration), 0, None)
    return day_us + begin[sess] + within


def events_table(world: World, s: Sessions, ev: dict[str, np.ndarray], user: np.ndarray, t_us: np.ndarray, *,
                 event_ids: pa.Array, session_ids: pa.Array, order_ids: pa.Array, experiment_id: pa.Array,
                 variant: pa.Array) -> pa.Table:
    """The day's events in the contract schema, ordered by time. Shared by the generator and the storefront
    simulator (whose `Population` has the same catalog, people and ident); they differ only in the ids they draw
    and in how list rows get their experiment and variant, which the caller gives per event."""
    cat, ppl, ident = world.catalog, world.people, world.ident
    sess, etype, qty, price = ev["sess"], ev["etype"], ev["qty"], ev["price"]
    n = sess.size
    dev = s.device[sess]
    cols = {
        "event_id": event_ids,
        "event_time": pa.array(t_us, pa.timestamp("us", tz="UTC")),
        "event_type": take(pa.array(EVENT_TYPES, STRING), etype),
        "anonymous_id": take(ident.device_ids, dev),
        "user_id": take(ident.account_ids, user),
        "session_id": take(session_ids, sess),
        "device_type": take(pa.array(DEVICE_TYPES, STRING), ident.device_type[dev]),
        "country": take(pa.array(list(COUNTRIES), STRING), ppl.country[s.person[sess]]),
        "entry_source": take(pa.array(s.entry_names, STRING), s.entry[sess]),
        "item_id": take(cat.item_ids, ev["item"]),
        "category_id": take(cat.leaf_paths, ev["cat"]),
        "query": take(cat.queries, ev["query"]),
        "quantity": pa.array(qty.astype(np.int32), mask=qty <= 0),
        "price": pa.array(price, mask=np.isnan(price)),
        "order_id": take(order_ids, ev["order"]),
        "email_hash": take(ident.account_email_hash, np.where(etype == ET["login"], user, -1)),
        "experiment_id": experiment_id,
        "variant": variant,
        # a list's slots are steps IMPRESSION_STEP, IMPRESSION_STEP + 1, ...; position 1 is shown first
        "position": pa.array((ev["step"] - IMPRESSION_STEP + 1).astype(np.int32),
                             mask=etype != ET["rec_impression"]),
    }
    events = pa.table(cols, schema=schemas.load("events").arrow())
    return events.take(pa.array(np.lexsort((np.arange(n), t_us))))


def _generated_events(rng: np.random.Generator, world: World, s: Sessions, ev: dict[str, np.ndarray],
                      user: np.ndarray, t_us: np.ndarray, order_ids: pa.Array) -> pa.Table:
    """The generated day's events, with fresh session and event ids; list rows are in the shop's one experiment,
    in the variant of their device."""
    etype = ev["etype"]
    is_rec = (etype == ET["rec_impression"]) | (etype == ET["rec_click"])
    dev = s.device[ev["sess"]]
    session_ids = hex_strings(rng, s.size, 16, "s")
    event_ids = hex_strings(rng, ev["sess"].size, 32)
    return events_table(
        world, s, ev, user, t_us, event_ids=event_ids, session_ids=session_ids, order_ids=order_ids,
        experiment_id=take(pa.array([EXPERIMENT_ID], STRING), np.where(is_rec, 0, -1)),
        variant=take(pa.array(VARIANTS, STRING), np.where(is_rec, world.ident.device_variant[dev], -1)))


def _schedule_returns(rng: np.random.Generator, world: World, d: int, s: Sessions, ev: dict[str, np.ndarray],
                      user: np.ndarray, order_ids: pa.Array, returns_later: dict[int, list[dict]]) -> None:
    """Some of today's purchases come back 2-21 days later (within the period), on the same device and
    account, at the price paid: each due day gets a returns bundle (see `merge_returns`)."""
    sess = ev["sess"]
    b_rows = np.flatnonzero(ev["etype"] == ET["purchase"])
    later = b_rows[rng.random(b_rows.size) < RETURN_P]
    ret_day = d + rng.integers(RETURN_DAYS[0], RETURN_DAYS[1] + 1, later.size)
    keep = ret_day < world.days
    later, ret_day = later[keep], ret_day[keep]
    if not later.size:
        return
    bundle = {"person": s.person[sess[later]], "device": s.device[sess[later]], "account": user[later],
              "item": ev["item"][later], "qty": ev["qty"][later], "price": ev["price"][later],
              "order_id": take(order_ids, ev["order"][later])}
    for rd in np.unique(ret_day).tolist():
        sel = ret_day == rd
        returns_later.setdefault(rd, []).append(
            {k: (v.filter(pa.array(sel)) if isinstance(v, pa.Array) else v[sel]) for k, v in bundle.items()})


def merge_returns(parts: list[dict]) -> dict | None:
    """One returns bundle from those scheduled for the same day on earlier days; None when there are none."""
    if not parts:
        return None
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "order_id"}
    out["order_id"] = pa.concat_arrays([p["order_id"] for p in parts])
    return out


def _signup_profiles(rng: np.random.Generator, world: World, d: int, ev: dict[str, np.ndarray], user: np.ndarray,
                     t_us: np.ndarray) -> pa.Table:
    """Profiles of the accounts that sign up today (at their first login) or, on day 0, existed before the
    start; records each new account's signup day and time in the identity."""
    ident = world.ident
    signups = []
    if d == 0:
        signups.append(np.flatnonzero(ident.account_signup_day == -1))
    login_rows = np.flatnonzero(ev["etype"] == ET["login"])
    acc = np.unique(user[login_rows])
    t_first = np.full(acc.size, np.iinfo(np.int64).max)
    np.minimum.at(t_first, np.searchsorted(acc, user[login_rows]), t_us[login_rows])
    new_acc = ident.account_signup_day[acc] > world.days
    ident.account_signup_day[acc[new_acc]] = d
    ident.account_signup_us[acc[new_acc]] = t_first[new_acc]
    signups.append(acc[new_acc])
    signed = np.concatenate(signups)
    signed = np.sort(signed[ident.account_has_profile[signed]])
    return profiles(rng, world.people, world.catalog, take(ident.account_ids, signed), ident.account_person[signed],
                    ident.account_signup_us[signed])
