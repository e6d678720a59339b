"""A diversity re-rank: maximal marginal relevance (MMR) over leaf categories, on the ranker's odds, page by page.

An item's worth is its odds against the person's best candidate, `exp(relevance - best)`, with relevance in the
ranker's score units: LambdaRank scores are log-odds-like (a pair's order is learned as sigmoid of their gap), so a
gap means the same for every person, where a min-max scale stretched each person's range to 0..1 and made the
confident top of one list as cheap to break up as the flat top of another. The MMR rule then ranks by

    (1 - strength) * odds - strength * (how many items of its leaf category rank above it)

The count is the exact marginal loss of intra-list diversity (share of pairs of differing categories) an item
adds. Greedy MMR takes each category's items in relevance order, so its greedy loop is one sort by that value,
with "above" counted within the category; the whole list is re-ranked, nothing is dropped, lists stay full.

Page by page: each page of `depth` positions keeps the items the rule chose for it (so the diversity of the top
`depth`, 2 x `depth`, ... is the rule's) but shows them in relevance order, which is free for diversity and
gives back NDCG the rule's order cost (a page as long as the list is the relevance order itself). strength 0 is
the relevance order. Pure numpy.
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
    relevance is in the ranker's score units (see the module). Ties go to the earlier candidate, so callers pass
    candidates in a fixed order (e.g. by item id)."""
    rel = np.asarray(relevance, dtype=np.float64)
    by_relevance = np.argsort(-rel, kind="stable")
    n = len(rel)
    if diversity.strength <= 0 or n < 2:
        return by_relevance
    codes = np.unique(np.asarray(categories, dtype=object).astype(str), return_inverse=True)[1][by_relevance]
    grouped = np.argsort(codes, kind="stable")  # positions in relevance order, category by category
    starts = np.flatnonzero(np.r_[True, codes[grouped][1:] != codes[grouped][:-1]])
    above = np.empty(n)
    above[grouped] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    odds = np.exp(rel[by_relevance] - rel[by_relevance[0]])
    value = (1.0 - diversity.strength) * odds - diversity.strength * above
    chosen = by_relevance[np.argsort(-value, kind="stable")]
    page = np.arange(n) // max(diversity.depth, 1)
    return chosen[np.lexsort((-rel[chosen], page))]


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
