"""Readiness gaps planted across a whole shop, each spoiling one area of `recs assess` the way real feeds do.

Unlike the bad rows of `jobs.shop.defects`, each of these leaves every row valid; together the rows say
something is wrong:

- `views_stop`: the `ios` app stops sending `product_view` halfway through the period (a collector release
  that dropped the event): an event-collection gap on one platform;
- `brands_fade`: from halfway on, a growing share of catalog items lose their `brand` (90% by the last day):
  a catalog attribute gap that widens;
- `fragmented_ids`: the `anonymous_id` is not kept between sessions (a new cookie or app id every session):
  fragmented identities; logged-in events still carry the `user_id`.
"""
from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PLANTED_GAPS = ("views_stop", "brands_fade", "fragmented_ids")
STOPPED_PLATFORM = "ios"
FADED_SHARE_AT_END = 0.9


def check_gaps(gaps) -> tuple[str, ...]:
    unknown = sorted(set(gaps) - set(PLANTED_GAPS))
    if unknown:
        raise ValueError(f"generate_shop: unknown planted gap(s) {unknown}; known: {list(PLANTED_GAPS)}")
    return tuple(g for g in PLANTED_GAPS if g in gaps)


def plant_gaps(gaps: tuple[str, ...], events: pa.Table, catalog: pa.Table, *, d: int,
               days: int) -> tuple[pa.Table, pa.Table]:
    """Day `d`'s (of `days`) events and catalog snapshot with `gaps` planted."""
    half = days // 2
    if "views_stop" in gaps and d >= half:
        stopped = pc.and_(pc.equal(events["event_type"], "product_view"),
                          pc.equal(events["device_type"], STOPPED_PLATFORM))
        events = events.filter(pc.invert(pc.fill_null(stopped, False)))
    if "brands_fade" in gaps and d >= half:
        share = FADED_SHARE_AT_END * (d - half + 1) / max(days - half, 1)
        # a stable draw per item, so an item that lost its brand stays without it
        draw = np.array([zlib.crc32(i.encode()) % 10_000 / 10_000 for i in catalog["item_id"].to_pylist()])
        brand = catalog["brand"].to_numpy(zero_copy_only=False)
        faded = pa.array(np.where(draw < share, None, brand), pa.string())
        catalog = catalog.set_column(catalog.schema.get_field_index("brand"), catalog.schema.field("brand"), faded)
    if "fragmented_ids" in gaps:
        session_ids = events["session_id"].to_numpy(zero_copy_only=False).astype(object)
        anon = events["anonymous_id"].to_pylist()
        fresh = pa.array(["f" + s if s else a for s, a in zip(session_ids, anon)], pa.string())
        events = events.set_column(events.schema.get_field_index("anonymous_id"), events.schema.field("anonymous_id"),
                                   fresh)
    return events, catalog
