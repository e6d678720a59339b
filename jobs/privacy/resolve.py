"""Who is to be forgotten: every id of the person behind a user_id (plus ids the requester names).

Sources: the latest identity state (`state/identity/dt=*/nodes` and `merges`) and every identity map
(`identity/dt=*`), read with pyarrow. Starting from the given ids, the person ids they belong to are collected,
then every id of those persons, then again until nothing new turns up (persons merged over time, several accounts
joined by one email). Two guards keep the erasure on one person:
- a *hub* (kiosk, bot) is never one of the person's ids, and
- a *shared* device or a hub never leads to a person: its id maps to whoever used it last, maybe someone else.
A shared device that maps to the person is erased with them (its other users lose their anonymous events on it).
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.storage import io
from jobs.storage.layout import Layout

NO_PERSON_ROLES = ("hub", "shared", "email_hub")  # their person is not (only) the requester's
NEVER_ERASED_ROLES = ("hub", "email_hub")  # ids many people share: only rows with the person's own ids go
MAX_ROUNDS = 10


@dataclass
class Subject:
    user_id: str
    ids: set[str] = field(default_factory=set)  # user_ids, anonymous_ids, email_hashes
    person_ids: set[str] = field(default_factory=set)

    def all_ids(self) -> set[str]:
        return self.ids | self.person_ids


def _read(path: str, columns: list[str]) -> pa.Table | None:
    files = io.data_files(path, (".parquet",))
    if not files:
        return None
    fs, _ = io.fs_for(path)
    tables = []
    for f in files:
        with fs.open(f, "rb") as fh:
            t = pq.ParquetFile(fh).read()
        tables.append(t.select([c for c in columns if c in t.column_names]))
    return pa.concat_tables(tables, promote_options="default")


def load_sources(root: str) -> dict:
    """Arrow tables of the latest identity state's nodes and merges and of every identity map (None if absent)."""
    layout = Layout(root)
    states = io.partition_dates(posixpath.dirname(layout.identity_state("1970-01-01")))
    nodes = merges = None
    if states:
        latest = layout.identity_state(states[-1])
        nodes = _read(f"{latest}/nodes", ["id", "id_type", "role", "person_id", "map_person_id"])
        merges = _read(f"{latest}/merges", ["merged_person_id", "person_id"])
    maps = [t for d in io.partition_dates(posixpath.dirname(layout.identity("1970-01-01")))
            if (t := _read(layout.identity(d), ["id_type", "id", "person_id"])) is not None]
    return {"nodes": nodes, "merges": merges, "maps": pa.concat_tables(maps) if maps else None,
            "state_date": states[-1] if states else None}


def _in(table: pa.Table, column: str, values: set[str]) -> pa.Array:
    return pc.fill_null(pc.is_in(table.column(column), value_set=pa.array(sorted(values), pa.string())), False)


def _values(table: pa.Table | None, mask, *columns: str) -> set[str]:
    if table is None or not len(table):
        return set()
    rows = table.filter(mask)
    return {v for c in columns for v in rows.column(c).to_pylist() if v}


def resolve(sources: dict, user_id: str, anonymous_ids=(), email_hashes=()) -> Subject:
    """The closure of the given ids over persons (see the module docstring). Pure."""
    subject = Subject(user_id=user_id, ids={user_id, *anonymous_ids, *email_hashes} - {None, ""})
    nodes, merges, maps = sources.get("nodes"), sources.get("merges"), sources.get("maps")
    no_person, never = set(), set()  # ids of shared devices and hubs; of hubs only
    if nodes is not None and len(nodes):
        role = nodes.column("role")
        no_person = _values(nodes, pc.fill_null(pc.is_in(role, value_set=pa.array(NO_PERSON_ROLES)), False), "id")
        never = _values(nodes, pc.fill_null(pc.is_in(role, value_set=pa.array(NEVER_ERASED_ROLES)), False), "id")
    for _ in range(MAX_ROUNDS):
        before = (len(subject.ids), len(subject.person_ids))
        leading = subject.ids - no_person
        if leading and nodes is not None and len(nodes):
            subject.person_ids |= _values(nodes, _in(nodes, "id", leading), "person_id", "map_person_id")
        if leading and maps is not None and len(maps):
            subject.person_ids |= _values(maps, _in(maps, "id", leading), "person_id")
        if subject.person_ids and merges is not None and len(merges):
            hit = pc.or_(_in(merges, "person_id", subject.person_ids), _in(merges, "merged_person_id", subject.person_ids))
            subject.person_ids |= _values(merges, hit, "person_id", "merged_person_id")
        if subject.person_ids and nodes is not None and len(nodes):
            hit = pc.or_(_in(nodes, "person_id", subject.person_ids), _in(nodes, "map_person_id", subject.person_ids))
            subject.ids |= _values(nodes, hit, "id") - never
        if subject.person_ids and maps is not None and len(maps):
            subject.ids |= _values(maps, _in(maps, "person_id", subject.person_ids), "id") - never
        if (len(subject.ids), len(subject.person_ids)) == before:
            break
    return subject


def resolve_subject(root: str, user_id: str, anonymous_ids=(), email_hashes=()) -> Subject:
    return resolve(load_sources(root), user_id, anonymous_ids, email_hashes)
