"""Bad rows planted among a day's good events, each listed in `truth/defects`.

They are drawn from a random stream of their own, so the good rows are the same whatever the rate: a
quality check can then be scored row by row against the clean shop.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

import schemas
from jobs.shop.arrays import STRING, hex_strings
from jobs.shop.truth import TRUTH_SCHEMAS
from schemas.vocabulary import ITEM_EVENT_TYPES

DEFECT_KINDS = ("null_required", "unknown_event_type", "bad_price", "bad_quantity", "duplicate_event_id",
                "outside_day", "unknown_item")
# Event types no collector should send; each is wrong as is, not a case or spelling variant of a valid one.
UNKNOWN_EVENT_TYPES = ("page_view", "wishlist_add", "video_play", "share_click")
# Kinds that can spoil any row; the others need (or make) a row of a fitting event type.
_ANY_ROW = ("null_required", "unknown_event_type", "duplicate_event_id", "outside_day")


def plant_defects(events: pa.Table, *, rate: float, rng: np.random.Generator, day: dt.date,
                  unknown_item_from: int, item_id_width: int) -> tuple[pa.Table, pa.Table]:
    """Adds about `rate * len(events)` bad rows to one day's good events.

    Each bad row is a changed copy of a random good row (with a fresh `event_id`, except
    `duplicate_event_id`, which is an exact copy placed right after its original), bad in exactly one way.

    Parameters
    ----------
    events : the day's good events, in the events contract schema.
    rate : bad rows per good row; 0 adds none.
    rng : the random stream for defects only, so that the good rows do not depend on `rate`.
    day : the partition's day (for `outside_day`).
    unknown_item_from : item numbers from here on are in no catalog.
    item_id_width : digits in an item id.

    Returns
    -------
    (events with the bad rows added, the defects truth table: event_id, defect)
    """
    n_bad = round(rate * events.num_rows)
    if n_bad == 0 or events.num_rows == 0:
        return events, TRUTH_SCHEMAS["defects"].empty_table()
    kinds = np.resize(rng.permutation(len(DEFECT_KINDS)), n_bad)
    src = _source_rows(rng, events, kinds)
    rows = events.take(pa.array(src)).to_pylist()
    fresh = hex_strings(rng, n_bad, 32).to_pylist()
    day_start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    truth_ids = []
    for i, (row, k) in enumerate(zip(rows, kinds.tolist())):
        _spoil(rng, row, DEFECT_KINDS[k], fresh_id=fresh[i], day_start=day_start,
               unknown_item_from=unknown_item_from, item_id_width=item_id_width)
        truth_ids.append(row["event_id"])
    bad = pa.Table.from_pylist(rows, schema=schemas.load("events").arrow())
    combined = pa.concat_tables([events, bad])
    # each bad row right after the row it was copied from
    position = np.concatenate([np.arange(events.num_rows), src])
    after = np.concatenate([np.zeros(events.num_rows, np.int64), np.arange(1, n_bad + 1)])
    combined = combined.take(pa.array(np.lexsort((after, position))))
    truth = pa.table({"event_id": pa.array(truth_ids, STRING),
                      "defect": pa.array([DEFECT_KINDS[k] for k in kinds.tolist()], STRING)},
                     schema=TRUTH_SCHEMAS["defects"])
    return combined, truth


def _source_rows(rng: np.random.Generator, events: pa.Table, kinds: np.ndarray) -> np.ndarray:
    """The good row each bad row is copied from, of an event type its defect can spoil."""
    etype = np.array(events["event_type"].to_numpy(zero_copy_only=False), dtype=object)
    is_item = np.isin(etype, ITEM_EVENT_TYPES)
    priced = np.isin(etype, ("purchase", "return"))
    counted = np.isin(etype, ("add_to_cart", "purchase", "return"))
    eligible = {"bad_price": priced, "bad_quantity": counted, "unknown_item": is_item}
    src = np.empty(kinds.size, dtype=np.int64)
    for k, name in enumerate(DEFECT_KINDS):
        at = np.flatnonzero(kinds == k)
        pool = np.flatnonzero(eligible.get(name, is_item))
        if name in _ANY_ROW:
            pool = np.arange(events.num_rows)
        if pool.size == 0:  # e.g. no purchase today: an item event is turned into one in `_spoil`
            pool = np.flatnonzero(is_item) if is_item.any() else np.arange(events.num_rows)
        src[at] = pool[rng.integers(0, pool.size, at.size)]
    return src


def _spoil(rng: np.random.Generator, row: dict, name: str, *, fresh_id: str, day_start: dt.datetime,
           unknown_item_from: int, item_id_width: int) -> None:
    """Makes the copied `row` bad in the way `name` says, in place."""
    if name != "duplicate_event_id":
        row["event_id"] = fresh_id
    if name == "null_required":
        row[("anonymous_id", "event_type", "event_time")[int(rng.integers(3))]] = None
    elif name == "unknown_event_type":
        row["event_type"] = UNKNOWN_EVENT_TYPES[int(rng.integers(len(UNKNOWN_EVENT_TYPES)))]
    elif name == "bad_price":
        if row["event_type"] not in ("purchase", "return"):
            row.update(event_type="purchase", quantity=1, order_id="o" + fresh_id[:16], email_hash=None,
                       experiment_id=None, variant=None)
        row["price"] = -abs(row["price"] or 10.0) if rng.random() < 0.5 else 0.0
    elif name == "bad_quantity":
        if row["event_type"] not in ("add_to_cart", "purchase", "return"):
            row.update(event_type="add_to_cart", email_hash=None, experiment_id=None, variant=None)
        row["quantity"] = int(rng.choice([0, -1, -2]))
    elif name == "outside_day":
        off = int(rng.choice([-3, -2, -1, 1, 2, 3]))
        # one day off: the half of that day farthest from the partition, far past any late-arrival tolerance
        lo, hi = (0, 12) if off == -1 else (12, 24) if off == 1 else (0, 24)
        tod = dt.timedelta(microseconds=int(rng.integers(lo * 3_600_000_000, hi * 3_600_000_000)))
        row["event_time"] = day_start + dt.timedelta(days=off) + tod
    elif name == "unknown_item":
        number = unknown_item_from + int(rng.integers(0, 10 ** item_id_width // 2))
        row["item_id"] = f"i{number:0{item_id_width}d}"
