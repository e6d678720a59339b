"""The contract's small vocabularies and rules on values, defined once for every package that needs them.

Kept free of Spark and pandas imports: each rule is a plain value or takes the column it works on, so the
quality checks, the stages, the evaluation and the shop generator all share one definition.
"""
from __future__ import annotations

# Event types that carry an `item_id` (the contract requires it for these).
ITEM_EVENT_TYPES: tuple[str, ...] = ("product_view", "add_to_cart", "remove_from_cart", "purchase", "return",
                                     "rec_impression", "rec_click")

# `category_path` levels are joined by this separator, most general first; the leaf is the last level.
CATEGORY_SEPARATOR = " > "


def leaf_category(category_path: str | None) -> str | None:
    """`Women > Shoes > Sneakers` -> `Sneakers`; None stays None."""
    if category_path is None:
        return None
    return category_path.split(CATEGORY_SEPARATOR)[-1].strip()


def leaf_category_column(category_path):
    """The same rule as a Spark column expression."""
    from pyspark.sql import functions as F

    return F.trim(F.element_at(F.split(category_path, CATEGORY_SEPARATOR), -1))


def leaf_category_series(category_path):
    """The same rule on a pandas Series of strings (nulls stay null)."""
    return category_path.str.split(CATEGORY_SEPARATOR).str[-1].str.strip()
