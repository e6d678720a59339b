"""A diversity re-rank: maximal marginal relevance (MMR) over leaf categories.

Greedy, for the first `depth` positions of one person's list: the next item is the one maximising

    (1 - strength) * relevance - strength * (how many items of its leaf category are already above)

(relevance scaled 0..1 within the person). The count, not a 0/1 "seen", so a weak strength lets a category's
second item through when it is clearly better, yet keeps one category from flooding the list. Items past `depth`
keep their relevance order; nothing is dropped, so lists stay full. strength 0 is the relevance order itself. Pure numpy.
"""
from __future__ import annotations

import numpy as np

from jobs.config import DiversityConfig


def scaled(values) -> np.ndarray:
    """Min-max scaled to 0..1 (all equal: all 1)."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = (v.min(), v.max()) if len(v) else (0.0, 0.0)
    return (v - lo) / (hi - lo) if hi > lo else np.ones_like(v)


def mmr_order(relevance, categories, diversity: DiversityConfig) -> np.ndarray:
    """Positions of one person's candidates in re-ranked order (a permutation of range(len(relevance))).
    Ties go to the earlier candidate, so callers pass candidates in a fixed order (e.g. by item id)."""
    rel = scaled(relevance)
    by_relevance = np.argsort(-rel, kind="stable")
    if diversity.strength <= 0 or len(rel) < 2:
        return by_relevance
    codes = np.unique(np.asarray(categories, dtype=object).astype(str), return_inverse=True)[1]
    seen = np.zeros(codes.max() + 1, dtype=np.float64)  # items of each category already placed
    taken = np.zeros(len(rel), dtype=bool)
    order = []
    for _ in range(min(diversity.depth, len(rel))):
        value = (1.0 - diversity.strength) * rel - diversity.strength * seen[codes]
        value[taken] = -np.inf
        pick = int(np.argmax(value))
        order.append(pick)
        taken[pick] = True
        seen[codes[pick]] += 1.0
    rest = by_relevance[~taken[by_relevance]]
    return np.concatenate([np.asarray(order, dtype=np.int64), rest])


def intra_list_diversity(categories_per_list: list[np.ndarray]) -> float:
    """Mean over lists (of 2+ items) of the share of item pairs whose categories differ."""
    shares = []
    for cats in categories_per_list:
        n = len(cats)
        if n < 2:
            continue
        _, counts = np.unique(np.asarray(cats, dtype=object).astype(str), return_counts=True)
        shares.append(1.0 - float((counts * (counts - 1)).sum()) / (n * (n - 1)))
    return float(np.mean(shares)) if shares else float("nan")
