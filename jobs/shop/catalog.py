"""The shop's catalog: a 3-level category tree, brands, prices and popularity fixed for the period
(`build_catalog`), the stock and prices that move day to day (`Market`), and each day's snapshot.

Items get a Zipf(1.0) popularity inside their leaf so that a leaf has best sellers and a long tail; each
leaf's most popular item (its anchor) is listed from the start and never out of stock, so every session
that browses a leaf has something to buy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import schemas
from jobs.shop.arrays import DAY_US, STRING, numbered, take
from jobs.shop.knobs import NEVER_SELLS_SHARE, OUT_OF_STOCK_P, PRE_EXISTING_ITEM_SHARE, PRICE_CHANGE_P, RESTOCK_P
from schemas.vocabulary import CATEGORY_SEPARATOR

CURRENCY = "EUR"
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
TOP_CATEGORIES = list(CATEGORY_TREE)
COLORS = ("Black", "White", "Navy", "Grey", "Beige", "Red", "Green", "Blue", "Pink", "Brown", "Olive", "Burgundy")
_BRAND_HEADS = ("Nor", "Vel", "Ast", "Bri", "Cal", "Dun", "El", "Fen", "Gal", "Hal", "Is", "Jun", "Kal", "Lum",
                "Mar", "Nev", "Or", "Pel", "Quin", "Ros", "Sol", "Tor", "Ul", "Val", "Wyn", "Zen")
_BRAND_TAILS = ("vik", "ora", "ton", "ley", "ara", "wood", "dale", "ena", "ix", "ano", "ford", "mere", "sen",
                "elle", "berg")
_BRAND_SUFFIXES = ("", " & Co", " Studio", " Atelier", " Works", " Label")


def item_id_width(items: int) -> int:
    """Digits in an item id: at least 6, more for huge catalogs."""
    return max(6, len(str(items)))


@dataclass
class Catalog:
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
class _Items:
    """Where each item sits: its leaf, its rank and popularity there, and when it is listed."""
    leaf: np.ndarray
    rank: np.ndarray
    popularity: np.ndarray
    first_day: np.ndarray


@dataclass
class _Brands:
    names: list[str]
    tier: np.ndarray              # price multiplier per brand
    top_brands: list[np.ndarray]
    top_brand_p: list[np.ndarray]
    of_item: np.ndarray           # brand index per item


def build_catalog(rng: np.random.Generator, *, items: int, days: int) -> Catalog:
    """The whole period's items: leaves, brands, base prices, popularity, listing days and static columns."""
    leaves = _leaves(n_leaves=int(min(120, max(12, items // 8))))
    n_leaves = len(leaves)
    leaf_top = np.array([t for t, _, _ in leaves])
    leaf_paths = [CATEGORY_SEPARATOR.join((TOP_CATEGORIES[t], mid, leaf)) for t, mid, leaf in leaves]
    leaf_pop = rng.lognormal(0.0, 0.8, n_leaves)
    top_median = np.array([CATEGORY_TREE[t][0] for t in TOP_CATEGORIES])
    leaf_median = top_median[leaf_top] * rng.lognormal(0.0, 0.45, n_leaves)
    placed = _place_items(rng, items=items, days=days, leaf_pop=leaf_pop)
    brands = _brands(rng, item_top=leaf_top[placed.leaf])
    base_price, static = _item_attributes(rng, leaves, leaf_paths, leaf_median, placed, brands)
    leaf_items = [np.flatnonzero(placed.leaf == l_) for l_ in range(n_leaves)]
    leaf_anchor = np.array([li[np.argmin(placed.rank[li])] for li in leaf_items])
    queries = pa.array([leaf_name.lower() for _, _, leaf_name in leaves] + [b.lower() for b in brands.names],
                       STRING)
    return Catalog(item_ids=static["item_id"].combine_chunks(), leaf=placed.leaf, brand=brands.of_item,
                   base_price=base_price, price_z=np.log(base_price / leaf_median[placed.leaf]),
                   popularity=placed.popularity, first_day=placed.first_day, static=static, leaf_items=leaf_items,
                   leaf_anchor=leaf_anchor, leaf_pop=leaf_pop, leaf_paths=pa.array(leaf_paths, STRING),
                   leaf_top=leaf_top, queries=queries, n_leaves=n_leaves, n_brands=len(brands.names),
                   brand_names=brands.names, top_brands=brands.top_brands, top_brand_p=brands.top_brand_p)


def _leaves(n_leaves: int) -> list[tuple[int, str, str]]:
    """(top index, level 2, leaf) for `n_leaves` leaves, spread over every top-level category and, inside
    one, over its level-2 categories first."""
    tops = TOP_CATEGORIES
    leaves = []
    per_top = [n_leaves // len(tops) + (1 if t < n_leaves % len(tops) else 0) for t in range(len(tops))]
    for t, top in enumerate(tops):
        mids = CATEGORY_TREE[top][2]
        round_robin = [(mid, names[j]) for j in range(5) for mid, names in mids.items() if j < len(names)]
        leaves += [(t, mid, leaf) for mid, leaf in round_robin[:per_top[t]]]
    return leaves


def _place_items(rng: np.random.Generator, *, items: int, days: int, leaf_pop: np.ndarray) -> _Items:
    n_leaves = leaf_pop.size
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
    return _Items(leaf=leaf, rank=rank, popularity=popularity, first_day=first_day)


def _brands(rng: np.random.Generator, *, item_top: np.ndarray) -> _Brands:
    """~items/25 brands, each selling in one or two top-level categories; each item gets one that sells in
    its top-level category, bigger brands more often."""
    n_tops, items = len(TOP_CATEGORIES), item_top.size
    n_brands = max(n_tops, round(items / 25))
    names = [h + t for h in _BRAND_HEADS for t in _BRAND_TAILS]
    names = [n + s for s in _BRAND_SUFFIXES for n in names]
    if n_brands > len(names):  # huge catalogs: numbered lines of the same names
        names += [f"{n} {k}" for k in range(2, 2 + n_brands // len(names)) for n in names]
    brand_names = [names[i] for i in rng.permutation(len(names))[:n_brands]]
    brand_top = np.arange(n_brands) % n_tops
    brand_second = np.where(rng.random(n_brands) < 0.3, rng.integers(0, n_tops, n_brands), -1)
    brand_size = rng.lognormal(0.0, 1.0, n_brands)
    brand_tier = rng.lognormal(0.0, 0.35, n_brands)
    top_brands, top_brand_p = [], []
    for t in range(n_tops):
        b = np.flatnonzero((brand_top == t) | (brand_second == t))
        top_brands.append(b)
        top_brand_p.append(brand_size[b] / brand_size[b].sum())
    brand = np.empty(items, dtype=np.int64)
    for t in range(n_tops):
        at = np.flatnonzero(item_top == t)
        brand[at] = rng.choice(top_brands[t], size=at.size, p=top_brand_p[t])
    return _Brands(names=brand_names, tier=brand_tier, top_brands=top_brands, top_brand_p=top_brand_p,
                   of_item=brand)


def _item_attributes(rng: np.random.Generator, leaves: list[tuple[int, str, str]], leaf_paths: list[str],
                     leaf_median: np.ndarray, placed: _Items, brands: _Brands) -> tuple[np.ndarray, pa.Table]:
    """Base prices, and the catalog columns that never change (title, brand, colour, material, ...)."""
    leaf, brand, first_day = placed.leaf, brands.of_item, placed.first_day
    items = leaf.size
    item_top = np.array([t for t, _, _ in leaves])[leaf]
    raw_price = leaf_median[leaf] * brands.tier[brand] * rng.lognormal(0.0, 0.25, items)
    base_price = np.maximum(0.99, np.round(raw_price) - 0.01)
    margin = np.round(rng.uniform(0.1, 0.6, items), 3)
    color_idx = rng.integers(0, len(COLORS), items)
    no_color = (TOP_CATEGORIES.index("Beauty") == item_top) & (rng.random(items) < 0.5)
    material_pick = rng.random(items)
    # created_at relative to the start (the snapshot adds the start); before start or on the listing day
    created_offset = np.where(first_day < 0,
                              -rng.integers(1, 730 * DAY_US // 1_000_000, items) * 1_000_000,
                              first_day * DAY_US + rng.integers(0, DAY_US // 1_000_000, items) * 1_000_000)
    item_ids = numbered("i", np.arange(1, items + 1), item_id_width(items))
    titles, colors, materials, descriptions = [], [], [], []
    for i in range(items):
        _, mid, leaf_name = leaves[leaf[i]]
        top = TOP_CATEGORIES[item_top[i]]
        mats = CATEGORY_TREE[top][1]
        color = None if no_color[i] else COLORS[color_idx[i]]
        material = mats[int(material_pick[i] * len(mats))] if mats else None
        title = " ".join(w for w in (brands.names[brand[i]], color, material, leaf_name) if w)
        titles.append(title)
        colors.append(color)
        materials.append(material)
        descriptions.append(f"{title}. {mid} from {brands.names[brand[i]]}, part of our {top} range.")
    static = pa.table({
        "item_id": item_ids,
        "title": pa.array(titles, STRING),
        "category_path": take(pa.array(leaf_paths, STRING), leaf),
        "brand": take(pa.array(brands.names, STRING), brand),
        "color": pa.array(colors, STRING),
        "material": pa.array(materials, STRING),
        "description": pa.array(descriptions, STRING),
        "currency": pa.array([CURRENCY] * items, STRING),
        "image_url": pa.array([f"https://img.example.com/items/{i}.jpg" for i in item_ids.to_pylist()], STRING),
        "created_offset_us": pa.array(created_offset, pa.int64()),
        "margin_rate": pa.array(margin, pa.float64()),
    })
    return base_price, static


@dataclass
class Market:
    """Catalog state that changes from day to day."""
    price: np.ndarray
    available: np.ndarray
    stock: np.ndarray

    @classmethod
    def opening(cls, rng: np.random.Generator, cat: Catalog) -> Market:
        """Base prices, everything available, a random stock per item (`step` decides day 0's availability)."""
        n = cat.base_price.size
        return cls(price=cat.base_price.copy(), available=np.ones(n, dtype=bool), stock=rng.integers(5, 300, n))

    def step(self, rng: np.random.Generator, cat: Catalog, d: int) -> None:
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


def catalog_snapshot(cat: Catalog, market: Market, d: int, start_us: int) -> pa.Table:
    """Day `d`'s catalog file: the items listed by then, with that day's price, availability and stock."""
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
