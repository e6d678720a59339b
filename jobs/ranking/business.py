"""Business terms as bounded adjustments of a person's relevance (0..1 within their candidates).

    adjustment = clip(margin_weight * margin_rate - stock_weight * max(0, 1 - stock_qty / low_stock_qty),
                      -max_adjustment, +max_adjustment)

A missing margin_rate or stock_qty (both optional in the contract) adds nothing. The clip bounds how far any
item can move: with relevance scaled to 0..1 and max_adjustment 0.1, margin never lifts an item past one that
is more than a tenth of the person's relevance range ahead of it. Pure numpy, so Spark's partitions and the
ranker's validation apply the same rule.
"""
from __future__ import annotations

import numpy as np

from jobs.config import BusinessConfig


def adjustment(margin_rate, stock_qty, business: BusinessConfig) -> np.ndarray:
    """The bounded adjustment per item (nulls / NaN count as unknown: no adjustment)."""
    margin = np.nan_to_num(np.asarray(margin_rate, dtype=np.float64), nan=0.0)
    stock = np.asarray(stock_qty, dtype=np.float64)
    low = float(max(business.low_stock_qty, 1))
    shortage = np.where(np.isnan(stock), 0.0, np.clip(1.0 - stock / low, 0.0, 1.0))
    raw = business.margin_weight * margin - business.stock_weight * shortage
    return np.clip(raw, -business.max_adjustment, business.max_adjustment)


def adjusted(relevance, margin_rate, stock_qty, business: BusinessConfig) -> np.ndarray:
    """relevance (already scaled 0..1 within the person) plus the bounded adjustment."""
    return np.asarray(relevance, dtype=np.float64) + adjustment(margin_rate, stock_qty, business)
