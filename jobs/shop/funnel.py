"""What happens inside a day's sessions: product views, the home-page recommendation block (an A/B test),
search and category pages, carts, purchases, returns and logins, as event rows.

A session browses one leaf from the person's tastes (15% of them one drawn from global popularity) and
picks items by popularity x brand fit x price fit, so matrix factorization can beat popularity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import schemas
from jobs.shop.arrays import hex_strings
from jobs.shop.catalog import Catalog, Market
from jobs.shop.identities import KIOSK, Identity
from jobs.shop.knobs import (BRAND_FIT, CART_P, CATEGORY_VIEW_P, CONVERT_P, EXPLORE_SHARE, PRICE_BAND_SIGMA,
                             PRICE_FIT_FLOOR, REC_BLOCK_P, REC_CLICK_P, REC_SLOTS, REMOVE_P_ABANDONED,
                             REMOVE_P_CONVERTED, SEARCH_P, VIEWS_GEOMETRIC_P)
from jobs.shop.people import People
from jobs.shop.sessions import LOGIN_FIRST, LOGIN_MID, Sessions

EVENT_TYPES: tuple[str, ...] = schemas.load("events").field("event_type").enum
ET = {name: code for code, name in enumerate(EVENT_TYPES)}
# the step of a list's first slot inside its session (slot j is IMPRESSION_STEP + j): the events' `position`
IMPRESSION_STEP = 10


class Pieces:
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

    def sorted_arrays(self) -> dict[str, np.ndarray]:
        """The rows as columns, ordered by session then step (rows added earlier first on a tie)."""
        dtypes = {"price": np.float64}
        ev = {c: (np.concatenate(v) if v else np.zeros(0)).astype(dtypes.get(c, np.int64))
              for c, v in self.parts.items()}
        o = np.lexsort((ev["step"], ev["sess"]))
        return {k: v[o] for k, v in ev.items()}


@dataclass
class Views:
    """Product views of the browsing sessions, session by session."""
    sess: np.ndarray
    j: np.ndarray                 # position of the view in its session
    item: np.ndarray
    count: np.ndarray             # views per browsing session
    leaf: np.ndarray              # the leaf each browsing session browses


def session_events(rng: np.random.Generator, cat: Catalog, ppl: People, ident: Identity, market: Market,
                   s: Sessions, day_weight: np.ndarray, *, rec_block: bool = True
                   ) -> tuple[dict[str, np.ndarray], pa.Array, np.ndarray]:
    """Every event of the day's sessions, before times and ids. `rec_block=False` leaves out the generator's own
    home-page recommendations (the storefront simulator shows the published lists instead).

    Returns (event columns sorted by session and step; the day's order ids, indexed by the `order` column;
    the step at which each session logs in, -1 if it does not)."""
    pieces = Pieces()
    views = _product_views(rng, cat, ppl, s, day_weight)
    if rec_block:
        _rec_block(rng, cat, ppl, ident, s, views, day_weight, pieces)
    _search_or_category_page(rng, cat, ppl, s, views, pieces)
    pieces.add(views.sess, 100 + 10 * views.j, ET["product_view"], item=views.item)
    order_ids = _cart_checkout_and_returns(rng, market, cat, s, views, pieces)
    login_step = _logins(rng, s, views, pieces)
    return pieces.sorted_arrays(), order_ids, login_step


def _product_views(rng: np.random.Generator, cat: Catalog, ppl: People, s: Sessions,
                   day_weight: np.ndarray) -> Views:
    """The heart of the signal: a geometric number of views per browsing session, inside one leaf."""
    n_shop = s.n_shop
    n_views = np.minimum(rng.geometric(VIEWS_GEOMETRIC_P, n_shop), 30)
    s_leaf = taste_leaves(rng, cat, ppl, s.person[:n_shop])
    v_sess = np.repeat(np.arange(n_shop), n_views)
    v_j = np.arange(v_sess.size) - np.repeat(np.cumsum(n_views) - n_views, n_views)
    v_item = pick_items(rng, cat, ppl, s_leaf, s.person[:n_shop], n_views, day_weight)
    return Views(sess=v_sess, j=v_j, item=v_item, count=n_views, leaf=s_leaf)


def _rec_block(rng: np.random.Generator, cat: Catalog, ppl: People, ident: Identity, s: Sessions, views: Views,
               day_weight: np.ndarray, pieces: Pieces) -> None:
    """Home-page recommendations on some sessions (not kiosks): control shows global best sellers, treatment
    items from the person's own tastes. A click opens the session's first product view."""
    shop = np.arange(s.n_shop)
    rec = shop[(rng.random(s.n_shop) < REC_BLOCK_P) & (ident.device_kind[s.device[:s.n_shop]] != KIOSK)]
    if not rec.size:
        return
    variant = ident.device_variant[s.device[rec]]
    r_sess = np.repeat(rec, REC_SLOTS)
    r_pos = np.tile(np.arange(REC_SLOTS), rec.size)
    treat = np.repeat(variant == 1, REC_SLOTS)
    r_item = np.empty(r_sess.size, dtype=np.int64)
    global_cum = np.cumsum(day_weight)
    r_item[~treat] = np.minimum(np.searchsorted(global_cum, rng.random(int((~treat).sum())) * global_cum[-1],
                                                side="right"), day_weight.size - 1)
    tp = s.person[r_sess[treat]]
    r_item[treat] = pick_items(rng, cat, ppl, taste_leaves(rng, cat, ppl, tp), tp, np.ones(tp.size, np.int64),
                               day_weight)
    pieces.add(r_sess, IMPRESSION_STEP + r_pos, ET["rec_impression"], item=r_item)
    click_p = np.where(variant == 1, REC_CLICK_P["treatment"], REC_CLICK_P["control"])
    clicked = rng.random(rec.size) < click_p
    click_pos = rng.integers(0, REC_SLOTS, rec.size)
    click_item = r_item.reshape(-1, REC_SLOTS)[np.arange(rec.size), click_pos]
    pieces.add(rec[clicked], 20, ET["rec_click"], item=click_item[clicked])
    first_view = np.cumsum(views.count) - views.count
    views.item[first_view[rec[clicked]]] = click_item[clicked]


def _search_or_category_page(rng: np.random.Generator, cat: Catalog, ppl: People, s: Sessions, views: Views,
                             pieces: Pieces) -> None:
    """Some sessions start with a search (for the leaf, or for a favourite brand), some on a category page."""
    shop = np.arange(s.n_shop)
    kind = rng.random(s.n_shop)
    search = shop[kind < SEARCH_P]
    by_brand = rng.random(search.size) < 0.3
    q = np.where(by_brand, cat.n_leaves + ppl.fav_brand[s.person[search], 0], views.leaf[search])
    pieces.add(search, 50, ET["search"], query=q)
    catview = shop[(kind >= SEARCH_P) & (kind < SEARCH_P + CATEGORY_VIEW_P)]
    pieces.add(catview, 50, ET["category_view"], cat=views.leaf[catview])


def _cart_checkout_and_returns(rng: np.random.Generator, market: Market, cat: Catalog, s: Sessions, views: Views,
                       pieces: Pieces) -> pa.Array:
    """The first view of an in-stock item may go to the cart; a session may convert; returns due today.

    Returns the day's order ids: today's new orders, then those of the returns."""
    v_sess, v_item = views.sess, views.item
    key = v_sess * (len(cat.item_ids) + 1) + v_item
    _, first_idx = np.unique(key, return_index=True)
    is_first = np.zeros(v_sess.size, dtype=bool)
    is_first[first_idx] = True
    carted = np.flatnonzero(is_first & market.available[v_item] & (rng.random(v_sess.size) < CART_P))
    c_sess, c_item = v_sess[carted], v_item[carted]
    c_qty = rng.choice([1, 2, 3], size=carted.size, p=[0.85, 0.12, 0.03])
    pieces.add(c_sess, 100 + 10 * views.j[carted] + 1, ET["add_to_cart"], item=c_item, qty=c_qty)
    converts = rng.random(s.n_shop) < CONVERT_P
    conv = converts[c_sess]
    removed = rng.random(carted.size) < np.where(conv, REMOVE_P_CONVERTED, REMOVE_P_ABANDONED)
    rk = np.arange(carted.size)
    pieces.add(c_sess[removed], 900 + rk[removed], ET["remove_from_cart"], item=c_item[removed],
               qty=c_qty[removed])
    bought = conv & ~removed
    b_sess, b_item, b_qty = c_sess[bought], c_item[bought], c_qty[bought]
    order_sessions = np.unique(b_sess)
    new_orders = hex_strings(rng, order_sessions.size, 16, "o")
    b_order = np.searchsorted(order_sessions, b_sess)
    b_price = market.price[b_item]
    pieces.add(b_sess, 1000 + rk[bought], ET["purchase"], item=b_item, qty=b_qty, price=b_price, order=b_order)

    ret = s.returns
    n_ret = s.size - s.n_shop
    if not n_ret:
        return new_orders
    pieces.add(np.arange(s.n_shop, s.size), 0, ET["return"], item=ret["item"], qty=ret["qty"], price=ret["price"],
               order=order_sessions.size + np.arange(n_ret))
    return pa.concat_arrays([new_orders, ret["order_id"]])


def _logins(rng: np.random.Generator, s: Sessions, views: Views, pieces: Pieces) -> np.ndarray:
    """A login first thing, or after 1-2 anonymous product views; returns each session's login step."""
    login_first = np.flatnonzero(s.mode == LOGIN_FIRST)
    pieces.add(login_first, 0, ET["login"])
    mid = np.flatnonzero(s.mode == LOGIN_MID)
    login_k = np.minimum(rng.integers(1, 3, mid.size), views.count[mid])
    login_step = np.full(s.size, -1)
    login_step[login_first] = 0
    login_step[mid] = 100 + 10 * login_k - 5
    pieces.add(mid, login_step[mid], ET["login"])
    return login_step


def taste_leaves(rng: np.random.Generator, cat: Catalog, ppl: People, person: np.ndarray) -> np.ndarray:
    """A leaf per person from their tastes, or (exploration) from global leaf popularity."""
    u = rng.random(person.size)
    idx = np.minimum((ppl.taste_cum[person] < u[:, None]).sum(axis=1), ppl.taste_n[person] - 1)
    leaf = ppl.taste_leaf[person, idx]
    explore = rng.random(person.size) < EXPLORE_SHARE
    leaf_cum = np.cumsum(cat.leaf_pop) / cat.leaf_pop.sum()
    leaf[explore] = np.minimum(np.searchsorted(leaf_cum, rng.random(int(explore.sum()))), cat.n_leaves - 1)
    return leaf


def pick_items(rng: np.random.Generator, cat: Catalog, ppl: People, leaf: np.ndarray, person: np.ndarray,
               count: np.ndarray, day_weight: np.ndarray) -> np.ndarray:
    """`count[s]` items for each session `s`, from its leaf, by day weight x brand fit x price fit.

    Draws without replacement inside a session (Gumbel top-k), so a session views different items
    until its leaf runs out; returns the picks flat, session by session.
    """
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
