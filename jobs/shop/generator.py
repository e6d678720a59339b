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

import binascii
import datetime as dt
import hashlib
import logging
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

import schemas
from jobs.storage import io
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)

DAY_US = 86_400 * 1_000_000
EVENT_TYPES: tuple[str, ...] = schemas.load("events").field("event_type").enum
DEVICE_TYPES: tuple[str, ...] = schemas.load("events").field("device_type").enum
_ET = {name: code for code, name in enumerate(EVENT_TYPES)}
ITEM_EVENT_TYPES = ("product_view", "add_to_cart", "remove_from_cart", "purchase", "return", "rec_impression",
                    "rec_click")

EXPERIMENT_ID = "exp-home-1"
VARIANTS = ("control", "treatment")
CURRENCY = "EUR"
DEFECT_KINDS = ("null_required", "unknown_event_type", "bad_price", "bad_quantity", "duplicate_event_id",
                "outside_day", "unknown_item")
# Event types no collector should send; each is wrong as is, not a case or spelling variant of a valid one.
UNKNOWN_EVENT_TYPES = ("page_view", "wishlist_add", "video_play", "share_click")

COUNTRIES = {"GB": 0.40, "DE": 0.15, "FR": 0.12, "US": 0.10, "NL": 0.08, "ES": 0.08, "IT": 0.07}
# Share of devices by type; registered people's busiest device is as likely to be any type, so traffic
# shares follow these closely (ios ~25%).
DEVICE_TYPE_SHARE = {"desktop": 0.35, "mobile_web": 0.25, "ios": 0.25, "android": 0.15}
ENTRY_SOURCES = {"direct": 0.35, "search_engine": 0.25, "ads": 0.18, "social": 0.12, "email": 0.10}
AGE_BANDS = {"18-24": 0.18, "25-34": 0.30, "35-44": 0.24, "45-54": 0.15, "55-64": 0.09, "65+": 0.04}

# Behaviour knobs (shares and probabilities), in one place so the figures in the module docstring hold.
REGISTERED_SHARE = 0.70
ACTIVE_AT_START_SHARE = 0.70
PRE_EXISTING_ITEM_SHARE = 0.85
NEVER_SELLS_SHARE = 0.02
TWO_ACCOUNTS_SHARE = 0.02
HOUSEHOLD_DEVICE_SHARE = 0.03
PROFILE_SHARE = 0.40
DEVICES_PER_REGISTERED = (0.55, 0.35, 0.10)  # 1, 2, 3 devices
EXPLORE_SHARE = 0.15
SESSIONS_PER_ACTIVE_DAY = 0.34  # tuned so that events / (users * days) comes out ~1.1
ACTIVITY_SIGMA = 1.0
LOGIN_DELAY_P = 0.25  # geometric: days from a newcomer's arrival to their login on a device (mean 3)
REAUTH_P = 0.03  # a logged-in session that logs in again anyway
LOGIN_MID_SESSION_P = 0.4  # the login comes after 1-2 anonymous product views
SEARCH_P, CATEGORY_VIEW_P, REC_BLOCK_P = 0.18, 0.20, 0.08
REC_SLOTS = 4
REC_CLICK_P = {"control": 0.12, "treatment": 0.20}
VIEWS_GEOMETRIC_P = 0.4  # product views per session: geometric, mean 2.5
CART_P, CONVERT_P = 0.09, 0.45
REMOVE_P_CONVERTED, REMOVE_P_ABANDONED = 0.10, 0.30
RETURN_P, RETURN_DAYS = 0.06, (2, 21)
OUT_OF_STOCK_P, RESTOCK_P, PRICE_CHANGE_P = 0.01, 0.25, 0.01
UNAVAILABLE_VIEW_FACTOR = 0.15  # out-of-stock pages still get some views, never carts
BRAND_FIT, PRICE_BAND_SIGMA, PRICE_FIT_FLOOR = 4.0, 0.4, 0.15
KIOSK_ACCOUNTS = (25, 300)  # at least / at most accounts per kiosk; ~10% of users in between

# Top-level category -> (median price, materials, {level 2: [leaves]}).
CATEGORY_TREE: dict[str, tuple[float, tuple[str, ...], dict[str, list[str]]]] = {
    "Women": (45.0, ("Cotton", "Linen", "Wool", "Leather", "Denim", "Silk", "Suede"), {
        "Clothing": ["Dresses", "Tops", "Jeans", "Skirts", "Knitwear"],
        "Shoes": ["Sneakers", "Boots", "Sandals", "Heels", "Flats"],
        "Bags": ["Handbags", "Backpacks", "Totes", "Clutches", "Purses"],
        "Accessories": ["Scarves", "Hats", "Belts", "Sunglasses", "Jewellery"]}),
    "Men": (50.0, ("Cotton", "Linen", "Wool", "Leather", "Denim", "Suede", "Twill"), {
        "Clothing": ["Shirts", "T-Shirts", "Jeans", "Jackets", "Knitwear"],
        "Shoes": ["Sneakers", "Boots", "Loafers", "Sandals", "Brogues"],
        "Accessories": ["Watches", "Belts", "Wallets", "Caps", "Sunglasses"],
        "Underwear": ["Socks", "Boxers", "Briefs", "Pyjamas", "Vests"]}),
    "Kids": (22.0, ("Cotton", "Fleece", "Jersey", "Wood", "Plush"), {
        "Baby": ["Bodysuits", "Sleepsuits", "Bibs", "Blankets", "Booties"],
        "Girls": ["Dresses", "Tops", "Leggings", "Coats", "Shoes"],
        "Boys": ["T-Shirts", "Trousers", "Hoodies", "Coats", "Shoes"],
        "Toys": ["Puzzles", "Soft Toys", "Building Sets", "Dolls", "Board Games"]}),
    "Home": (35.0, ("Cotton", "Linen", "Ceramic", "Glass", "Oak", "Steel", "Wool"), {
        "Kitchen": ["Cookware", "Knives", "Mugs", "Storage Jars", "Utensils"],
        "Bedding": ["Duvets", "Pillows", "Sheets", "Throws", "Mattress Toppers"],
        "Decor": ["Candles", "Vases", "Frames", "Mirrors", "Cushions"],
        "Bath": ["Towels", "Bath Mats", "Robes", "Shower Curtains", "Soap Dispensers"]}),
    "Beauty": (18.0, (), {
        "Skincare": ["Moisturisers", "Serums", "Cleansers", "Face Masks", "Sunscreen"],
        "Makeup": ["Lipstick", "Foundation", "Mascara", "Eyeshadow", "Blush"],
        "Hair": ["Shampoo", "Conditioner", "Styling Gels", "Hair Oils", "Hairbrushes"],
        "Fragrance": ["Eau de Parfum", "Eau de Toilette", "Body Mists", "Gift Sets", "Home Scents"]}),
    "Sports": (48.0, ("Polyester", "Nylon", "Mesh", "Rubber", "Merino", "Aluminium"), {
        "Running": ["Running Shoes", "Running Tops", "Running Tights", "Running Jackets", "Hydration Packs"],
        "Fitness": ["Yoga Mats", "Dumbbells", "Resistance Bands", "Gym Bags", "Training Tops"],
        "Outdoor": ["Hiking Boots", "Tents", "Rucksacks", "Fleeces", "Waterproofs"],
        "Cycling": ["Helmets", "Cycling Jerseys", "Bike Lights", "Cycling Gloves", "Bottles"]}),
}
COLORS = ("Black", "White", "Navy", "Grey", "Beige", "Red", "Green", "Blue", "Pink", "Brown", "Olive", "Burgundy")
_BRAND_HEADS = ("Nor", "Vel", "Ast", "Bri", "Cal", "Dun", "El", "Fen", "Gal", "Hal", "Is", "Jun", "Kal", "Lum",
                "Mar", "Nev", "Or", "Pel", "Quin", "Ros", "Sol", "Tor", "Ul", "Val", "Wyn", "Zen")
_BRAND_TAILS = ("vik", "ora", "ton", "ley", "ara", "wood", "dale", "ena", "ix", "ano", "ford", "mere", "sen",
                "elle", "berg")
_BRAND_SUFFIXES = ("", " & Co", " Studio", " Atelier", " Works", " Label")
# Sessions start more often at lunchtime and in the evening (UTC; most shoppers are in Europe).
_HOURLY_TRAFFIC = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 5, 4.5, 4, 4, 4.5, 5.5, 6.5,
                            7, 6, 4, 2], dtype=float)

_STRING = pa.string()
TRUTH_SCHEMAS: dict[str, pa.Schema] = {
    "identities": pa.schema([("id_type", _STRING), ("id", _STRING), ("person", _STRING)]),
    "shared_devices": pa.schema([("anonymous_id", _STRING), ("kind", _STRING), ("n_persons", pa.int32())]),
    "persons": pa.schema([("person", _STRING), ("country", _STRING),
                          ("favourite_categories", pa.list_(_STRING)), ("is_registered", pa.bool_())]),
    "defects": pa.schema([("event_id", _STRING), ("defect", _STRING)]),
}


# ----------------------------------------------------------------------------------------------------------
# the world: everything fixed for the whole period


@dataclass
class _Catalog:
    item_ids: pa.Array            # "i000123"
    leaf: np.ndarray              # leaf index per item
    brand: np.ndarray             # brand index per item
    base_price: np.ndarray
    price_z: np.ndarray           # log(price / leaf median): where the item sits in its leaf's price range
    popularity: np.ndarray        # Zipf within leaf x leaf popularity; 0 = never sells
    first_day: np.ndarray         # first day (index) listed; -1 = before start
    static: pa.Table              # title, category_path, brand, ... in catalog schema order (no dynamic cols)
    leaf_items: list[np.ndarray]  # item indices per leaf
    leaf_anchor: np.ndarray       # each leaf's most popular item: listed before start, always in stock
    leaf_pop: np.ndarray
    leaf_paths: pa.Array          # "Women > Shoes > Sneakers"
    leaf_top: np.ndarray
    queries: pa.Array             # search vocabulary: leaf names then brand names, lower case
    n_leaves: int
    n_brands: int
    brand_names: list[str]
    top_brands: list[np.ndarray]  # brands that sell in each top-level category
    top_brand_p: list[np.ndarray]


@dataclass
class _People:
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


@dataclass
class _Identity:
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
class _World:
    start: dt.date
    days: int
    catalog: _Catalog
    people: _People
    ident: _Identity


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent, reproducible stream per (seed, purpose, day)."""
    return np.random.default_rng([seed, *stream])


def _probs(d: dict[str, float]) -> tuple[list[str], np.ndarray]:
    p = np.array(list(d.values()), dtype=float)
    return list(d), p / p.sum()


def _hex_strings(rng: np.random.Generator, n: int, n_hex: int, prefix: str = "") -> pa.StringArray:
    """`n` random ids `prefix + n_hex hex digits`, built straight into an Arrow buffer (no Python loop)."""
    raw = rng.bytes(n * ((n_hex + 1) // 2))
    digits = np.frombuffer(binascii.hexlify(raw), dtype=np.uint8).reshape(n, -1)[:, :n_hex]
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    buf = np.empty((n, len(head) + n_hex), dtype=np.uint8)
    buf[:, :len(head)] = head
    buf[:, len(head):] = digits
    offsets = np.arange(n + 1, dtype=np.int32) * buf.shape[1]
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(buf.tobytes()))


def _numbered(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    return pa.array([f"{prefix}{n:0{width}d}" for n in numbers.tolist()], type=_STRING)


def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """values[idx] with null where idx < 0."""
    idx = np.asarray(idx, dtype=np.int64)
    return values.take(pa.array(idx, mask=idx < 0))


def _build_catalog(rng: np.random.Generator, *, items: int, days: int) -> _Catalog:
    tops = list(CATEGORY_TREE)
    n_leaves = int(min(120, max(12, items // 8)))
    # Leaves spread over every top-level category and, inside one, over its level-2 categories first.
    leaves = []  # (top index, mid, leaf)
    per_top = [n_leaves // len(tops) + (1 if t < n_leaves % len(tops) else 0) for t in range(len(tops))]
    for t, top in enumerate(tops):
        mids = CATEGORY_TREE[top][2]
        round_robin = [(mid, names[j]) for j in range(5) for mid, names in mids.items() if j < len(names)]
        leaves += [(t, mid, leaf) for mid, leaf in round_robin[:per_top[t]]]
    leaf_top = np.array([t for t, _, _ in leaves])
    leaf_paths = [f"{tops[t]} > {mid} > {leaf}" for t, mid, leaf in leaves]
    leaf_pop = rng.lognormal(0.0, 0.8, n_leaves)
    top_median = np.array([CATEGORY_TREE[t][0] for t in tops])
    leaf_median = top_median[leaf_top] * rng.lognormal(0.0, 0.45, n_leaves)

    # Items per leaf: at least one, the rest in proportion to a lognormal leaf size.
    size_w = rng.lognormal(0.0, 0.6, n_leaves)
    counts = 1 + rng.multinomial(items - n_leaves, size_w / size_w.sum())
    leaf_of_sorted = np.repeat(np.arange(n_leaves), counts)
    perm = rng.permutation(items)  # item index -> position in leaf-sorted order, so ids don't reveal the leaf
    leaf = np.empty(items, dtype=np.int64)
    leaf[perm] = leaf_of_sorted
    # Zipf(1.0) popularity within each leaf, by a random rank; rank 1 is the leaf's anchor item.
    rank_sorted = np.arange(items) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    rank = np.empty(items, dtype=np.int64)
    rank[perm] = rank_sorted
    harmonic = np.bincount(leaf, weights=1.0 / rank, minlength=n_leaves)
    popularity = leaf_pop[leaf] * (1.0 / rank) / harmonic[leaf]
    anchor = rank == 1
    never_sells = (~anchor) & (rng.random(items) < NEVER_SELLS_SHARE)
    if not never_sells.any() and (~anchor).any():
        never_sells[np.flatnonzero(~anchor)[0]] = True  # "a few": at least one when there is room
    popularity[never_sells] = 0.0

    # Listing day: ~85% before start; every leaf's anchor too, so each leaf always has something to show.
    first_day = np.full(items, -1, dtype=np.int64)
    if days > 1:
        new = (~anchor) & (rng.random(items) >= PRE_EXISTING_ITEM_SHARE)
        first_day[new] = rng.integers(1, days, new.sum())

    # Brands: ~items/25, each selling in one or two top-level categories.
    n_brands = max(len(tops), round(items / 25))
    names = [h + t for h in _BRAND_HEADS for t in _BRAND_TAILS]
    names = [n + s for s in _BRAND_SUFFIXES for n in names]
    if n_brands > len(names):  # huge catalogs: numbered lines of the same names
        names += [f"{n} {k}" for k in range(2, 2 + n_brands // len(names)) for n in names]
    brand_names = [names[i] for i in rng.permutation(len(names))[:n_brands]]
    brand_top = np.arange(n_brands) % len(tops)
    brand_second = np.where(rng.random(n_brands) < 0.3, rng.integers(0, len(tops), n_brands), -1)
    brand_size = rng.lognormal(0.0, 1.0, n_brands)
    brand_tier = rng.lognormal(0.0, 0.35, n_brands)
    top_brands, top_brand_p = [], []
    for t in range(len(tops)):
        b = np.flatnonzero((brand_top == t) | (brand_second == t))
        top_brands.append(b)
        top_brand_p.append(brand_size[b] / brand_size[b].sum())
    brand = np.empty(items, dtype=np.int64)
    item_top = leaf_top[leaf]
    for t in range(len(tops)):
        at = np.flatnonzero(item_top == t)
        brand[at] = rng.choice(top_brands[t], size=at.size, p=top_brand_p[t])

    raw_price = leaf_median[leaf] * brand_tier[brand] * rng.lognormal(0.0, 0.25, items)
    base_price = np.maximum(0.99, np.round(raw_price) - 0.01)
    price_z = np.log(base_price / leaf_median[leaf])
    margin = np.round(rng.uniform(0.1, 0.6, items), 3)
    color_idx = rng.integers(0, len(COLORS), items)
    no_color = (tops.index("Beauty") == item_top) & (rng.random(items) < 0.5)
    material_pick = rng.random(items)

    # created_at relative to the start (the snapshot adds the start); before start or on the listing day
    created_offset = np.where(first_day < 0,
                              -rng.integers(1, 730 * DAY_US // 1_000_000, items) * 1_000_000,
                              first_day * DAY_US + rng.integers(0, DAY_US // 1_000_000, items) * 1_000_000)
    width = max(6, len(str(items)))
    item_ids = _numbered("i", np.arange(1, items + 1), width)
    titles, colors, materials, descriptions = [], [], [], []
    for i in range(items):
        _, mid, leaf_name = leaves[leaf[i]]
        top = tops[item_top[i]]
        mats = CATEGORY_TREE[top][1]
        color = None if no_color[i] else COLORS[color_idx[i]]
        material = mats[int(material_pick[i] * len(mats))] if mats else None
        words = [brand_names[brand[i]], color, material, leaf_name]
        title = " ".join(w for w in words if w)
        titles.append(title)
        colors.append(color)
        materials.append(material)
        descriptions.append(f"{title}. {mid} from {brand_names[brand[i]]}, part of our {top} range.")
    static = pa.table({
        "item_id": item_ids,
        "title": pa.array(titles, _STRING),
        "category_path": _take(pa.array(leaf_paths, _STRING), leaf),
        "brand": _take(pa.array(brand_names, _STRING), brand),
        "color": pa.array(colors, _STRING),
        "material": pa.array(materials, _STRING),
        "description": pa.array(descriptions, _STRING),
        "currency": pa.array([CURRENCY] * items, _STRING),
        "image_url": pa.array([f"https://img.example.com/items/{i}.jpg" for i in item_ids.to_pylist()], _STRING),
        "created_offset_us": pa.array(created_offset, pa.int64()),
        "margin_rate": pa.array(margin, pa.float64()),
    })
    leaf_items = [np.flatnonzero(leaf == l_) for l_ in range(n_leaves)]
    leaf_anchor = np.array([li[np.argmin(rank[li])] for li in leaf_items])
    queries = pa.array([leaf_name.lower() for _, _, leaf_name in leaves] + [b.lower() for b in brand_names], _STRING)
    return _Catalog(item_ids=item_ids, leaf=leaf, brand=brand, base_price=base_price, price_z=price_z,
                    popularity=popularity, first_day=first_day, static=static, leaf_items=leaf_items,
                    leaf_anchor=leaf_anchor,
                    leaf_pop=leaf_pop, leaf_paths=pa.array(leaf_paths, _STRING), leaf_top=leaf_top,
                    queries=queries, n_leaves=n_leaves, n_brands=n_brands, brand_names=brand_names,
                    top_brands=top_brands, top_brand_p=top_brand_p)


def _build_people(rng: np.random.Generator, cat: _Catalog, *, users: int, days: int) -> _People:
    n_tops = len(CATEGORY_TREE)
    countries, country_p = _probs(COUNTRIES)
    country = rng.choice(len(countries), size=users, p=country_p)
    registered = rng.random(users) < REGISTERED_SHARE
    arrival = np.zeros(users, dtype=np.int64)
    if days > 1:
        late = rng.random(users) >= ACTIVE_AT_START_SHARE
        arrival[late] = rng.integers(1, days, late.sum())
    activity = rng.lognormal(0.0, ACTIVITY_SIGMA, users)
    activity *= SESSIONS_PER_ACTIVE_DAY / activity.mean()

    # 1-3 favourite top-level categories (more popular ones more often), Dirichlet-weighted.
    top_pop = np.bincount(cat.leaf_top, weights=cat.leaf_pop, minlength=n_tops)
    n_fav = rng.choice([1, 2, 3], size=users, p=[0.45, 0.35, 0.20])
    top_order = np.argsort(-(np.log(top_pop) + rng.gumbel(size=(users, n_tops))), axis=1, kind="stable")
    top_w = rng.dirichlet(np.ones(3), size=users)
    top_w[n_fav < 2, 1] = 0.0
    top_w[n_fav < 3, 2] = 0.0
    top_w /= top_w.sum(axis=1, keepdims=True)
    # Inside each favourite top: 1-3 of its leaves (popular leaves more often), Dirichlet-weighted.
    max_leaves = max(int((cat.leaf_top == t).sum()) for t in range(n_tops))
    top_leaves = np.full((n_tops, max_leaves), -1)
    for t in range(n_tops):
        lv = np.flatnonzero(cat.leaf_top == t)
        top_leaves[t, :lv.size] = lv
    K = 9
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
    by_weight = np.take_along_axis(top_order[:, :3], np.argsort(-top_w, axis=1, kind="stable"), axis=1)
    fav_tops = [row[:k] for row, k in zip(by_weight.tolist(), n_fav.tolist())]

    # Two favourite brands: one selling in the main favourite top, one in any favourite top.
    fav_brand = np.zeros((users, 2), dtype=np.int64)
    second_top = top_order[np.arange(users), rng.integers(0, n_fav)]
    for col, which in ((0, top_order[:, 0]), (1, second_top)):
        for t in range(n_tops):
            at = np.flatnonzero(which == t)
            fav_brand[at, col] = rng.choice(cat.top_brands[t], size=at.size, p=cat.top_brand_p[t])
    price_offset = rng.normal(0.0, 0.35, users)
    width = max(6, len(str(users)))
    return _People(person_keys=_numbered("p", np.arange(1, users + 1), width), country=country,
                   registered=registered, arrival=arrival, activity=activity, fav_tops=fav_tops,
                   taste_leaf=taste_leaf, taste_cum=taste_cum, taste_n=taste_n, fav_brand=fav_brand,
                   price_offset=price_offset)


def _build_identity(rng: np.random.Generator, people: _People, *, days: int, start_us: int) -> _Identity:
    users = people.registered.size
    reg = np.flatnonzero(people.registered)
    never = np.iinfo(np.int64).max // 4

    # Accounts: one per registered person, two for ~2% (same email).
    two = reg[rng.random(reg.size) < TWO_ACCOUNTS_SHARE]
    if two.size == 0 and reg.size:  # small shops still get one, so every case is there to test
        two = rng.choice(reg, size=1)
    account_person = np.concatenate([reg, two])
    n_acc = account_person.size
    width = max(6, len(str(n_acc)))
    account_ids = _numbered("u", rng.permutation(n_acc) + 1, width)
    primary = np.full(users, -1)
    primary[reg] = np.arange(reg.size)
    second = np.full(users, -1)
    second[two] = reg.size + np.arange(two.size)
    hashes = {}
    for p in reg.tolist():
        email = f" Shopper.{p:07d}@Example.com "  # collectors hash the trimmed, lower-cased address
        hashes[p] = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    account_email_hash = pa.array([hashes[p] for p in account_person.tolist()], _STRING)
    account_has_profile = rng.random(n_acc) < PROFILE_SHARE
    pre_existing = people.arrival[account_person] == 0
    account_signup_day = np.where(pre_existing, -1, never)
    account_signup_us = np.where(pre_existing,
                                 start_us - rng.integers(1, 2 * 365 * 86_400, n_acc) * 1_000_000, 0)

    # Personal devices: guests 1, registered 1-3 (2+ with two accounts, one account per device).
    n_dev = np.ones(users, dtype=np.int64)
    n_dev[reg] = rng.choice([1, 2, 3], size=reg.size, p=DEVICES_PER_REGISTERED)
    n_dev[two] = np.maximum(n_dev[two], 2)
    dev_person = np.repeat(np.arange(users), n_dev)
    dev_rank = np.arange(dev_person.size) - np.repeat(np.cumsum(n_dev) - n_dev, n_dev)
    n_personal = dev_person.size
    types, type_p = _probs(DEVICE_TYPE_SHARE)
    dev_type = np.array([DEVICE_TYPES.index(t) for t in types])[rng.choice(len(types), n_personal, p=type_p)]
    dev_kind = np.zeros(n_personal, dtype=np.int64)
    weight = np.where(dev_rank == 0, 1.0, rng.uniform(0.15, 0.7, n_personal))  # the first device is the busiest
    slot_account = np.where(people.registered[dev_person],
                            np.where((dev_rank % 2 == 1) & (second[dev_person] >= 0), second[dev_person],
                                     primary[dev_person]), -1)

    # Household devices: a registered person's device that a second registered person (same country) uses too.
    reg_devices = np.flatnonzero(people.registered[dev_person])
    n_house = round(HOUSEHOLD_DEVICE_SHARE * n_personal) if reg.size >= 2 else 0
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
    dev_kind[house_dev] = 1
    household_partners = {int(d): [int(dev_person[d]), int(p)] for d, p in zip(house_dev, partners)}

    slot_person = np.concatenate([dev_person, partners])
    slot_device = np.concatenate([np.arange(n_personal), house_dev])
    slot_weight = np.concatenate([weight, np.full(partners.size, 0.45)])
    slot_account = np.concatenate([slot_account, primary[partners]])
    # Login day (a session there is guaranteed): people already shopping at the start log in on some day of
    # the period; newcomers a geometric delay after arriving, redrawn inside the days left if it runs past
    # the end. Either way logins (and the sessions they force) spread evenly: no spike on the first or last day.
    arrival = people.arrival[slot_person]
    login_day = arrival + rng.geometric(LOGIN_DELAY_P, slot_person.size) - 1
    redraw = (login_day > days - 1) | (arrival == 0)
    login_day[redraw] = arrival[redraw] + (rng.random(int(redraw.sum())) * (days - arrival[redraw])).astype(np.int64)
    slot_login_day = np.where(people.registered[slot_person], login_day, never)
    order = np.lexsort((slot_device, slot_person))
    slot_person, slot_device, slot_weight, slot_account, slot_login_day = (
        a[order] for a in (slot_person, slot_device, slot_weight, slot_account, slot_login_day))
    slot_n = np.bincount(slot_person, minlength=users)
    slot_off = np.concatenate([[0], np.cumsum(slot_n)])
    width_s = int(slot_n.max())
    rank_in_person = np.arange(slot_person.size) - slot_off[slot_person]
    slot_w = np.zeros((users, width_s))
    slot_w[slot_person, rank_in_person] = slot_weight
    slot_cum = np.cumsum(slot_w, axis=1) / slot_w.sum(axis=1, keepdims=True)
    slot_cum[np.arange(width_s)[None, :] >= slot_n[:, None] - 1] = 1.0

    # Kiosks: each used by many accounts, one logged-in session each on a day the person is active.
    n_kiosks = max(1, users // 20000)
    per_kiosk = int(min(KIOSK_ACCOUNTS[1], max(KIOSK_ACCOUNTS[0], users // 10), reg.size))
    kiosk_device = np.repeat(np.arange(n_kiosks) + n_personal, per_kiosk)
    kiosk_person = np.concatenate([np.sort(rng.choice(reg, size=per_kiosk, replace=False))
                                   for _ in range(n_kiosks)]) if per_kiosk else np.zeros(0, np.int64)
    arr = people.arrival[kiosk_person]
    kiosk_day = arr + (rng.random(kiosk_person.size) * (days - arr)).astype(np.int64)

    n_devices = n_personal + n_kiosks
    device_ids = _hex_strings(rng, n_devices, 15, "a")
    if len(device_ids.unique()) != n_devices:  # 60 random bits: never in practice, but ids must be unique
        raise RuntimeError("anonymous_id collision; use another seed")
    device_type = np.concatenate([dev_type, np.full(n_kiosks, DEVICE_TYPES.index("desktop"))])
    device_kind = np.concatenate([dev_kind, np.full(n_kiosks, 2)])
    device_variant = rng.integers(0, 2, n_devices)
    return _Identity(account_ids=account_ids, account_person=account_person,
                     account_email_hash=account_email_hash, account_has_profile=account_has_profile,
                     account_signup_day=account_signup_day, account_signup_us=account_signup_us,
                     device_ids=device_ids, device_type=device_type, device_kind=device_kind,
                     device_variant=device_variant, person_account=primary, slot_person=slot_person,
                     slot_device=slot_device,
                     slot_account=slot_account, slot_login_day=slot_login_day, slot_off=slot_off,
                     slot_cum=slot_cum, slot_n=slot_n, kiosk_person=kiosk_person, kiosk_device=kiosk_device,
                     kiosk_day=kiosk_day, household_partners=household_partners)


# ----------------------------------------------------------------------------------------------------------
# one day


@dataclass
class _Market:
    """Catalog state that changes from day to day."""
    price: np.ndarray
    available: np.ndarray
    stock: np.ndarray

    def step(self, rng: np.random.Generator, cat: _Catalog, d: int) -> None:
        n = self.price.size
        if d == 0:
            self.available = rng.random(n) >= 3 * OUT_OF_STOCK_P
        else:
            go_out = self.available & (rng.random(n) < OUT_OF_STOCK_P)
            come_back = ~self.available & (rng.random(n) < RESTOCK_P)
            self.available = (self.available & ~go_out) | come_back
            self.stock[come_back] = rng.integers(5, 300, int(come_back.sum()))
            change = rng.random(n) < PRICE_CHANGE_P
            factor = rng.choice([0.7, 0.8, 0.9, 1.0, 1.0, 1.1], size=int(change.sum()))
            self.price[change] = np.maximum(0.99, np.round(cat.base_price[change] * factor) - 0.01)
        # Every leaf keeps its anchor (rank 1) on sale so that every leaf has an item to buy.
        self.available[cat.leaf_anchor] = True


def _catalog_snapshot(cat: _Catalog, market: _Market, d: int, start_us: int) -> pa.Table:
    listed = cat.first_day <= d
    st = cat.static.filter(pa.array(listed))
    avail = market.available[listed]
    cols = {
        "item_id": st["item_id"], "title": st["title"], "category_path": st["category_path"],
        "price": pa.array(market.price[listed], pa.float64()), "is_available": pa.array(avail),
        "brand": st["brand"], "color": st["color"], "material": st["material"], "description": st["description"],
        "currency": st["currency"], "image_url": st["image_url"],
        "created_at": pa.array(st["created_offset_us"].to_numpy() + start_us, pa.timestamp("us", tz="UTC")),
        "stock_qty": pa.array(np.where(avail, market.stock[listed], 0).astype(np.int32)),
        "margin_rate": st["margin_rate"],
    }
    return pa.table(cols, schema=schemas.load("catalog").arrow())


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


def _simulate_day(world: _World, market: _Market, d: int, rng: np.random.Generator,
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
    entry_names, entry_p = _probs(ENTRY_SOURCES)
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
    new_orders = _hex_strings(rng, order_sessions.size, 16, "o")
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
    session_ids = _hex_strings(rng, S, 16, "s")
    event_ids = _hex_strings(rng, n, 32)
    item = ev["item"]
    qty = ev["qty"]
    price = ev["price"]
    countries = pa.array(list(COUNTRIES), _STRING)
    cols = {
        "event_id": event_ids,
        "event_time": pa.array(t_us, pa.timestamp("us", tz="UTC")),
        "event_type": _take(pa.array(EVENT_TYPES, _STRING), etype),
        "anonymous_id": _take(ident.device_ids, dev),
        "user_id": _take(ident.account_ids, user),
        "session_id": _take(session_ids, sess),
        "device_type": _take(pa.array(DEVICE_TYPES, _STRING), ident.device_type[dev]),
        "country": _take(countries, ppl.country[s_person[sess]]),
        "entry_source": _take(pa.array(entry_names, _STRING), s_entry[sess]),
        "item_id": _take(cat.item_ids, item),
        "category_id": _take(cat.leaf_paths, ev["cat"]),
        "query": _take(cat.queries, ev["query"]),
        "quantity": pa.array(qty.astype(np.int32), mask=qty <= 0),
        "price": pa.array(price, mask=np.isnan(price)),
        "order_id": _take(order_ids, ev["order"]),
        "email_hash": _take(ident.account_email_hash, np.where(is_login, user, -1)),
        "experiment_id": _take(pa.array([EXPERIMENT_ID], _STRING), np.where(is_rec, 0, -1)),
        "variant": _take(pa.array(VARIANTS, _STRING), np.where(is_rec, ident.device_variant[dev], -1)),
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
                  "order_id": _take(order_ids, ev["order"][later])}
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
    profiles = _profiles(rng, world, signed)

    seen_devices = np.zeros(len(ident.device_ids), dtype=bool)
    seen_devices[dev] = True
    seen_accounts = np.zeros(len(ident.account_ids), dtype=bool)
    seen_accounts[user[user >= 0]] = True
    return _DayResult(events=events, profiles=profiles, n_sessions=S, seen_devices=seen_devices,
                      seen_accounts=seen_accounts)


def _session_starts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Preferred start (microseconds into the day), following the hourly traffic curve."""
    hour = rng.choice(24, size=n, p=_HOURLY_TRAFFIC / _HOURLY_TRAFFIC.sum())
    return hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, n)


def _profiles(rng: np.random.Generator, world: _World, accounts: np.ndarray) -> pa.Table:
    ppl, ident, cat = world.people, world.ident, world.catalog
    tops = list(CATEGORY_TREE)
    person = ident.account_person[accounts]
    declared = []
    for p in person.tolist():
        # the level-2 category of the person's heaviest leaf in each favourite top-level category
        paths = []
        for t in ppl.fav_tops[p]:
            leaves = ppl.taste_leaf[p, :ppl.taste_n[p]]
            in_top = leaves[cat.leaf_top[leaves] == t]
            path = cat.leaf_paths[int(in_top[0])].as_py() if in_top.size else tops[t]
            mid = " > ".join(path.split(" > ")[:2])
            if mid not in paths:
                paths.append(mid)
        declared.append(paths)
    bands, band_p = _probs(AGE_BANDS)
    age = np.array(bands, dtype=object)[rng.choice(len(bands), size=accounts.size, p=band_p)]
    age[rng.random(accounts.size) < 0.2] = None
    women = np.array([tops.index("Women") in ppl.fav_tops[p] for p in person.tolist()], dtype=bool)
    men = np.array([tops.index("Men") in ppl.fav_tops[p] for p in person.tolist()], dtype=bool)
    p_female = np.where(women & ~men, 0.8, np.where(men & ~women, 0.1, 0.45))
    r = rng.random(accounts.size)
    gender = np.where(r < p_female, "female", np.where(r < 0.9, "male", "unspecified")).astype(object)
    gender[rng.random(accounts.size) < 0.3] = None
    return pa.table({
        "user_id": _take(ident.account_ids, accounts),
        "declared_categories": pa.array(declared, pa.list_(_STRING)),
        "age_band": pa.array(age.tolist(), _STRING),
        "gender": pa.array(gender.tolist(), _STRING),
        "country": _take(pa.array(list(COUNTRIES), _STRING), ppl.country[person]),
        "signup_time": pa.array(ident.account_signup_us[accounts], pa.timestamp("us", tz="UTC")),
    }, schema=schemas.load("profiles").arrow())


# ----------------------------------------------------------------------------------------------------------
# defects


def plant_defects(events: pa.Table, *, rate: float, rng: np.random.Generator, day: dt.date,
                  unknown_item_from: int, item_id_width: int) -> tuple[pa.Table, pa.Table]:
    """Adds about `rate * len(events)` bad rows to one day's good events.

    Each bad row is a changed copy of a random good row (with a fresh `event_id`, except
    `duplicate_event_id`, which is an exact copy placed right after its original), bad in exactly one way.

    Parameters
    ----------
    events : the day's good events, in the events contract schema.
    rate : bad rows per good row; 0 adds none.
    rng : the random stream for defects only, so that the good rows do not depend on `rate`.
    day : the partition's day (for `outside_day`).
    unknown_item_from : item numbers from here on are in no catalog.
    item_id_width : digits in an item id.

    Returns
    -------
    (events with the bad rows added, the defects truth table: event_id, defect)
    """
    schema = schemas.load("events").arrow()
    n_bad = round(rate * events.num_rows)
    if n_bad == 0 or events.num_rows == 0:
        return events, TRUTH_SCHEMAS["defects"].empty_table()
    kinds = np.resize(rng.permutation(len(DEFECT_KINDS)), n_bad)
    etype = np.array(events["event_type"].to_numpy(zero_copy_only=False), dtype=object)
    is_item = np.isin(etype, ITEM_EVENT_TYPES)
    priced = np.isin(etype, ("purchase", "return"))
    counted = np.isin(etype, ("add_to_cart", "purchase", "return"))
    eligible = {"bad_price": priced, "bad_quantity": counted, "unknown_item": is_item}
    src = np.empty(n_bad, dtype=np.int64)
    for k, name in enumerate(DEFECT_KINDS):
        at = np.flatnonzero(kinds == k)
        pool = np.flatnonzero(eligible.get(name, is_item))
        if name in ("null_required", "unknown_event_type", "duplicate_event_id", "outside_day"):
            pool = np.arange(events.num_rows)
        if pool.size == 0:  # e.g. no purchase today: an item event is turned into one below
            pool = np.flatnonzero(is_item) if is_item.any() else np.arange(events.num_rows)
        src[at] = pool[rng.integers(0, pool.size, at.size)]
    rows = events.take(pa.array(src)).to_pylist()
    fresh = _hex_strings(rng, n_bad, 32).to_pylist()
    day_start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    truth_ids = []
    for i, (row, k) in enumerate(zip(rows, kinds.tolist())):
        name = DEFECT_KINDS[k]
        if name != "duplicate_event_id":
            row["event_id"] = fresh[i]
        if name == "null_required":
            row[("anonymous_id", "event_type", "event_time")[int(rng.integers(3))]] = None
        elif name == "unknown_event_type":
            row["event_type"] = UNKNOWN_EVENT_TYPES[int(rng.integers(len(UNKNOWN_EVENT_TYPES)))]
        elif name == "bad_price":
            if row["event_type"] not in ("purchase", "return"):
                row.update(event_type="purchase", quantity=1, order_id="o" + fresh[i][:16], email_hash=None,
                           experiment_id=None, variant=None)
            row["price"] = -abs(row["price"] or 10.0) if rng.random() < 0.5 else 0.0
        elif name == "bad_quantity":
            if row["event_type"] not in ("add_to_cart", "purchase", "return"):
                row.update(event_type="add_to_cart", email_hash=None, experiment_id=None, variant=None)
            row["quantity"] = int(rng.choice([0, -1, -2]))
        elif name == "outside_day":
            off = int(rng.choice([-3, -2, -1, 1, 2, 3]))
            # one day off: the half of that day farthest from the partition, far past any late-arrival tolerance
            lo, hi = (0, 12) if off == -1 else (12, 24) if off == 1 else (0, 24)
            tod = dt.timedelta(microseconds=int(rng.integers(lo * 3_600_000_000, hi * 3_600_000_000)))
            row["event_time"] = day_start + dt.timedelta(days=off) + tod
        elif name == "unknown_item":
            number = unknown_item_from + int(rng.integers(0, 10 ** item_id_width // 2))
            row["item_id"] = f"i{number:0{item_id_width}d}"
        truth_ids.append(row["event_id"])
    bad = pa.Table.from_pylist(rows, schema=schema)
    combined = pa.concat_tables([events, bad])
    # each bad row right after the row it was copied from
    position = np.concatenate([np.arange(events.num_rows), src])
    after = np.concatenate([np.zeros(events.num_rows, np.int64), np.arange(1, n_bad + 1)])
    combined = combined.take(pa.array(np.lexsort((after, position))))
    truth = pa.table({"event_id": pa.array(truth_ids, _STRING),
                      "defect": pa.array([DEFECT_KINDS[k] for k in kinds.tolist()], _STRING)},
                     schema=TRUTH_SCHEMAS["defects"])
    return combined, truth


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
    catalog = _build_catalog(_rng(seed, 1), items=items, days=days)
    people = _build_people(_rng(seed, 2), catalog, users=users, days=days)
    ident = _build_identity(_rng(seed, 3), people, days=days, start_us=start_us)
    world = _World(start=start_day, days=days, catalog=catalog, people=people, ident=ident)
    market = _Market(price=catalog.base_price.copy(), available=np.ones(items, dtype=bool),
                     stock=_rng(seed, 4).integers(5, 300, items))
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
        market.step(_rng(seed, 10, d), catalog, d)
        snapshot = _catalog_snapshot(catalog, market, d, start_us)
        due = _merge_returns(returns_later.pop(d, []))
        res = _simulate_day(world, market, d, _rng(seed, 11, d), due, returns_later)
        events, defects = plant_defects(res.events, rate=defect_rate, rng=_rng(seed, 12, d), day=day,
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

    _write_truth(layout, world, seen_devices, seen_accounts)
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


def _write_truth(layout: Layout, world: _World, seen_devices: np.ndarray, seen_accounts: np.ndarray) -> None:
    ppl, ident = world.people, world.ident
    tops = list(CATEGORY_TREE)
    # identities: every user_id and every personal (not shared) anonymous_id that appears in the events
    acc = np.flatnonzero(seen_accounts)
    personal = np.flatnonzero(ident.device_kind == 0)
    owner = np.full(len(ident.device_ids), -1)
    owner[ident.slot_device[ident.device_kind[ident.slot_device] == 0]] = \
        ident.slot_person[ident.device_kind[ident.slot_device] == 0]
    dev = personal[seen_devices[personal]]
    identities = pa.table({
        "id_type": pa.array(["user_id"] * acc.size + ["anonymous_id"] * dev.size, _STRING),
        "id": pa.concat_arrays([_take(ident.account_ids, acc), _take(ident.device_ids, dev)]),
        "person": pa.concat_arrays([_take(ppl.person_keys, ident.account_person[acc]),
                                    _take(ppl.person_keys, owner[dev])]),
    }, schema=TRUTH_SCHEMAS["identities"])
    shared = np.flatnonzero(ident.device_kind > 0)
    n_persons = np.array([len(ident.household_partners[d]) if ident.device_kind[d] == 1
                          else np.unique(ident.kiosk_person[ident.kiosk_device == d]).size for d in shared.tolist()])
    shared_devices = pa.table({
        "anonymous_id": _take(ident.device_ids, shared),
        "kind": pa.array(["household" if k == 1 else "kiosk" for k in ident.device_kind[shared].tolist()], _STRING),
        "n_persons": pa.array(n_persons.astype(np.int32), pa.int32()),
    }, schema=TRUTH_SCHEMAS["shared_devices"])
    persons = pa.table({
        "person": ppl.person_keys,
        "country": _take(pa.array(list(COUNTRIES), _STRING), ppl.country),
        "favourite_categories": pa.array([[tops[t] for t in f] for f in ppl.fav_tops], pa.list_(_STRING)),
        "is_registered": pa.array(ppl.registered),
    }, schema=TRUTH_SCHEMAS["persons"])
    io.write_arrow_parquet(identities, layout.truth("identities"))
    io.write_arrow_parquet(shared_devices, layout.truth("shared_devices"))
    io.write_arrow_parquet(persons, layout.truth("persons"))
