"""How shoppers react to a shown list: their true utility for each item, and the click, cart, purchase and
return probabilities that follow from it, position and a known effect of list quality. Pure numpy.

True utility comes from the generator's own choice model (`jobs.shop.funnel`): a session browses a leaf drawn
from the person's taste mix (or, `EXPLORE_SHARE` of the time, from global leaf popularity) and picks an item
there by day weight x brand fit x price fit. So the chance `a(p, i)` that person p's next organic pick is item i
is known exactly, and

    true_utility(p, i) = log(a(p, i) * n)       n = items that can be picked today

is 0 for an item as likely as a random one, positive for items the person likes. Then, for the item at
`position` r (1 = first) of a shown list, with q = `quality_effect`:

    p_examine  = 1 / r ** position_decay                          position bias
    p_click    = p_examine * sigmoid(click_base + q * u)
    p_cart     = p_click * sigmoid(cart_base + q * u)              0 when the item is out of stock
    p_purchase = p_cart * buy_p                                     quantity 1/2/3 w.p. 0.85/0.12/0.03
    p_return   = sigmoid(return_base - q * u)                       of a purchase, 2-21 days later

Each item of a list is clicked (and so on) independently. `quality_effect = 0` makes shoppers blind to how well
a list fits them (only position and price then separate two arms); larger values make good lists sell more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobs.shop.catalog import Catalog
from jobs.shop.knobs import BRAND_FIT, EXPLORE_SHARE, PRICE_BAND_SIGMA, PRICE_FIT_FLOOR
from jobs.shop.people import People

QUANTITIES, QUANTITY_P = np.array([1, 2, 3]), np.array([0.85, 0.12, 0.03])
EXPECTED_QUANTITY = float(QUANTITIES @ QUANTITY_P)
UTILITY_FLOOR = -10.0  # an item the person can never pick (not listed, never sells): a finite, very low utility


@dataclass(frozen=True)
class Behaviour:
    """The storefront's knobs. Defaults give a click-through of a few percent per shown item at the top."""
    # 8 items on half the sessions: the first simulated day's events then stay within validation's
    # `quality.volume_max_ratio` (5x) of the generated days, whose rec block shows 4 items on 8% of sessions
    slots: int = 8                # items shown per list (at most 30)
    rec_share: float = 0.5        # share of browsing sessions that start on the page showing the list
    position_decay: float = 1.0
    quality_effect: float = 0.6
    click_base: float = -2.5
    cart_base: float = -1.0
    buy_p: float = 0.6
    return_base: float = -2.75    # sigmoid(-2.75) = 6%, the generator's return rate, at utility 0

    def check(self) -> None:
        if not 1 <= self.slots <= 30:
            raise ValueError(f"simulate-storefront: slots must be 1..30, got {self.slots}")
        for name in ("rec_share", "buy_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"simulate-storefront: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.position_decay < 0:
            raise ValueError(f"simulate-storefront: position_decay must be >= 0, got {self.position_decay}")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def true_utility(cat: Catalog, ppl: People, day_weight: np.ndarray, person: np.ndarray, item: np.ndarray
                 ) -> np.ndarray:
    """`true_utility(p, i)` for each (person[k], item[k]) pair (see the module docstring)."""
    person, item = np.asarray(person, np.int64), np.asarray(item, np.int64)
    leaf = cat.leaf[item]
    # P(leaf | person): the taste mix (weights from the cumulative ones) or exploration by leaf popularity
    cum = ppl.taste_cum[person]
    w_slots = np.diff(np.concatenate([np.zeros((person.size, 1)), cum], axis=1), axis=1)
    in_leaf = ppl.taste_leaf[person] == leaf[:, None]
    p_leaf = (1 - EXPLORE_SHARE) * (w_slots * in_leaf).sum(axis=1) + EXPLORE_SHARE * cat.leaf_pop[leaf] / \
        cat.leaf_pop.sum()
    # P(item | leaf, person): the generator's pick weights, normalised over the leaf
    p_item = np.zeros(person.size)
    for lf in np.unique(leaf).tolist():
        at = np.flatnonzero(leaf == lf)
        mates = cat.leaf_items[lf]
        p = person[at]
        w = _pick_weight(cat, ppl, day_weight, p[:, None], mates[None, :])
        own = _pick_weight(cat, ppl, day_weight, p, item[at])
        total = w.sum(axis=1)
        p_item[at] = np.where(total > 0, own / np.where(total > 0, total, 1.0), 0.0)
    affinity = p_leaf * p_item
    n = max(int((day_weight > 0).sum()), 1)
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(affinity * n), UTILITY_FLOOR)


def _pick_weight(cat: Catalog, ppl: People, day_weight: np.ndarray, person: np.ndarray, item: np.ndarray
                 ) -> np.ndarray:
    """The generator's `pick_items` weight: day weight x brand fit x (price fit + floor), broadcast."""
    brand = cat.brand[item]
    fav = (brand == ppl.fav_brand[person, 0]) | (brand == ppl.fav_brand[person, 1])
    price_fit = np.exp(-0.5 * ((cat.price_z[item] - ppl.price_offset[person]) / PRICE_BAND_SIGMA) ** 2)
    return day_weight[item] * np.where(fav, BRAND_FIT, 1.0) * (price_fit + PRICE_FIT_FLOOR)


def probabilities(b: Behaviour, utility: np.ndarray, position: np.ndarray, available: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """Per shown item: p_examine, p_click, p_cart, p_purchase (unconditional) and p_return (given a purchase)."""
    q = b.quality_effect
    p_examine = 1.0 / np.asarray(position, float) ** b.position_decay
    p_click = p_examine * sigmoid(b.click_base + q * utility)
    p_cart = p_click * sigmoid(b.cart_base + q * utility) * np.asarray(available, bool)
    return {"p_examine": p_examine, "p_click": p_click, "p_cart": p_cart, "p_purchase": p_cart * b.buy_p,
            "p_return": sigmoid(b.return_base - q * utility)}
