"""Who shops when on one day: a Poisson number of sessions per active person, each on one of their devices,
anonymous or logged in; plus today's kiosk sessions and the return "sessions" that earlier purchases left due.

Every device's login day gets a session, so each registered device logs in once during the period.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobs.shop.arrays import probs
from jobs.shop.identities import HOUSEHOLD, Identity
from jobs.shop.knobs import ENTRY_SOURCES, HOURLY_TRAFFIC, LOGIN_MID_SESSION_P, REAUTH_P
from jobs.shop.people import People

# Session modes: how the session's user_id shows up in its events.
ANONYMOUS, LOGGED_IN, LOGIN_FIRST, LOGIN_MID = 0, 1, 2, 3
# The keys of a returns bundle (see `jobs.shop.day`) that every day's sessions need, even with none due.
_RETURN_KEYS = ("person", "device", "account", "item", "qty")


@dataclass
class Sessions:
    """One row per session: browsing sessions on people's devices first, then kiosk sessions, then returns."""
    person: np.ndarray
    device: np.ndarray
    account: np.ndarray           # account used when logged in; -1 for guests
    mode: np.ndarray              # ANONYMOUS, LOGGED_IN, LOGIN_FIRST or LOGIN_MID
    preferred_start: np.ndarray   # microseconds into the day
    entry: np.ndarray             # index into ENTRY_SOURCES
    entry_names: list[str]
    n_shop: int                   # sessions that browse; the rest each return one item
    returns: dict                 # the returns bundle behind the last sessions

    @property
    def size(self) -> int:
        return self.person.size


def day_sessions(rng: np.random.Generator, ppl: People, ident: Identity, d: int,
                 returns_due: dict | None) -> Sessions:
    person, device, account, mode, pref = _device_sessions(rng, ppl, ident, d)
    kiosk = np.flatnonzero(ident.kiosk_day == d)
    kp = ident.kiosk_person[kiosk]
    ret = returns_due or {k: np.zeros(0, dtype=np.int64) for k in _RETURN_KEYS}
    n_ret = ret["person"].size
    s_person = np.concatenate([person, kp, ret["person"]])
    s_mode = np.concatenate([mode, np.full(kp.size, LOGIN_FIRST),
                             np.where(ret["account"] >= 0, LOGGED_IN, ANONYMOUS)])
    s_pref = np.concatenate([pref, session_starts(rng, kp.size + n_ret)])
    n_shop = person.size + kp.size
    entry_names, entry_p = probs(ENTRY_SOURCES)
    s_entry = rng.choice(len(entry_names), size=s_person.size, p=entry_p)
    s_entry[n_shop:] = entry_names.index("direct")
    return Sessions(person=s_person,
                    device=np.concatenate([device, ident.kiosk_device[kiosk], ret["device"]]),
                    account=np.concatenate([account, ident.person_account[kp], ret["account"]]),
                    mode=s_mode, preferred_start=s_pref, entry=s_entry, entry_names=entry_names,
                    n_shop=n_shop, returns=ret)


def _device_sessions(rng: np.random.Generator, ppl: People, ident: Identity, d: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sessions on personal and household devices: (person, device, account, mode, preferred start)."""
    n_sess = rng.poisson(np.where(ppl.arrival <= d, ppl.activity, 0.0))
    sp = np.repeat(np.arange(n_sess.size), n_sess)
    u = rng.random(sp.size)
    slot = ident.slot_off[sp] + np.minimum((ident.slot_cum[sp] < u[:, None]).sum(axis=1), ident.slot_n[sp] - 1)
    due = np.flatnonzero(ident.slot_login_day == d)
    missing = due[np.bincount(slot, minlength=ident.slot_person.size)[due] == 0]
    slot = np.concatenate([slot, missing])
    sp = np.concatenate([sp, ident.slot_person[missing]])
    n_browse = sp.size
    pref = session_starts(rng, n_browse)
    login_day = ident.slot_login_day[slot]
    # the day's first session on a slot is the one that logs in on its login day
    order = np.lexsort((pref, slot))
    first = np.ones(n_browse, dtype=bool)
    first[order[1:]] = slot[order][1:] != slot[order][:-1]
    mode = np.where(d < login_day, ANONYMOUS, LOGGED_IN)
    login_now = (login_day == d) & first
    mode[login_now] = np.where(rng.random(int(login_now.sum())) < LOGIN_MID_SESSION_P, LOGIN_MID, LOGIN_FIRST)
    device = ident.slot_device[slot]
    household = ident.device_kind[device] == HOUSEHOLD
    mode[(mode == LOGGED_IN) & household] = LOGIN_FIRST  # on a shared device each person logs in every time
    mode[(mode == LOGGED_IN) & (rng.random(n_browse) < REAUTH_P)] = LOGIN_FIRST
    return sp, device, ident.slot_account[slot], mode, pref


def session_starts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Preferred start (microseconds into the day), following the hourly traffic curve."""
    hour = rng.choice(24, size=n, p=HOURLY_TRAFFIC / HOURLY_TRAFFIC.sum())
    return hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, n)
