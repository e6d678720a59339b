"""The shop the storefront serves on a simulated day: the generator's world rebuilt from `truth/shop.json`, plus the
shoppers and items that arrived on the simulated days up to that one.

Arrivals are drawn from their own random stream per simulated day (never from what happened on the storefront),
so the population of day D is the same whatever the published lists were, and any day can be rebuilt alone.
New shoppers reuse the generator's `build_people` (tastes, country, activity); each has one personal device and,
when registered, one account that signs up (and logs in) on the day they arrive. New items go into existing
leaves, with a leaf mate's popularity, a price in the leaf's range and a brand that sells there; they are always
in stock at their base price.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from jobs.shop.arrays import DAY_US, STRING, hex_strings, numbered, probs, rng_for
from jobs.shop.catalog import CURRENCY, Catalog, Market, item_id_width
from jobs.shop.generator import SHOP_FILE, build_world, market_through
from jobs.shop.identities import DEVICE_TYPES, PERSONAL, Identity
from jobs.shop.knobs import DEVICE_TYPE_SHARE, PROFILE_SHARE
from jobs.shop.people import People, build_people
from jobs.storage import io
from jobs.storage.layout import Layout

# Random streams of the simulator (the generator's use 1-12), per simulated day.
SIM_PEOPLE, SIM_ITEMS, SIM_DAY = 101, 102, 103


@dataclass(frozen=True)
class Arrivals:
    """How fast the shop grows on simulated days, as shares of the generated shop's size per day."""
    people_per_day: float = 0.003
    items_per_day: float = 0.002


@dataclass
class Population:
    """Everyone and everything on simulated day index `d` (days since the shop's start)."""
    start: dt.date
    d: int
    first_sim_day: int            # the day index after the generated period
    seed: int
    catalog: Catalog
    market: Market
    people: People
    ident: Identity
    new_persons: np.ndarray       # persons that arrive today
    new_accounts: np.ndarray      # accounts that sign up today (`ident.account_signup_day == d`)

    @property
    def day(self) -> dt.date:
        return self.start + dt.timedelta(days=self.d)


def shop_args(data_root: str) -> dict:
    """The generator's arguments, as `generate_shop` recorded them; a clear error for shops made before that."""
    path = Layout(data_root).truth(SHOP_FILE)
    args = io.read_json(path)
    if args is None:
        raise FileNotFoundError(f"{path} is missing: the storefront simulator continues a shop written by "
                                "`recs generate-shop` (which records its arguments there); re-generate the shop")
    return args


def population_on(data_root: str, day: dt.date, arrivals: Arrivals) -> Population:
    """The population of `day`, which must come after the generated period."""
    args = shop_args(data_root)
    start = dt.date.fromisoformat(args["start"])
    d, first = (day - start).days, args["days"]
    if d < first:
        raise ValueError(f"simulate-storefront: {day} falls inside the generated period ({args['start']} + "
                         f"{first} days): simulated days start on {start + dt.timedelta(days=first)}")
    world = build_world(args["seed"], start, days=first, users=args["users"], items=args["items"])
    market = market_through(world, args["seed"], d)
    cat, ppl, ident = world.catalog, world.people, world.ident
    new_persons = new_accounts = np.zeros(0, np.int64)
    for k in range(d - first + 1):
        today = first + k
        cat, market = _add_items(rng_for(args["seed"], SIM_ITEMS, k), cat, market, today,
                                 n=_count(args["items"], arrivals.items_per_day))
        n_before, acc_before = ppl.country.size, len(ident.account_ids)
        ppl, ident = _add_people(rng_for(args["seed"], SIM_PEOPLE, k), world.catalog, ppl, ident,
                                                  today, n=_count(args["users"], arrivals.people_per_day))
        new_persons = np.arange(n_before, ppl.country.size)
        new_accounts = np.arange(acc_before, len(ident.account_ids))
    return Population(start=start, d=d, first_sim_day=first, seed=args["seed"], catalog=cat, market=market,
                      people=ppl, ident=ident, new_persons=new_persons, new_accounts=new_accounts)


def _count(size: int, rate: float) -> int:
    return int(round(size * rate))


def _add_items(rng: np.random.Generator, cat: Catalog, market: Market, d: int, *, n: int) -> tuple[Catalog, Market]:
    if n <= 0:
        return cat, market
    first_new = len(cat.item_ids)
    leaf_p = cat.leaf_pop / cat.leaf_pop.sum()
    leaf = rng.choice(cat.n_leaves, size=n, p=leaf_p)
    pop, brand, price_z = np.empty(n), np.empty(n, np.int64), rng.normal(0.0, 0.35, n)
    leaf_median = np.exp(np.log(cat.base_price) - cat.price_z)  # the same for every item of a leaf
    for j, lf in enumerate(leaf.tolist()):
        mates = cat.leaf_items[lf]
        pop[j] = cat.popularity[rng.choice(mates)]  # a leaf mate's popularity: a new best seller now and then
        top = int(cat.leaf_top[lf])
        brand[j] = rng.choice(cat.top_brands[top], p=cat.top_brand_p[top])
    median = leaf_median[np.array([cat.leaf_items[lf][0] for lf in leaf.tolist()])]
    base_price = np.maximum(0.99, np.round(median * np.exp(price_z)) - 0.01)
    price_z = np.log(base_price / median)
    width = item_id_width(first_new)
    ids = numbered("i", np.arange(first_new + 1, first_new + n + 1), width)
    paths = cat.leaf_paths.take(pa.array(leaf))
    names = [cat.brand_names[b] for b in brand.tolist()]
    leaf_names = [p.split(" > ")[-1] for p in paths.to_pylist()]
    titles = [f"{b} {name}" for b, name in zip(names, leaf_names)]
    created = d * DAY_US + rng.integers(0, 86_400, n) * 1_000_000
    static = pa.table({
        "item_id": ids, "title": pa.array(titles, STRING), "category_path": paths,
        "brand": pa.array(names, STRING), "color": pa.nulls(n, STRING), "material": pa.nulls(n, STRING),
        "description": pa.array([f"{t}. New in." for t in titles], STRING),
        "currency": pa.array([CURRENCY] * n, STRING),
        "image_url": pa.array([f"https://img.example.com/items/{i}.jpg" for i in ids.to_pylist()], STRING),
        "created_offset_us": pa.array(created, pa.int64()),
        "margin_rate": pa.array(np.round(rng.uniform(0.1, 0.6, n), 3), pa.float64()),
    }, schema=cat.static.schema)
    item_leaf = np.concatenate([cat.leaf, leaf])
    cat = dataclasses.replace(
        cat, item_ids=pa.concat_arrays([cat.item_ids, ids]), leaf=item_leaf,
        brand=np.concatenate([cat.brand, brand]), base_price=np.concatenate([cat.base_price, base_price]),
        price_z=np.concatenate([cat.price_z, price_z]), popularity=np.concatenate([cat.popularity, pop]),
        first_day=np.concatenate([cat.first_day, np.full(n, d)]), static=pa.concat_tables([cat.static, static]),
        leaf_items=[np.flatnonzero(item_leaf == lf) for lf in range(cat.n_leaves)])
    market = Market(price=np.concatenate([market.price, base_price]),
                    available=np.concatenate([market.available, np.ones(n, bool)]),
                    stock=np.concatenate([market.stock, np.full(n, 50, market.stock.dtype)]))
    return cat, market


def _add_people(rng: np.random.Generator, cat: Catalog, ppl: People, ident: Identity, d: int, *, n: int
                ) -> tuple[People, Identity]:
    """`n` shoppers arriving on day `d`: the generator's tastes, one personal device each, an account (signing up
    on day `d`) for the registered ones."""
    if n <= 0:
        return ppl, ident
    new = build_people(rng, cat, users=n, days=1)
    first = ppl.country.size
    index = np.arange(first, first + n)
    width = max(6, len(ppl.person_keys[0].as_py()) - 1)
    keys = numbered("p", index + 1, width)
    ppl = People(person_keys=pa.concat_arrays([ppl.person_keys, keys]),
                 country=np.concatenate([ppl.country, new.country]),
                 registered=np.concatenate([ppl.registered, new.registered]),
                 arrival=np.concatenate([ppl.arrival, np.full(n, d)]),
                 activity=np.concatenate([ppl.activity, new.activity]), fav_tops=ppl.fav_tops + new.fav_tops,
                 taste_leaf=np.concatenate([ppl.taste_leaf, new.taste_leaf]),
                 taste_cum=np.concatenate([ppl.taste_cum, new.taste_cum]),
                 taste_n=np.concatenate([ppl.taste_n, new.taste_n]),
                 fav_brand=np.concatenate([ppl.fav_brand, new.fav_brand]),
                 price_offset=np.concatenate([ppl.price_offset, new.price_offset]))
    # one personal device each, and an account (signing up today) for the registered ones
    n_dev = len(ident.device_ids)
    devices = np.arange(n_dev, n_dev + n)
    types, type_p = probs(DEVICE_TYPE_SHARE)
    dev_type = np.array([DEVICE_TYPES.index(t) for t in types])[rng.choice(len(types), n, p=type_p)]
    reg = index[new.registered]
    n_acc = len(ident.account_ids)
    accounts = np.full(n, -1)
    accounts[new.registered] = np.arange(n_acc, n_acc + reg.size)
    acc_width = max(6, len(ident.account_ids[0].as_py()) - 1) if n_acc else 6
    hashes = [hashlib.sha256(f"shopper.{p:07d}@example.com".encode()).hexdigest() for p in reg.tolist()]
    width_s = ident.slot_cum.shape[1]
    cum = np.ones((n, width_s))
    ident = dataclasses.replace(
        ident,
        account_ids=pa.concat_arrays([ident.account_ids, numbered("u", np.arange(n_acc + 1, n_acc + reg.size + 1),
                                                                  acc_width)]),
        account_person=np.concatenate([ident.account_person, reg]),
        account_email_hash=pa.concat_arrays([ident.account_email_hash, pa.array(hashes, STRING)]),
        account_has_profile=np.concatenate([ident.account_has_profile, rng.random(reg.size) < PROFILE_SHARE]),
        account_signup_day=np.concatenate([ident.account_signup_day, np.full(reg.size, d)]),
        account_signup_us=np.concatenate([ident.account_signup_us, np.zeros(reg.size, np.int64)]),
        device_ids=pa.concat_arrays([ident.device_ids, hex_strings(rng, n, 15, "a")]),
        device_type=np.concatenate([ident.device_type, dev_type]),
        device_kind=np.concatenate([ident.device_kind, np.full(n, PERSONAL)]),
        device_variant=np.concatenate([ident.device_variant, np.zeros(n, ident.device_variant.dtype)]),
        person_account=np.concatenate([ident.person_account, accounts]),
        slot_person=np.concatenate([ident.slot_person, index]),
        slot_device=np.concatenate([ident.slot_device, devices]),
        slot_account=np.concatenate([ident.slot_account, accounts]),
        slot_login_day=np.concatenate([ident.slot_login_day, np.where(accounts >= 0, d, np.iinfo(np.int64).max // 4)]),
        slot_off=np.concatenate([ident.slot_off, ident.slot_off[-1] + np.arange(1, n + 1)]),
        slot_cum=np.concatenate([ident.slot_cum, cum]),
        slot_n=np.concatenate([ident.slot_n, np.ones(n, ident.slot_n.dtype)]))
    return ppl, ident
