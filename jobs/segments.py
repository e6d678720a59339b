"""Segment keys, shared by ranking (which builds segment lists) and serving (which falls back to them).

A key names one value per dimension, most specific first: `country=DE/device_type=ios`, `country=DE`,
`device_type=ios`, then `global`. Kept free of Spark so that a lookup stays a millisecond affair.
"""
from __future__ import annotations

GLOBAL = "global"


def segment_keys(dimensions: tuple[str, ...]) -> list[list[str]]:
    """Dimension sets from most to least specific: (country, device_type), (country,), (device_type,), ()."""
    combos: list[list[str]] = [[]]
    for d in dimensions:
        combos += [c + [d] for c in combos]
    return sorted(combos, key=lambda c: (-len(c), [dimensions.index(x) for x in c]))


def lookup_keys(dimensions: tuple[str, ...], context: dict[str, str | None]) -> list[str]:
    """The segment keys that match a lookup context, most specific first, ending with `global`."""
    keys = []
    for combo in segment_keys(dimensions):
        if all(context.get(d) for d in combo):
            keys.append("/".join(f"{d}={context[d]}" for d in combo) if combo else GLOBAL)
    return keys
