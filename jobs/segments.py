"""Segment keys: the `subject_id` of segment lists, built by ranking and looked up by serving and the gate.

A key names one value per dimension, most specific first: `country=DE/device_type=ios`, `country=DE`,
`device_type=ios`, then `global`. Values are escaped (`%` -> `%25`, `/` -> `%2F`, `=` -> `%3D`), so no value,
whatever it holds, can make two different contexts share a key. The same rule in three forms: Python (for
lookups), a Spark column (for ranking) and pandas (for the gate). Kept free of Spark imports at module load so
that a lookup stays a millisecond affair.
"""
from __future__ import annotations

import json

GLOBAL = "global"
# what a segment list may be keyed by (`segments.dimensions`): context the events and the lookup carry, and the
# profile's (`declared_category`: the first category declared at onboarding); see jobs/coldstart.py
EVENT_DIMENSIONS = ("country", "device_type", "entry_source")
PROFILE_DIMENSIONS = ("age_band", "gender", "declared_category")
KNOWN_DIMENSIONS = EVENT_DIMENSIONS + PROFILE_DIMENSIONS
PROFILE_KEY_PREFIX = "profile:"  # the kv key of a user's profile context (beside `person:` and `segment:`)
_ESCAPES = (("%", "%25"), ("/", "%2F"), ("=", "%3D"))  # `%` first, so escapes are never escaped twice


def escape(value: str) -> str:
    for raw, escaped in _ESCAPES:
        value = value.replace(raw, escaped)
    return value


def segment_key(pairs: list[tuple[str, str]]) -> str:
    """`[("country", "DE"), ("device_type", "ios")]` -> `country=DE/device_type=ios`; `[]` -> `global`."""
    return "/".join(f"{dim}={escape(str(value))}" for dim, value in pairs) if pairs else GLOBAL


def segment_keys(dimensions: tuple[str, ...]) -> list[list[str]]:
    """Dimension sets from most to least specific: (country, device_type), (country,), (device_type,), ()."""
    combos: list[list[str]] = [[]]
    for d in dimensions:
        combos += [c + [d] for c in combos]
    return sorted(combos, key=lambda c: (-len(c), [dimensions.index(x) for x in c]))


def lookup_keys(dimensions: tuple[str, ...], context: dict[str, str | None]) -> list[str]:
    """The segment keys that match a lookup context, most specific first, ending with `global`."""
    return [segment_key([(d, context[d]) for d in combo])
            for combo in segment_keys(dimensions) if all(context.get(d) for d in combo)]


def key_column(dims: list[str]):
    """The key of `dims` as a Spark column (null when any of the dims is null)."""
    from pyspark.sql import functions as F

    if not dims:
        return F.lit(GLOBAL)

    def escaped(col):
        for raw, esc in _ESCAPES:
            col = F.replace(col, F.lit(raw), F.lit(esc))
        return col

    return F.concat_ws("/", *[F.concat(F.lit(f"{d}="), escaped(F.col(d))) for d in dims])


def known_context_keys(frame, dimensions: tuple[str, ...]):
    """pandas: per row, the key of every dimension the row knows (unknown ones left out; none known -> null)."""
    import pandas as pd

    key = pd.Series(pd.NA, index=frame.index, dtype="str")
    for dim in dimensions:
        if dim not in frame.columns:
            continue
        known = frame[dim].notna()
        # through object: a dimension no row knows reads as all-NaN floats (MovieLens' devices), not strings
        values = frame[dim].astype(object).where(known, "").astype("str")
        part = (dim + "=" + values.map(escape)).where(known)
        joined = (key + "/" + part).where(key.notna(), part)
        key = key.where(part.isna(), joined)
    return key


def check_dimensions(dimensions) -> None:
    unknown = [d for d in dimensions if d not in KNOWN_DIMENSIONS]
    if unknown:
        raise ValueError(f"segments.dimensions: {unknown} not known; segment dimensions are any of "
                         f"{list(KNOWN_DIMENSIONS)}")


def decode_context(raw: str | None) -> dict:
    """A stored profile context (JSON {dimension: value}) without its empty values."""
    return {k: v for k, v in json.loads(raw).items() if v} if raw else {}
