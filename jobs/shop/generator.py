"""`generate_shop`: a synthetic shop in the contract layout, written day by day, with its ground truth.

It writes the raw inputs a storefront would hand over (events, daily catalog snapshots, onboarding
profiles) plus `truth/`. It is seeded and deterministic: the same arguments give byte-identical files.
How the shop behaves is described in `jobs.shop`; each concern has its module (catalog, people,
identities, sessions, funnel, day, defects, truth), this one only runs them in order.
"""
from __future__ import annotations

import datetime as dt
import logging
import resource
import time

import numpy as np

from jobs.progress import track
from jobs.shop.arrays import rng_for
from jobs.shop.catalog import Market, build_catalog, catalog_snapshot, item_id_width
from jobs.shop.day import DayResult, World, merge_returns, simulate_day, start_us
from jobs.shop.defects import DEFECT_KINDS, plant_defects
from jobs.shop.funnel import EVENT_TYPES
from jobs.shop.gaps import check_gaps, plant_gaps
from jobs.shop.identities import KIOSK, build_identity
from jobs.shop.people import build_people
from jobs.shop.truth import TRUTH_SCHEMAS, write_truth
from jobs.storage import io
from jobs.storage.layout import Layout

__all__ = ["DEFECT_KINDS", "SHOP_FILE", "TRUTH_SCHEMAS", "build_world", "generate_shop", "market_through"]

SHOP_FILE = "shop.json"  # truth/shop.json: the arguments the shop's world is built from
log = logging.getLogger(__name__)

# Random stream ids, one per purpose, so that changing how one part draws leaves the others alone.
_CATALOG, _PEOPLE, _IDENTITY, _STOCK = 1, 2, 3, 4
_MARKET_DAY, _SESSIONS_DAY, _DEFECTS_DAY = 10, 11, 12


def generate_shop(data_root: str, *, start: str, days: int, users: int, items: int, seed: int = 1,
                  defect_rate: float = 0.0, gaps: tuple[str, ...] = ()) -> dict:
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
    gaps : readiness gaps to plant over the whole period (`jobs.shop.gaps.PLANTED_GAPS`), for `recs assess`.

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
    truth/shared_devices, truth/persons (part-00000.parquet) and truth/defects/dt=D (`TRUTH_SCHEMAS`);
    truth/shop.json (start, days, users, items, seed: what `build_world` needs).
    """
    t0 = time.perf_counter()
    start_day = _check_args(start, days, users, items, seed, defect_rate)
    gaps = check_gaps(gaps)
    layout = Layout(data_root)
    world = build_world(seed, start_day, days=days, users=users, items=items)
    market = Market.opening(rng_for(seed, _STOCK), world.catalog)
    ident = world.ident
    seen_devices = np.zeros(len(ident.device_ids), dtype=bool)
    seen_accounts = np.zeros(len(ident.account_ids), dtype=bool)
    returns_later: dict[int, list[dict]] = {}
    summary = {"start": start_day.isoformat(), "days": days, "users": users, "items": items, "seed": seed,
               "defect_rate": defect_rate, "gaps": list(gaps), **_zero_counts()}
    for d in track(range(days), "generate-shop", unit="days",
                   note=lambda d: (start_day + dt.timedelta(days=d)).isoformat()):
        day = start_day + dt.timedelta(days=d)
        ds = day.isoformat()
        market.step(rng_for(seed, _MARKET_DAY, d), world.catalog, d)
        snapshot = catalog_snapshot(world.catalog, market, d, start_us(start_day))
        res = simulate_day(world, market, d, rng_for(seed, _SESSIONS_DAY, d), merge_returns(returns_later.pop(d, [])),
                           returns_later)
        events, defects = plant_defects(res.events, rate=defect_rate, rng=rng_for(seed, _DEFECTS_DAY, d), day=day,
                                        unknown_item_from=items + 1000, item_id_width=item_id_width(items))
        if gaps:
            events, snapshot = plant_gaps(gaps, events, snapshot, d=d, days=days)
        _write_day(layout, ds, events=events, catalog=snapshot, profiles=res.profiles, defects=defects)
        seen_devices |= res.seen_devices
        seen_accounts |= res.seen_accounts
        _count_day(summary, ds, d, res, events, defects, snapshot.num_rows)

    write_truth(layout, world.people, ident, seen_devices, seen_accounts)
    # what the world is built from, so the storefront simulator can continue this shop (`build_world`)
    io.write_json(layout.truth(SHOP_FILE), {"start": start_day.isoformat(), "days": days, "users": users,
                                            "items": items, "seed": seed})
    summary.update(persons=users, registered=int(world.people.registered.sum()), accounts=len(ident.account_ids),
                   devices=len(ident.device_ids), households=len(ident.household_partners),
                   kiosks=int((ident.device_kind == KIOSK).sum()),
                   seconds=round(time.perf_counter() - t0, 2),
                   peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    log.info("generate-shop: %s events over %s days in %.1fs", summary["events_total"], days, summary["seconds"])
    return summary


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


def build_world(seed: int, start_day: dt.date, *, days: int, users: int, items: int) -> World:
    """Everything fixed for the period: the catalog, the people and whose ids are whose. The same arguments give
    the same world, so the storefront simulator rebuilds it from `truth/shop.json`."""
    catalog = build_catalog(rng_for(seed, _CATALOG), items=items, days=days)
    people = build_people(rng_for(seed, _PEOPLE), catalog, users=users, days=days)
    ident = build_identity(rng_for(seed, _IDENTITY), people, days=days, start_us=start_us(start_day))
    return World(start=start_day, days=days, catalog=catalog, people=people, ident=ident)


def market_through(world: World, seed: int, last_day: int) -> Market:
    """The catalog's prices and stock on day `last_day` (an index from the start, past the period too), replayed
    from the same random streams the generator used, so a continuation of the shop sees the same market."""
    market = Market.opening(rng_for(seed, _STOCK), world.catalog)
    for d in range(last_day + 1):
        market.step(rng_for(seed, _MARKET_DAY, d), world.catalog, d)
    return market


def _write_day(layout: Layout, ds: str, *, events, catalog, profiles, defects) -> None:
    io.write_arrow_parquet(events, layout.raw("events", ds))
    io.write_arrow_parquet(catalog, layout.raw("catalog", ds))
    io.write_arrow_parquet(profiles, layout.raw("profiles", ds))
    io.write_arrow_parquet(defects, f"{layout.truth('defects')}/dt={ds}")


def _zero_counts() -> dict:
    return {"events_per_day": {}, "events_total": 0, "good_events_total": 0,
            "events_by_type": dict.fromkeys(EVENT_TYPES, 0), "defects": dict.fromkeys(DEFECT_KINDS, 0),
            "defects_total": 0, "sessions_total": 0, "profiles_total": 0}


def _count_day(summary: dict, ds: str, d: int, res: DayResult, events, defects, n_items: int) -> None:
    """Adds one day's counts to the summary (`events` and `defects` include the bad rows)."""
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
        summary["catalog_items_first_day"] = n_items
    summary["catalog_items_last_day"] = n_items
