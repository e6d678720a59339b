"""The ground truth under `truth/` that the pipeline is scored against: which person is behind every id,
which devices are shared, each person's real tastes (and, per day, the bad rows planted: see `defects`)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from jobs.shop.arrays import STRING, take
from jobs.shop.catalog import TOP_CATEGORIES
from jobs.shop.identities import HOUSEHOLD, PERSONAL, Identity
from jobs.shop.knobs import COUNTRIES
from jobs.shop.people import People
from jobs.storage import io
from jobs.storage.layout import Layout

TRUTH_SCHEMAS: dict[str, pa.Schema] = {
    "identities": pa.schema([("id_type", STRING), ("id", STRING), ("person", STRING)]),
    "shared_devices": pa.schema([("anonymous_id", STRING), ("kind", STRING), ("n_persons", pa.int32())]),
    "persons": pa.schema([("person", STRING), ("country", STRING),
                          ("favourite_categories", pa.list_(STRING)), ("is_registered", pa.bool_())]),
    "defects": pa.schema([("event_id", STRING), ("defect", STRING)]),
}


def write_truth(layout: Layout, ppl: People, ident: Identity, seen_devices: np.ndarray,
                seen_accounts: np.ndarray) -> None:
    """Writes truth/identities, truth/shared_devices and truth/persons once the events are all written
    (`seen_*`: the devices and accounts that appear in them)."""
    io.write_arrow_parquet(_identities(ppl, ident, seen_devices, seen_accounts), layout.truth("identities"))
    io.write_arrow_parquet(_shared_devices(ident), layout.truth("shared_devices"))
    io.write_arrow_parquet(_persons(ppl), layout.truth("persons"))


def _identities(ppl: People, ident: Identity, seen_devices: np.ndarray, seen_accounts: np.ndarray) -> pa.Table:
    """Every user_id and every personal (not shared) anonymous_id that appears in the events."""
    acc = np.flatnonzero(seen_accounts)
    personal = np.flatnonzero(ident.device_kind == PERSONAL)
    owner = np.full(len(ident.device_ids), -1)
    owner[ident.slot_device[ident.device_kind[ident.slot_device] == PERSONAL]] = \
        ident.slot_person[ident.device_kind[ident.slot_device] == PERSONAL]
    dev = personal[seen_devices[personal]]
    return pa.table({
        "id_type": pa.array(["user_id"] * acc.size + ["anonymous_id"] * dev.size, STRING),
        "id": pa.concat_arrays([take(ident.account_ids, acc), take(ident.device_ids, dev)]),
        "person": pa.concat_arrays([take(ppl.person_keys, ident.account_person[acc]),
                                    take(ppl.person_keys, owner[dev])]),
    }, schema=TRUTH_SCHEMAS["identities"])


def _shared_devices(ident: Identity) -> pa.Table:
    shared = np.flatnonzero(ident.device_kind != PERSONAL)
    n_persons = np.array([len(ident.household_partners[d]) if ident.device_kind[d] == HOUSEHOLD
                          else np.unique(ident.kiosk_person[ident.kiosk_device == d]).size for d in shared.tolist()])
    return pa.table({
        "anonymous_id": take(ident.device_ids, shared),
        "kind": pa.array(["household" if k == HOUSEHOLD else "kiosk" for k in ident.device_kind[shared].tolist()],
                         STRING),
        "n_persons": pa.array(n_persons.astype(np.int32), pa.int32()),
    }, schema=TRUTH_SCHEMAS["shared_devices"])


def _persons(ppl: People) -> pa.Table:
    return pa.table({
        "person": ppl.person_keys,
        "country": take(pa.array(list(COUNTRIES), STRING), ppl.country),
        "favourite_categories": pa.array([[TOP_CATEGORIES[t] for t in f] for f in ppl.fav_tops], pa.list_(STRING)),
        "is_registered": pa.array(ppl.registered),
    }, schema=TRUTH_SCHEMAS["persons"])
