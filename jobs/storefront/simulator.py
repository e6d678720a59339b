"""`simulate_storefront`: simulated days of a generated shop whose home page shows the PUBLISHED lists.

Each day, in order: the day's population (`population`), the sessions (each active shopper a Poisson number on
one of their devices; returns due today), the organic browsing of the generator's funnel, then the storefront:
for a `rec_share` of the browsing sessions it looks the shopper up in the live key-value version through the
same `Lookup` the service uses (by user_id when logged in, else anonymous_id, with country and device type),
shows the first `slots` items and logs them as `rec_impression` (experiment id, the answer's `variant`,
`position`); the shopper clicks, carts, buys and returns by `behaviour`. Events, catalog and profiles are written
as the day's raw feed; the truth of every exposure goes under `truth/storefront/` (`truth`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from jobs.config import RecsConfig
from jobs.progress import track
from jobs.shop.arrays import DAY_US, STRING, hex_strings, probs, rng_for, take
from jobs.shop.catalog import catalog_snapshot
from jobs.shop.day import event_times, events_table, start_us
from jobs.shop.funnel import ET, IMPRESSION_STEP, session_events
from jobs.shop.identities import DEVICE_TYPES, HOUSEHOLD
from jobs.shop.knobs import COUNTRIES, ENTRY_SOURCES, RETURN_DAYS, RETURN_P
from jobs.shop.people import profiles
from jobs.shop.sessions import ANONYMOUS, LOGGED_IN, LOGIN_FIRST, Sessions, session_starts
from jobs.storage import io
from jobs.storage.layout import Layout
from jobs.storefront import truth
from jobs.storefront.behaviour import QUANTITIES, QUANTITY_P, Behaviour, probabilities, true_utility
from jobs.storefront.population import SIM_DAY, Arrivals, Population, population_on

log = logging.getLogger(__name__)

# Steps inside a session (see `jobs.shop.funnel`): the generator's rows from step 50 on move up by this much,
# leaving 50..1049 for the list's clicks, views and carts; impressions take 10..39, rec purchases 3000 + slot.
_ORGANIC_SHIFT, _CLICK_STEP, _REC_BUY_STEP = 1000, 100, 3000


@dataclass(frozen=True)
class Faults:
    """Faults planted for the A/B analysis's tests (off by default).

    srm_share: the first arm's share of exposed persons the storefront ends up with. It loses every exposure of
        a fixed, hashed subset of the over-represented side's persons (as a page that fails to render the block
        for some of them would), so exposed persons split srm_share : 1 - srm_share where the config says
        otherwise. None: no loss.
    two_arm_persons: that many persons (known to the pipeline, two visits or more that day) are shown, on their
        second visit, another arm's list (another person's, as a wrongly keyed page cache would serve it) and
        logged with that arm's variant."""
    srm_share: float | None = None
    two_arm_persons: int = 0

    def check(self) -> None:
        if self.srm_share is not None and not 0.0 < self.srm_share < 1.0:
            raise ValueError(f"simulate-storefront: --srm-share must be between 0 and 1, got {self.srm_share}")
        if self.two_arm_persons < 0:
            raise ValueError(f"simulate-storefront: --two-arm-persons must be >= 0, got {self.two_arm_persons}")


def simulate_storefront(cfg: RecsConfig, *, start: str, end: str, behaviour: Behaviour = Behaviour(),
                        arrivals: Arrivals = Arrivals(), faults: Faults = Faults(), seed: int | None = None,
                        redis_url: str | None = None) -> dict:
    """Simulates the days `start`..`end` (inclusive, in order) on `cfg.data_root`, each against the key-value
    version live when it starts. Returns {day: that day's summary} (also in `truth/storefront/summary/dt=D.json`).

    The first day must follow the generated period or a simulated day: a day's returns come from earlier days.
    Deterministic: the same seed (default: the shop's), settings and published store give the same bytes."""
    behaviour.check()
    faults.check()
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    if last < first:
        raise ValueError(f"simulate-storefront: --to {end} is before --from {start}")
    days = [(first + dt.timedelta(days=k)).isoformat() for k in range((last - first).days + 1)]
    out = {}
    for ds in track(days, "simulate-storefront", unit="days", note=str):
        out[ds] = simulate_day(cfg, ds, behaviour=behaviour, arrivals=arrivals, faults=faults, seed=seed,
                               redis_url=redis_url)
    return out


def simulate_day(cfg: RecsConfig, ds: str, *, behaviour: Behaviour, arrivals: Arrivals, faults: Faults,
                 seed: int | None = None, redis_url: str | None = None) -> dict:
    from jobs.serving.http import open_reader

    t0 = time.perf_counter()
    root = cfg.data_root
    day = dt.date.fromisoformat(ds)
    pop = population_on(root, day, arrivals)
    _check_previous_day(root, pop)
    seed = pop.seed if seed is None else seed
    rng = rng_for(seed, SIM_DAY, pop.d)
    reader = open_reader(Layout(root).kv(), redis_url if redis_url is not None else (cfg.export.redis_url or None))
    live_date = (reader.meta or {}).get("run_date")
    if live_date != (day - dt.timedelta(days=1)).isoformat():
        log.warning("simulate-storefront %s: the live lists are from %s, not the night before", ds, live_date)

    cat, ppl, market = pop.catalog, pop.people, pop.market
    pickable = (cat.first_day < pop.d) | (cat.first_day == -1)
    day_weight = cat.popularity * pickable * np.where(market.available, 1.0, 0.15)
    candidates = _two_arm_candidates(seed, pop, faults.two_arm_persons)
    s = _sessions(rng, pop, _returns_due(root, pop), min_sessions={int(p): 2 for p in candidates})
    organic, order_ids, _ = session_events(rng, cat, ppl, pop.ident, market, s, day_weight, rec_block=False)
    organic["step"] = np.where(organic["step"] >= 50, organic["step"] + _ORGANIC_SHIFT, organic["step"])

    session_ids = hex_strings(rng, s.size, 16, "s")
    shown_sessions = np.flatnonzero(rng.random(s.n_shop) < behaviour.rec_share)
    shown_sessions = np.union1d(shown_sessions, np.flatnonzero(np.isin(s.person[:s.n_shop], candidates)))
    shown_sessions = shown_sessions[np.lexsort((shown_sessions, s.preferred_start[shown_sessions]))]
    answers = [_lookup(reader, pop, s, i, behaviour.slots) for i in shown_sessions.tolist()]
    exp_id = cfg.experiment.id
    planted = _plant_faults(cfg, seed, pop, s, shown_sessions, answers, faults, candidates)
    rec = _show_lists(rng, pop, s, shown_sessions, answers, behaviour, day_weight, exp_id, planted)

    ev, all_orders, rec_rows = _merge(organic, order_ids, rec, rng)
    t_us = event_times(rng, ev["sess"], s, start_us(pop.start) + pop.d * DAY_US)
    logged = np.isin(s.mode[ev["sess"]], (LOGGED_IN, LOGIN_FIRST))
    user = np.where(logged, s.account[ev["sess"]], -1)
    events = _events_table(rng, pop, s, ev, user, t_us, all_orders, session_ids, rec_rows, rec, answers, exp_id)
    purchases = _purchases(rng, pop, s, ev, user, t_us, all_orders, session_ids, rec, rec_rows, shown_sessions)

    layout = Layout(root)
    exposures, shown = _truth_tables(pop, s, session_ids, shown_sessions, answers, rec, ev, t_us, rec_rows,
                                     exp_id, reader.version)
    new_people, new_ids = _arrivals_truth(pop)
    for name, table in (("exposures", exposures), ("shown", shown), ("purchases", purchases),
                        ("planted", planted["table"]), ("persons", new_people), ("identities", new_ids)):
        io.write_arrow_parquet(table, truth.path(root, name, ds))
    io.write_arrow_parquet(_signup_profiles(rng, pop, ev, user, t_us), layout.raw("profiles", ds))
    io.write_arrow_parquet(catalog_snapshot(cat, market, pop.d, start_us(pop.start)), layout.raw("catalog", ds))
    io.write_arrow_parquet(events, layout.raw("events", ds))  # last: the day's feed is complete once it is there
    summary = {"day": ds, "seed": seed, "kv_version": reader.version, "live_lists_date": live_date,
               "experiment_id": exp_id, "behaviour": asdict(behaviour), "arrivals": asdict(arrivals),
               "faults": asdict(faults), "sessions": int(s.n_shop), "exposures": int(exposures.num_rows),
               "exposures_in_experiment": int(np.sum(np.array(exposures["experiment_id"].to_pylist()) == exp_id))
               if exp_id else 0, "events": int(events.num_rows), "purchases": int(purchases.num_rows),
               "new_persons": int(pop.new_persons.size), "new_items": int((cat.first_day == pop.d).sum()),
               "planted": planted["counts"]}
    io.write_json(truth.summary_path(root, ds), summary)  # no timing in it: the same inputs give the same bytes
    return {**summary, "seconds": round(time.perf_counter() - t0, 2)}


def _check_previous_day(root: str, pop: Population) -> None:
    if pop.d == pop.first_sim_day:
        return
    before = (pop.day - dt.timedelta(days=1)).isoformat()
    if not io.exists(truth.summary_path(root, before)):
        raise ValueError(f"simulate-storefront: {before} has not been simulated; simulate the days in order from "
                         f"{pop.start + dt.timedelta(days=pop.first_sim_day)} (a day's returns come from earlier days)")


def _unit(seed: int, salt: str, key: str) -> float:
    """A person's fixed place in [0, 1) for a planted fault, the same every day."""
    return int(hashlib.sha256(f"{seed}:{salt}:{key}".encode()).hexdigest()[:8], 16) / 2 ** 32


# -- sessions --------------------------------------------------------------------------------------------------------

def _sessions(rng: np.random.Generator, pop: Population, returns_due: dict, *, min_sessions: dict[int, int]
              ) -> Sessions:
    """Browsing sessions of the active shoppers (arrivals at least one, planted persons at least
    `min_sessions`), then one session per return due today."""
    ppl, ident, d = pop.people, pop.ident, pop.d
    n_sess = rng.poisson(np.where(ppl.arrival <= d, ppl.activity, 0.0))
    n_sess[pop.new_persons] = np.maximum(n_sess[pop.new_persons], 1)
    for p, k in min_sessions.items():
        n_sess[p] = max(n_sess[p], k)
    sp = np.repeat(np.arange(n_sess.size), n_sess)
    u = rng.random(sp.size)
    slot = ident.slot_off[sp] + np.minimum((ident.slot_cum[sp] < u[:, None]).sum(axis=1), ident.slot_n[sp] - 1)
    device, account = ident.slot_device[slot], ident.slot_account[slot]
    signs_up = np.where(account >= 0, ident.account_signup_day[np.maximum(account, 0)] == d, False)
    mode = np.where(account < 0, ANONYMOUS, LOGGED_IN)
    mode[signs_up | ((account >= 0) & (ident.device_kind[device] == HOUSEHOLD))] = LOGIN_FIRST
    ret = returns_due
    n_ret = ret["person"].size
    entry_names, entry_p = probs(ENTRY_SOURCES)
    entry = rng.choice(len(entry_names), size=sp.size + n_ret, p=entry_p)
    entry[sp.size:] = entry_names.index("direct")
    return Sessions(person=np.concatenate([sp, ret["person"]]), device=np.concatenate([device, ret["device"]]),
                    account=np.concatenate([account, ret["account"]]),
                    mode=np.concatenate([mode, np.where(ret["account"] >= 0, LOGGED_IN, ANONYMOUS)]),
                    preferred_start=session_starts(rng, sp.size + n_ret), entry=entry, entry_names=entry_names,
                    n_shop=sp.size, returns=ret)


def _returns_due(root: str, pop: Population) -> dict:
    """Purchases of earlier simulated days that come back today, as the generator's returns bundle."""
    earlier = [(pop.start + dt.timedelta(days=k)).isoformat() for k in range(pop.first_sim_day, pop.d)]
    bought = truth.read(root, "purchases", earlier)
    due = bought.filter(pa.compute.equal(bought["return_date"], pa.scalar(pop.day, pa.date32())))
    ident, ppl, cat = pop.ident, pop.people, pop.catalog
    index = {name: {v: i for i, v in enumerate(arr.to_pylist())} for name, arr in
             (("person", ppl.person_keys), ("device", ident.device_ids), ("account", ident.account_ids),
              ("item", cat.item_ids))}
    col = {c: due[c].to_pylist() for c in ("person", "anonymous_id", "user_id", "item_id")}
    return {"person": np.array([index["person"][v] for v in col["person"]], np.int64),
            "device": np.array([index["device"][v] for v in col["anonymous_id"]], np.int64),
            "account": np.array([index["account"].get(v, -1) if v else -1 for v in col["user_id"]], np.int64),
            "item": np.array([index["item"][v] for v in col["item_id"]], np.int64),
            "qty": due["quantity"].to_numpy(zero_copy_only=False).astype(np.int64),
            "price": due["price"].to_numpy(zero_copy_only=False).astype(np.float64),
            "order_id": due["order_id"].combine_chunks() if due.num_rows else pa.array([], STRING)}


# -- the storefront --------------------------------------------------------------------------------------------------

def _lookup(reader, pop: Population, s: Sessions, i: int, k: int) -> dict:
    """What the home page of session `i` gets: by user_id once logged in, else by anonymous_id, with context."""
    ident = pop.ident
    acc, dev = int(s.account[i]), int(s.device[i])
    id_ = ident.account_ids[acc].as_py() if s.mode[i] != ANONYMOUS and acc >= 0 else ident.device_ids[dev].as_py()
    return reader.lookup(id_, country=list(COUNTRIES)[int(pop.people.country[s.person[i]])],
                         device_type=DEVICE_TYPES[int(ident.device_type[dev])], k=k)


def _two_arm_candidates(seed: int, pop: Population, n: int) -> np.ndarray:
    """Persons who may be planted in two arms: 3n registered shoppers of the generated period, by a seeded draw
    (the pipeline knows most of them; those it does not are skipped)."""
    if n <= 0:
        return np.zeros(0, np.int64)
    old = np.flatnonzero(pop.people.registered & (pop.people.arrival < pop.first_sim_day))
    return np.sort(rng_for(seed, SIM_DAY, 0, 7).permutation(old)[:3 * n])


def _plant_faults(cfg: RecsConfig, seed: int, pop: Population, s: Sessions, shown_sessions: np.ndarray,
                  answers: list[dict], faults: Faults, candidates: np.ndarray) -> dict:
    """Applies the planted faults to the day's answers in place; returns the `planted` truth table, the sessions
    whose block is not shown (`dropped`) and counts."""
    keys = pop.people.person_keys
    dropped: set[int] = set()
    rows: dict[tuple[str, str, str], int] = {}
    in_exp = [a["source"] == "person" for a in answers]
    if faults.srm_share is not None and len(cfg.experiment.arms) > 1:
        first_arm = cfg.experiment.arms[0].name
        s0 = cfg.experiment.arms[0].share
        keep_others = s0 * (1 - faults.srm_share) / ((1 - s0) * faults.srm_share)
        thinned = (lambda v: v != first_arm) if keep_others < 1 else (lambda v: v == first_arm)
        lose = 1 - (keep_others if keep_others < 1 else 1 / keep_others)
        for j, a in enumerate(answers):
            person = keys[int(s.person[shown_sessions[j]])].as_py()
            if in_exp[j] and thinned(a["variant"]) and _unit(seed, "srm", person) < lose:
                dropped.add(j)
                rows[(person, "srm_dropped", a["variant"])] = rows.get((person, "srm_dropped", a["variant"]), 0) + 1
    two_arm: set[int] = set()
    labels: dict[int, str] = {}
    if faults.two_arm_persons > 0:
        by_person: dict[int, list[int]] = {}
        for j in range(len(answers)):
            by_person.setdefault(int(s.person[shown_sessions[j]]), []).append(j)
        for p in candidates.tolist():
            js = [j for j in by_person.get(p, []) if j not in dropped]
            if len(two_arm) >= faults.two_arm_persons or len(js) < 2 or not all(in_exp[j] for j in js):
                continue
            own = answers[js[0]]
            donor = next((a for j, a in enumerate(answers) if in_exp[j] and a["variant"] != own["variant"]
                          and a["person_id"] != own["person_id"]), None)
            if donor is None:
                continue
            two_arm.add(p)
            labels[js[1]] = "two_arm"
            answers[js[1]] = {**donor, "id": own["id"], "person_id": own["person_id"]}
            rows[(keys[p].as_py(), "two_arm", donor["variant"])] = 1
    table = pa.table({"person": pa.array([k[0] for k in rows], STRING), "fault": pa.array([k[1] for k in rows], STRING),
                      "variant": pa.array([k[2] for k in rows], STRING),
                      "exposures": pa.array(list(rows.values()), pa.int32())},
                     schema=truth.STOREFRONT_TRUTH_SCHEMAS["planted"])
    return {"table": table, "dropped": dropped, "labels": labels,
            "counts": {"srm_dropped_exposures": len(dropped),
                       "srm_dropped_persons": len({k[0] for k in rows if k[1] == "srm_dropped"}),
                       "two_arm_persons": len(two_arm)}}


@dataclass
class _Shown:
    """The lists shown today, one row per shown item, and the rec path's events."""
    exposure: np.ndarray          # index into shown_sessions / answers
    sess: np.ndarray
    position: np.ndarray          # 1 = first
    item: np.ndarray
    utility: np.ndarray
    probs: dict
    price: np.ndarray
    clicked: np.ndarray
    carted: np.ndarray
    bought: np.ndarray
    qty: np.ndarray
    returned: np.ndarray
    exp_code: np.ndarray          # per exposure: 0 in the experiment, 1 outside (empty id)
    planted: list                 # per exposure: None or "two_arm"
    shown: np.ndarray             # per exposure: shown (not lost to the planted SRM)


def _show_lists(rng: np.random.Generator, pop: Population, s: Sessions, shown_sessions: np.ndarray,
                answers: list[dict], b: Behaviour, day_weight: np.ndarray, exp_id: str, planted: dict) -> _Shown:
    item_index = {v: i for i, v in enumerate(pop.catalog.item_ids.to_pylist())}
    ex, pos, item = [], [], []
    shown = np.array([j not in planted["dropped"] for j in range(len(answers))], dtype=bool)
    for j, a in enumerate(answers):
        if not shown[j]:
            continue
        ids = [item_index[it["item_id"]] for it in a["items"] if it["item_id"] in item_index]
        ex += [j] * len(ids)
        pos += list(range(1, len(ids) + 1))
        item += ids
    ex, pos, item = np.array(ex, np.int64), np.array(pos, np.int64), np.array(item, np.int64)
    sess = shown_sessions[ex] if ex.size else np.zeros(0, np.int64)
    person = s.person[sess]
    utility = true_utility(pop.catalog, pop.people, day_weight, person, item) if ex.size else np.zeros(0)
    available = pop.market.available[item]
    p = probabilities(b, utility, pos, available)
    n = ex.size
    clicked = rng.random(n) < p["p_click"]
    carted = clicked & (rng.random(n) < np.where(p["p_click"] > 0, p["p_cart"] / np.maximum(p["p_click"], 1e-300), 0))
    bought = carted & (rng.random(n) < b.buy_p)
    qty = rng.choice(QUANTITIES, size=n, p=QUANTITY_P)
    returned = bought & (rng.random(n) < p["p_return"])
    exp_code = np.array([0 if (a["source"] == "person" and exp_id) else 1 for a in answers], np.int64)
    plant = [planted["labels"].get(j) for j in range(len(answers))]
    return _Shown(exposure=ex, sess=sess, position=pos, item=item, utility=utility, probs=p,
                  price=pop.market.price[item], clicked=clicked, carted=carted, bought=bought, qty=qty,
                  returned=returned, exp_code=exp_code, planted=plant, shown=shown)


def _merge(organic: dict, order_ids: pa.Array, rec: _Shown, rng: np.random.Generator
           ) -> tuple[dict, pa.Array, np.ndarray]:
    """The organic rows plus the list's rows (impressions, clicks, views, carts, purchases), sorted by session and
    step. Returns (rows, order ids, per row: the shown-item index of a list row, else -1)."""
    n_org = organic["sess"].size
    parts = {k: [v] for k, v in organic.items()}
    parts["shown"] = [np.full(n_org, -1, np.int64)]
    k = np.arange(rec.exposure.size)
    slot = rec.position - 1

    def add(rows, step, etype, qty=0, price=np.nan, order=-1):
        n = rows.size
        for c, v in (("sess", rec.sess[rows]), ("step", step), ("etype", etype), ("item", rec.item[rows]),
                     ("qty", qty), ("price", price), ("order", order), ("query", -1), ("cat", -1), ("shown", rows)):
            parts[c].append(np.broadcast_to(np.asarray(v), (n,)).astype(np.float64 if c == "price" else np.int64))

    add(k, IMPRESSION_STEP + slot, ET["rec_impression"])
    c = k[rec.clicked]
    add(c, _CLICK_STEP + 20 * slot[c], ET["rec_click"])
    add(c, _CLICK_STEP + 20 * slot[c] + 1, ET["product_view"])
    ca = k[rec.carted]
    add(ca, _CLICK_STEP + 20 * slot[ca] + 2, ET["add_to_cart"], qty=rec.qty[ca])
    bo = k[rec.bought]
    order_sessions = np.unique(rec.sess[bo])
    new_orders = hex_strings(rng, order_sessions.size, 16, "o")
    add(bo, _REC_BUY_STEP + slot[bo], ET["purchase"], qty=rec.qty[bo], price=rec.price[bo],
        order=len(order_ids) + np.searchsorted(order_sessions, rec.sess[bo]))
    ev = {c: np.concatenate(v) for c, v in parts.items()}
    o = np.lexsort((ev["step"], ev["sess"]))
    ev = {c: v[o] for c, v in ev.items()}
    shown_row = ev.pop("shown")
    return ev, pa.concat_arrays([order_ids, new_orders]), shown_row


# -- outputs ---------------------------------------------------------------------------------------------------------

def _events_table(rng: np.random.Generator, pop: Population, s: Sessions, ev: dict, user: np.ndarray,
                  t_us: np.ndarray, order_ids: pa.Array, session_ids: pa.Array, rec_rows: np.ndarray, rec: _Shown,
                  answers: list[dict], exp_id: str) -> pa.Table:
    """The day's events as the generator writes them; list rows carry the experiment id (empty outside the
    experiment) and the variant of the answer they were shown from."""
    etype = ev["etype"]
    n = etype.size
    is_rec = (etype == ET["rec_impression"]) | (etype == ET["rec_click"])
    exposure = np.where(rec_rows >= 0, rec.exposure[np.maximum(rec_rows, 0)], -1) if rec.exposure.size else rec_rows
    in_exp = np.where(is_rec, rec.exp_code[np.maximum(exposure, 0)], -1) if answers else np.full(n, -1)
    return events_table(
        pop, s, ev, user, t_us, event_ids=hex_strings(rng, n, 32), session_ids=session_ids, order_ids=order_ids,
        experiment_id=take(pa.array([exp_id, ""], STRING), in_exp),
        variant=take(pa.array([a["variant"] for a in answers], STRING), np.where(is_rec, exposure, -1)))


def _purchases(rng: np.random.Generator, pop: Population, s: Sessions, ev: dict, user: np.ndarray, t_us: np.ndarray,
               order_ids: pa.Array, session_ids: pa.Array, rec: _Shown, rec_rows: np.ndarray,
               shown_sessions: np.ndarray) -> pa.Table:
    """Every purchase of the day with its true person and, for those that come back, the return date: organic
    ones at the generator's rate, the list's ones at their `p_return` (drawn in `_show_lists`)."""
    rows = np.flatnonzero(ev["etype"] == ET["purchase"])
    from_list = rec_rows[rows] >= 0
    comes_back = np.where(from_list, rec.returned[np.maximum(rec_rows[rows], 0)] if rec.exposure.size else False,
                          rng.random(rows.size) < RETURN_P)
    back_in = rng.integers(RETURN_DAYS[0], RETURN_DAYS[1] + 1, rows.size)
    return_date = [(pop.day + dt.timedelta(days=int(k))) if b else None for k, b in zip(back_in, comes_back)]
    sess = ev["sess"][rows]
    exposure_session = np.where(from_list, shown_sessions[rec.exposure[np.maximum(rec_rows[rows], 0)]]
                                if rec.exposure.size else -1, -1)
    order = np.lexsort((rows, t_us[rows]))
    rows, sess, exposure_session = rows[order], sess[order], exposure_session[order]
    return_date = [return_date[i] for i in order.tolist()]
    return pa.table({
        "order_id": take(order_ids, ev["order"][rows]),
        "event_time": pa.array(t_us[rows], truth.TIME),
        "person": take(pop.people.person_keys, s.person[sess]),
        "user_id": take(pop.ident.account_ids, user[rows]),
        "anonymous_id": take(pop.ident.device_ids, s.device[sess]),
        "item_id": take(pop.catalog.item_ids, ev["item"][rows]),
        "quantity": pa.array(ev["qty"][rows].astype(np.int32)),
        "price": pa.array(ev["price"][rows]),
        "exposure_id": take(session_ids, exposure_session),
        "return_date": pa.array(return_date, pa.date32()),
    }, schema=truth.STOREFRONT_TRUTH_SCHEMAS["purchases"])


def _truth_tables(pop: Population, s: Sessions, session_ids: pa.Array, shown_sessions: np.ndarray,
                  answers: list[dict], rec: _Shown, ev: dict, t_us: np.ndarray, rec_rows: np.ndarray, exp_id: str,
                  kv_version: str) -> tuple[pa.Table, pa.Table]:
    """truth/storefront/exposures and shown (see `jobs.storefront.truth`)."""
    n_ex = len(answers)
    n_shown = np.bincount(rec.exposure, minlength=n_ex)
    keep = np.flatnonzero(rec.shown & (n_shown > 0))
    p = rec.probs
    revenue = p["p_purchase"] * float(QUANTITIES @ QUANTITY_P) * rec.price
    per_ex = {name: np.bincount(rec.exposure, weights=w, minlength=n_ex) for name, w in
              (("clicks", p["p_click"]), ("purchases", p["p_purchase"]), ("revenue", revenue),
               ("log_none", np.log1p(-np.minimum(p["p_purchase"], 1 - 1e-12))))}
    first_imp = np.full(n_ex, np.iinfo(np.int64).max)
    imp = np.flatnonzero((ev["etype"] == ET["rec_impression"]) & (rec_rows >= 0))
    np.minimum.at(first_imp, rec.exposure[rec_rows[imp]], t_us[imp])
    sess = shown_sessions[keep]
    logged_in = np.isin(s.mode[sess], (LOGGED_IN, LOGIN_FIRST))
    exposures = pa.table({
        "exposure_id": take(session_ids, sess),
        "event_time": pa.array(first_imp[keep], truth.TIME),
        "person": take(pop.people.person_keys, s.person[sess]),
        "user_id": take(pop.ident.account_ids, np.where(logged_in, s.account[sess], -1)),
        "anonymous_id": take(pop.ident.device_ids, s.device[sess]),
        "lookup_id": pa.array([answers[j]["id"] for j in keep.tolist()], STRING),
        "person_id": pa.array([answers[j]["person_id"] for j in keep.tolist()], STRING),
        "source": pa.array([answers[j]["source"] for j in keep.tolist()], STRING),
        "experiment_id": pa.array([exp_id if rec.exp_code[j] == 0 else "" for j in keep.tolist()], STRING),
        "variant": pa.array([answers[j]["variant"] for j in keep.tolist()], STRING),
        "kv_version": pa.array([kv_version] * keep.size, STRING),
        "n_shown": pa.array(n_shown[keep].astype(np.int32)),
        "expected_clicks": pa.array(per_ex["clicks"][keep]),
        "expected_purchases": pa.array(per_ex["purchases"][keep]),
        "p_any_purchase": pa.array(1 - np.exp(per_ex["log_none"][keep])),
        "expected_revenue": pa.array(per_ex["revenue"][keep]),
        "planted": pa.array([rec.planted[j] for j in keep.tolist()], STRING),
    }, schema=truth.STOREFRONT_TRUTH_SCHEMAS["exposures"])
    shown = pa.table({
        "exposure_id": take(session_ids, rec.sess),
        "position": pa.array(rec.position.astype(np.int32)),
        "item_id": take(pop.catalog.item_ids, rec.item),
        "true_utility": pa.array(rec.utility), "price": pa.array(rec.price, pa.float64()),
        "available": pa.array(pop.market.available[rec.item]),
        **{k: pa.array(p[k], pa.float64()) for k in ("p_examine", "p_click", "p_cart", "p_purchase", "p_return")},
        "expected_revenue": pa.array(revenue, pa.float64()),
        "clicked": pa.array(rec.clicked), "carted": pa.array(rec.carted), "purchased": pa.array(rec.bought),
    }, schema=truth.STOREFRONT_TRUTH_SCHEMAS["shown"])
    return exposures, shown


def _arrivals_truth(pop: Population) -> tuple[pa.Table, pa.Table]:
    """truth/storefront/persons and identities: today's new shoppers, as truth/persons and truth/identities."""
    from jobs.shop.catalog import TOP_CATEGORIES

    ppl, ident, new = pop.people, pop.ident, pop.new_persons
    persons = pa.table({
        "person": take(ppl.person_keys, new),
        "country": take(pa.array(list(COUNTRIES), STRING), ppl.country[new]),
        "favourite_categories": pa.array([[TOP_CATEGORIES[t] for t in ppl.fav_tops[p]] for p in new.tolist()],
                                         pa.list_(STRING)),
        "is_registered": pa.array(ppl.registered[new]),
    }, schema=truth.STOREFRONT_TRUTH_SCHEMAS["persons"])
    slots = np.flatnonzero(np.isin(ident.slot_person, new))
    acc = pop.new_accounts
    ids = pa.table({
        "id_type": pa.array(["user_id"] * acc.size + ["anonymous_id"] * slots.size, STRING),
        "id": pa.concat_arrays([take(ident.account_ids, acc), take(ident.device_ids, ident.slot_device[slots])]),
        "person": pa.concat_arrays([take(ppl.person_keys, ident.account_person[acc]),
                                    take(ppl.person_keys, ident.slot_person[slots])]),
    }, schema=truth.STOREFRONT_TRUTH_SCHEMAS["identities"])
    return persons, ids


def _signup_profiles(rng: np.random.Generator, pop: Population, ev: dict, user: np.ndarray, t_us: np.ndarray
                     ) -> pa.Table:
    """Profiles of the accounts that sign up today (those with one), signed up at their first login."""
    ident = pop.ident
    acc = pop.new_accounts[ident.account_has_profile[pop.new_accounts]]
    logins = np.flatnonzero((ev["etype"] == ET["login"]) & (user >= 0))
    first = np.full(len(ident.account_ids), np.iinfo(np.int64).max)
    np.minimum.at(first, user[logins], t_us[logins])
    acc = acc[first[acc] < np.iinfo(np.int64).max]
    return profiles(rng, pop.people, pop.catalog, take(ident.account_ids, acc), ident.account_person[acc], first[acc])
