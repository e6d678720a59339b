"""Which ids belong to whom: accounts (`user_id`, email hash), devices (`anonymous_id`) and who uses which.

Guests have one device and never log in; registered people browse anonymously on each of their 1-3 devices
until a login there, after which that device carries their `user_id`. Some people have two accounts with
one email, some devices are shared by a household, and a few kiosks are used by hundreds of accounts: each
is a case identity stitching must get right. A "slot" is one person's use of one device.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

import schemas
from jobs.shop.arrays import STRING, hex_strings, numbered, probs
from jobs.shop.knobs import (COUNTRIES, DEVICE_TYPE_SHARE, DEVICES_PER_REGISTERED, HOUSEHOLD_DEVICE_SHARE,
                             KIOSK_ACCOUNTS, LOGIN_DELAY_P, PROFILE_SHARE, TWO_ACCOUNTS_SHARE)
from jobs.shop.people import People

DEVICE_TYPES: tuple[str, ...] = schemas.load("events").field("device_type").enum
PERSONAL, HOUSEHOLD, KIOSK = 0, 1, 2  # device kinds
NEVER = np.iinfo(np.int64).max // 4  # a day that never comes


@dataclass
class Identity:
    account_ids: pa.Array         # user_id per account
    account_person: np.ndarray
    account_email_hash: pa.Array
    account_has_profile: np.ndarray
    account_signup_day: np.ndarray   # -1: before start; large: not yet signed up
    account_signup_us: np.ndarray
    device_ids: pa.Array          # anonymous_id per device
    device_type: np.ndarray       # index into DEVICE_TYPES
    device_kind: np.ndarray       # 0 personal, 1 household, 2 kiosk
    device_variant: np.ndarray    # 0 control, 1 treatment
    person_account: np.ndarray    # primary account per person; -1 for guests
    slot_person: np.ndarray       # a slot = one person's use of one device
    slot_device: np.ndarray
    slot_account: np.ndarray      # account used when logged in there; -1 for guests
    slot_login_day: np.ndarray    # day of the first login there; huge for guests
    slot_off: np.ndarray          # CSR offsets of each person's slots
    slot_cum: np.ndarray          # (persons, max slots) cumulative usage weights, padded with 1.0
    slot_n: np.ndarray
    kiosk_person: np.ndarray      # one kiosk session each
    kiosk_device: np.ndarray
    kiosk_day: np.ndarray
    household_partners: dict[int, list[int]] = field(default_factory=dict)


@dataclass
class _Accounts:
    person: np.ndarray            # owner per account
    ids: pa.Array
    email_hash: pa.Array
    has_profile: np.ndarray
    signup_day: np.ndarray
    signup_us: np.ndarray
    primary: np.ndarray           # per person: first account, -1 for guests
    second: np.ndarray            # per person: second account (same email), -1 for most
    two: np.ndarray               # persons with two accounts


@dataclass
class _Slots:
    """One row per (person, device) use, with the weights a person spreads their sessions by."""
    person: np.ndarray
    device: np.ndarray
    weight: np.ndarray
    account: np.ndarray


def build_identity(rng: np.random.Generator, people: People, *, days: int, start_us: int) -> Identity:
    acc = _accounts(rng, people, start_us=start_us)
    personal, personal_type = _personal_devices(rng, people, acc)
    n_personal = personal_type.size
    house_dev, partners = _households(rng, people, personal.person)
    dev_kind = np.zeros(n_personal, dtype=np.int64)
    dev_kind[house_dev] = HOUSEHOLD
    household_partners = {int(d): [int(personal.person[d]), int(p)] for d, p in zip(house_dev, partners)}
    # a household device is a second slot on it: the partner, logged in to their own primary account
    slots = _Slots(person=np.concatenate([personal.person, partners]),
                   device=np.concatenate([personal.device, house_dev]),
                   weight=np.concatenate([personal.weight, np.full(partners.size, 0.45)]),
                   account=np.concatenate([personal.account, acc.primary[partners]]))
    slot_columns = _slot_table(rng, people, slots, days=days)
    n_kiosks, kiosk_person, kiosk_device, kiosk_day = _kiosks(rng, people, n_personal=n_personal, days=days)

    n_devices = n_personal + n_kiosks
    device_ids = hex_strings(rng, n_devices, 15, "a")
    if len(device_ids.unique()) != n_devices:  # 60 random bits: never in practice, but ids must be unique
        raise RuntimeError("anonymous_id collision; use another seed")
    device_type = np.concatenate([personal_type, np.full(n_kiosks, DEVICE_TYPES.index("desktop"))])
    device_kind = np.concatenate([dev_kind, np.full(n_kiosks, KIOSK)])
    device_variant = rng.integers(0, 2, n_devices)
    return Identity(account_ids=acc.ids, account_person=acc.person, account_email_hash=acc.email_hash,
                    account_has_profile=acc.has_profile, account_signup_day=acc.signup_day,
                    account_signup_us=acc.signup_us, device_ids=device_ids, device_type=device_type,
                    device_kind=device_kind, device_variant=device_variant, person_account=acc.primary,
                    kiosk_person=kiosk_person, kiosk_device=kiosk_device, kiosk_day=kiosk_day,
                    household_partners=household_partners, **slot_columns)


def _accounts(rng: np.random.Generator, people: People, *, start_us: int) -> _Accounts:
    """One account per registered person, two for ~2% (same email); the people already shopping at the start
    signed up before it."""
    users = people.registered.size
    reg = np.flatnonzero(people.registered)
    two = reg[rng.random(reg.size) < TWO_ACCOUNTS_SHARE]
    if two.size == 0 and reg.size:  # small shops still get one, so every case is there to test
        two = rng.choice(reg, size=1)
    account_person = np.concatenate([reg, two])
    n_acc = account_person.size
    width = max(6, len(str(n_acc)))
    account_ids = numbered("u", rng.permutation(n_acc) + 1, width)
    primary = np.full(users, -1)
    primary[reg] = np.arange(reg.size)
    second = np.full(users, -1)
    second[two] = reg.size + np.arange(two.size)
    hashes = {}
    for p in reg.tolist():
        email = f" Shopper.{p:07d}@Example.com "  # collectors hash the trimmed, lower-cased address
        hashes[p] = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    account_email_hash = pa.array([hashes[p] for p in account_person.tolist()], STRING)
    account_has_profile = rng.random(n_acc) < PROFILE_SHARE
    pre_existing = people.arrival[account_person] == 0
    account_signup_day = np.where(pre_existing, -1, NEVER)
    account_signup_us = np.where(pre_existing,
                                 start_us - rng.integers(1, 2 * 365 * 86_400, n_acc) * 1_000_000, 0)
    return _Accounts(person=account_person, ids=account_ids, email_hash=account_email_hash,
                     has_profile=account_has_profile, signup_day=account_signup_day, signup_us=account_signup_us,
                     primary=primary, second=second, two=two)


def _personal_devices(rng: np.random.Generator, people: People, acc: _Accounts) -> tuple[_Slots, np.ndarray]:
    """Guests 1 device, registered people 1-3 (2+ with two accounts, one account per device).

    Returns each device's slot (its owner; devices are numbered from 0 in owner order) and its type."""
    users = people.registered.size
    reg = np.flatnonzero(people.registered)
    n_dev = np.ones(users, dtype=np.int64)
    n_dev[reg] = rng.choice([1, 2, 3], size=reg.size, p=DEVICES_PER_REGISTERED)
    n_dev[acc.two] = np.maximum(n_dev[acc.two], 2)
    dev_person = np.repeat(np.arange(users), n_dev)
    dev_rank = np.arange(dev_person.size) - np.repeat(np.cumsum(n_dev) - n_dev, n_dev)
    n_personal = dev_person.size
    types, type_p = probs(DEVICE_TYPE_SHARE)
    dev_type = np.array([DEVICE_TYPES.index(t) for t in types])[rng.choice(len(types), n_personal, p=type_p)]
    weight = np.where(dev_rank == 0, 1.0, rng.uniform(0.15, 0.7, n_personal))  # the first device is the busiest
    account = np.where(people.registered[dev_person],
                       np.where((dev_rank % 2 == 1) & (acc.second[dev_person] >= 0), acc.second[dev_person],
                                acc.primary[dev_person]), -1)
    return _Slots(person=dev_person, device=np.arange(n_personal), weight=weight, account=account), dev_type


def _households(rng: np.random.Generator, people: People, dev_person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Household devices: a registered person's device that a second registered person (same country) uses
    too. Returns (the devices, sorted; the partner on each)."""
    reg = np.flatnonzero(people.registered)
    reg_devices = np.flatnonzero(people.registered[dev_person])
    n_house = round(HOUSEHOLD_DEVICE_SHARE * dev_person.size) if reg.size >= 2 else 0
    n_house = max(n_house, 1) if reg.size >= 2 else 0
    house_dev = np.sort(rng.choice(reg_devices, size=min(n_house, reg_devices.size), replace=False))
    owner = dev_person[house_dev]
    by_country = reg[np.argsort(people.country[reg], kind="stable")]
    n_c = np.bincount(people.country[reg], minlength=len(COUNTRIES))
    off_c = np.cumsum(n_c) - n_c
    c = people.country[owner]
    k = rng.integers(0, np.maximum(n_c[c], 1))
    partners = by_country[off_c[c] + k]
    clash = partners == owner  # the owner drew themself: take the next person of that country, else anyone
    partners[clash] = by_country[off_c[c[clash]] + (k[clash] + 1) % np.maximum(n_c[c[clash]], 1)]
    clash = partners == owner
    partners[clash] = reg[(np.searchsorted(reg, owner[clash]) + 1) % reg.size]
    return house_dev, partners


def _slot_table(rng: np.random.Generator, people: People, slots: _Slots, *, days: int) -> dict[str, np.ndarray]:
    """The `slot_*` columns of `Identity`: slots sorted by (person, device), each with its first login day,
    and per person the CSR offsets and cumulative usage weights that sessions are drawn by."""
    users = people.registered.size
    # Login day (a session there is guaranteed): people already shopping at the start log in on some day of
    # the period; newcomers a geometric delay after arriving, redrawn inside the days left if it runs past
    # the end. Either way logins (and the sessions they force) spread evenly: no spike on the first or last day.
    arrival = people.arrival[slots.person]
    login_day = arrival + rng.geometric(LOGIN_DELAY_P, slots.person.size) - 1
    redraw = (login_day > days - 1) | (arrival == 0)
    login_day[redraw] = arrival[redraw] + (rng.random(int(redraw.sum())) * (days - arrival[redraw])).astype(np.int64)
    slot_login_day = np.where(people.registered[slots.person], login_day, NEVER)
    order = np.lexsort((slots.device, slots.person))
    slot_person, slot_device, slot_weight, slot_account, slot_login_day = (
        a[order] for a in (slots.person, slots.device, slots.weight, slots.account, slot_login_day))
    slot_n = np.bincount(slot_person, minlength=users)
    slot_off = np.concatenate([[0], np.cumsum(slot_n)])
    width_s = int(slot_n.max())
    rank_in_person = np.arange(slot_person.size) - slot_off[slot_person]
    slot_w = np.zeros((users, width_s))
    slot_w[slot_person, rank_in_person] = slot_weight
    slot_cum = np.cumsum(slot_w, axis=1) / slot_w.sum(axis=1, keepdims=True)
    slot_cum[np.arange(width_s)[None, :] >= slot_n[:, None] - 1] = 1.0
    return {"slot_person": slot_person, "slot_device": slot_device, "slot_account": slot_account,
            "slot_login_day": slot_login_day, "slot_off": slot_off, "slot_cum": slot_cum, "slot_n": slot_n}


def _kiosks(rng: np.random.Generator, people: People, *, n_personal: int, days: int
            ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Kiosks (numbered after the personal devices): each used by many accounts, one logged-in session each
    on a day the person is active. Returns (kiosks, and per kiosk session: person, device, day)."""
    users = people.registered.size
    reg = np.flatnonzero(people.registered)
    n_kiosks = max(1, users // 20000)
    per_kiosk = int(min(KIOSK_ACCOUNTS[1], max(KIOSK_ACCOUNTS[0], users // 10), reg.size))
    kiosk_device = np.repeat(np.arange(n_kiosks) + n_personal, per_kiosk)
    kiosk_person = np.concatenate([np.sort(rng.choice(reg, size=per_kiosk, replace=False))
                                   for _ in range(n_kiosks)]) if per_kiosk else np.zeros(0, np.int64)
    arr = people.arrival[kiosk_person]
    kiosk_day = arr + (rng.random(kiosk_person.size) * (days - arr)).astype(np.int64)
    return n_kiosks, kiosk_person, kiosk_device, kiosk_day
