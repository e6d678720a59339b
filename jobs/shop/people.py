"""The shop's people: who they are (country, registered or guest, when they arrive, how active), what they
like (`build_people`), and the onboarding profiles their accounts fill in (`profiles`).

Tastes are a Dirichlet mix over 1-3 top-level categories and a few of their leaves, two favourite brands
and a price band, so that a person's history says something a popularity ranking does not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import schemas
from jobs.shop.arrays import STRING, numbered, probs, take
from jobs.shop.catalog import TOP_CATEGORIES, Catalog
from jobs.shop.knobs import (ACTIVE_AT_START_SHARE, ACTIVITY_SIGMA, AGE_BANDS, COUNTRIES, REGISTERED_SHARE,
                             SESSIONS_PER_ACTIVE_DAY)
from schemas.vocabulary import CATEGORY_SEPARATOR

TASTE_SLOTS = 9  # up to 3 leaves in each of up to 3 favourite top-level categories


@dataclass
class People:
    person_keys: pa.Array
    country: np.ndarray           # index into COUNTRIES
    registered: np.ndarray
    arrival: np.ndarray           # first active day (index)
    activity: np.ndarray          # expected sessions per active day
    fav_tops: list[list[int]]     # favourite top-level categories, heaviest first
    taste_leaf: np.ndarray        # (persons, K) leaf indices
    taste_cum: np.ndarray         # (persons, K) cumulative weights, padded with 1.0
    taste_n: np.ndarray
    fav_brand: np.ndarray         # (persons, 2)
    price_offset: np.ndarray      # preferred log-price offset within a leaf


def build_people(rng: np.random.Generator, cat: Catalog, *, users: int, days: int) -> People:
    countries, country_p = probs(COUNTRIES)
    country = rng.choice(len(countries), size=users, p=country_p)
    registered = rng.random(users) < REGISTERED_SHARE
    arrival = np.zeros(users, dtype=np.int64)
    if days > 1:
        late = rng.random(users) >= ACTIVE_AT_START_SHARE
        arrival[late] = rng.integers(1, days, late.sum())
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, users)
    activity *= SESSIONS_PER_ACTIVE_DAY / activity.mean()

    n_fav, top_order, top_w = _favourite_tops(rng, cat, users)
    taste_leaf, taste_cum, taste_n = _favourite_leaves(rng, cat, top_order, top_w)
    by_weight = np.take_along_axis(top_order[:, :3], np.argsort(-top_w, axis=1, kind="stable"), axis=1)
    fav_tops = [row[:k] for row, k in zip(by_weight.tolist(), n_fav.tolist())]
    fav_brand = _favourite_brands(rng, cat, top_order, n_fav)
    price_offset = rng.normal(0.0, 0.35, users)
    width = max(6, len(str(users)))
    return People(person_keys=numbered("p", np.arange(1, users + 1), width), country=country,
                  registered=registered, arrival=arrival, activity=activity, fav_tops=fav_tops,
                  taste_leaf=taste_leaf, taste_cum=taste_cum, taste_n=taste_n, fav_brand=fav_brand,
                  price_offset=price_offset)


def _favourite_tops(rng: np.random.Generator, cat: Catalog, users: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-3 favourite top-level categories (more popular ones more often), Dirichlet-weighted.

    Returns (how many, every top in the person's order of preference, weights of the first three)."""
    n_tops = len(TOP_CATEGORIES)
    top_pop = np.bincount(cat.leaf_top, weights=cat.leaf_pop, minlength=n_tops)
    n_fav = rng.choice([1, 2, 3], size=users, p=[0.45, 0.35, 0.20])
    top_order = np.argsort(-(np.log(top_pop) + rng.gumbel(size=(users, n_tops))), axis=1, kind="stable")
    top_w = rng.dirichlet(np.ones(3), size=users)
    top_w[n_fav < 2, 1] = 0.0
    top_w[n_fav < 3, 2] = 0.0
    top_w /= top_w.sum(axis=1, keepdims=True)
    return n_fav, top_order, top_w


def _favourite_leaves(rng: np.random.Generator, cat: Catalog, top_order: np.ndarray, top_w: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inside each favourite top: 1-3 of its leaves (popular leaves more often), Dirichlet-weighted.

    Returns (leaf per taste slot, cumulative weights padded with 1.0, slots in use), used slots first."""
    n_tops, users, K = len(TOP_CATEGORIES), top_order.shape[0], TASTE_SLOTS
    max_leaves = max(int((cat.leaf_top == t).sum()) for t in range(n_tops))
    top_leaves = np.full((n_tops, max_leaves), -1)
    for t in range(n_tops):
        lv = np.flatnonzero(cat.leaf_top == t)
        top_leaves[t, :lv.size] = lv
    taste_leaf = np.full((users, K), -1, dtype=np.int64)
    taste_w = np.zeros((users, K))
    for slot in range(3):
        t = top_order[:, slot]
        cand = top_leaves[t]                                    # (users, max_leaves)
        logp = np.where(cand >= 0, np.log(cat.leaf_pop[np.maximum(cand, 0)]), -np.inf)
        order = np.argsort(-(logp + rng.gumbel(size=logp.shape)), axis=1, kind="stable")
        n_avail = (cand >= 0).sum(axis=1)
        n_pick = np.minimum(rng.integers(1, 4, users), n_avail)
        w = rng.dirichlet(np.full(3, 0.8), size=users)
        w[np.arange(3)[None, :] >= n_pick[:, None]] = 0.0
        w /= w.sum(axis=1, keepdims=True)
        for j in range(min(3, max_leaves)):
            taste_leaf[:, 3 * slot + j] = np.take_along_axis(cand, order[:, j:j + 1], axis=1)[:, 0]
            taste_w[:, 3 * slot + j] = w[:, j] * top_w[:, slot]
    taste_w[taste_leaf < 0] = 0.0
    # Pack non-zero weights first so that a person's used slots come first.
    pack = np.argsort(taste_w <= 0, axis=1, kind="stable")
    taste_leaf = np.take_along_axis(taste_leaf, pack, axis=1)
    taste_w = np.take_along_axis(taste_w, pack, axis=1)
    taste_n = (taste_w > 0).sum(axis=1)
    taste_cum = np.cumsum(taste_w, axis=1) / taste_w.sum(axis=1, keepdims=True)
    taste_cum[np.arange(K)[None, :] >= taste_n[:, None] - 1] = 1.0
    return taste_leaf, taste_cum, taste_n


def _favourite_brands(rng: np.random.Generator, cat: Catalog, top_order: np.ndarray, n_fav: np.ndarray
                      ) -> np.ndarray:
    """Two favourite brands: one selling in the main favourite top, one in any favourite top."""
    users = top_order.shape[0]
    fav_brand = np.zeros((users, 2), dtype=np.int64)
    second_top = top_order[np.arange(users), rng.integers(0, n_fav)]
    for col, which in ((0, top_order[:, 0]), (1, second_top)):
        for t in range(len(TOP_CATEGORIES)):
            at = np.flatnonzero(which == t)
            fav_brand[at, col] = rng.choice(cat.top_brands[t], size=at.size, p=cat.top_brand_p[t])
    return fav_brand


def profiles(rng: np.random.Generator, ppl: People, cat: Catalog, user_ids: pa.Array, persons: np.ndarray,
             signup_us: np.ndarray) -> pa.Table:
    """Onboarding profiles for the accounts `user_ids` of `persons`: declared categories follow the person's
    real tastes; age band and gender are sometimes left blank."""
    declared = [_declared_categories(ppl, cat, p) for p in persons.tolist()]
    n = persons.size
    bands, band_p = probs(AGE_BANDS)
    age = np.array(bands, dtype=object)[rng.choice(len(bands), size=n, p=band_p)]
    age[rng.random(n) < 0.2] = None
    women = np.array([TOP_CATEGORIES.index("Women") in ppl.fav_tops[p] for p in persons.tolist()], dtype=bool)
    men = np.array([TOP_CATEGORIES.index("Men") in ppl.fav_tops[p] for p in persons.tolist()], dtype=bool)
    p_female = np.where(women & ~men, 0.8, np.where(men & ~women, 0.1, 0.45))
    r = rng.random(n)
    gender = np.where(r < p_female, "female", np.where(r < 0.9, "male", "unspecified")).astype(object)
    gender[rng.random(n) < 0.3] = None
    return pa.table({
        "user_id": user_ids,
        "declared_categories": pa.array(declared, pa.list_(STRING)),
        "age_band": pa.array(age.tolist(), STRING),
        "gender": pa.array(gender.tolist(), STRING),
        "country": take(pa.array(list(COUNTRIES), STRING), ppl.country[persons]),
        "signup_time": pa.array(signup_us, pa.timestamp("us", tz="UTC")),
    }, schema=schemas.load("profiles").arrow())


def _declared_categories(ppl: People, cat: Catalog, p: int) -> list[str]:
    """The level-2 category of the person's heaviest leaf in each favourite top-level category."""
    paths = []
    for t in ppl.fav_tops[p]:
        leaves = ppl.taste_leaf[p, :ppl.taste_n[p]]
        in_top = leaves[cat.leaf_top[leaves] == t]
        path = cat.leaf_paths[int(in_top[0])].as_py() if in_top.size else TOP_CATEGORIES[t]
        mid = CATEGORY_SEPARATOR.join(path.split(CATEGORY_SEPARATOR)[:2])
        if mid not in paths:
            paths.append(mid)
    return paths
