"""The identity state carried from night to night, and the reads and writes of stitching.

Which days a night reads
------------------------
`state/identity/dt=D/` holds `nodes/`, `links/`, `link_days/`, `persons/`, `merges/` (cumulative) and
`days.json`: every validated day it has consumed, with the `fingerprint` of the validated day it read (from
the marker `_recs_validated.json` that the validate stage writes into `validated/events/dt=d/`). Night D
starts from the latest earlier state and reads, in full, every validated day <= D that

* the state has not consumed (the days after it, a day validated late), or
* the state consumed with a fingerprint that differs from the day's marker now: the day was validated again
  since (a late partition: more raw files for an old day arrived, so validate re-validated it). Its new
  logins are stitched and its new people get lists.

A day read again replaces its earlier contribution: `link_days/` keeps each link's events, first and last
time per day, so the day's rows are swapped for tonight's and `links/` (their sum per link) counts nothing
twice; a node's first and last sighting are a minimum and a maximum, which a repeated read leaves as they
were. A day consumed with an unknown fingerprint (a state of an older format, whose `days.json` is a plain
list of days, or a validated folder without a marker) stays consumed, as before, and an older state without
`link_days/` gets each link's whole history on its first day, which is never read again. With no earlier
state a night reads every validated day <= D. Days after D are never read.

Everything here goes through `jobs.storage.io` and `jobs.storage.layout.Layout`, so a URI root works too.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.storage import io
from jobs.storage.layout import VALIDATED_MARKER, Layout

NODES_DDL = ("node string, id_type string, id string, first_dt date, first_time timestamp, "
             "last_time timestamp, role string, accounts long, person_id string, map_person_id string")
LINKS_DDL = "src string, dst string, first_dt date, first_time timestamp, last_time timestamp, events long"
PERSONS_DDL = ("person_id string, anchor string, anchor_first_dt date, anchor_first_time timestamp, "
               "created_dt date, status string, members long, merged_into string, merged_dt date")
MERGES_DDL = "merged_person_id string, person_id string, dt date"
LINK_DAYS_DDL = "src string, dst string, dt date, first_time timestamp, last_time timestamp, events long"
STATE_TABLES = ("nodes", "links", "persons", "merges", "link_days")
_DDLS = dict(zip(STATE_TABLES, (NODES_DDL, LINKS_DDL, PERSONS_DDL, MERGES_DDL, LINK_DAYS_DDL)))

"""The marker the validate stage writes into each validated day (`jobs.stages.validate.MARKER`)."""

STITCH_COLUMNS = ("anonymous_id", "user_id", "email_hash", "event_time", "session_id")
"""The event columns stitching reads (the validated events carry more)."""


@dataclass
class IdentityState:
    """The persisted identity graph after one night.

    Attributes
    ----------
    nodes : DataFrame
        One row per user_id, anonymous_id and email_hash ever seen (`NODES_DDL`): first/last seen, `role`
        (account, email, email_hub, anonymous, linked, shared, hub), `accounts` (user_ids linked to an
        anonymous_id or email_hash), `person_id` (the graph component's person) and `map_person_id`
        (what the identity map publishes; null for hubs and emails).
    links : DataFrame
        Accumulated links `src`-`dst` between node keys (`LINKS_DDL`): the sum of `link_days` per link.
    persons : DataFrame
        Every person ever assigned (`PERSONS_DDL`): `status` live or merged, the anchor that fixes its id,
        and for merged ones `merged_into`, the live person their anchor belongs to now.
    merges : DataFrame
        Log of merges, never rewritten: merged_person_id -> person_id (the survivor then), dt.
    link_days : DataFrame
        Each consumed day's contribution to each link (`LINK_DAYS_DDL`): what a day read again replaces.
    """

    nodes: DataFrame
    links: DataFrame
    persons: DataFrame
    merges: DataFrame
    link_days: DataFrame

    @classmethod
    def empty(cls, spark: SparkSession) -> IdentityState:
        """A state with no rows: what a first night starts from."""
        return cls(*(spark.createDataFrame([], _DDLS[t]) for t in STATE_TABLES))


def _layout(where: Layout | str) -> Layout:
    return where if isinstance(where, Layout) else Layout(where)


def state_root(layout: Layout) -> str:
    """The folder holding every night's `dt=D` state."""
    return posixpath.dirname(layout.identity_state("1970-01-01").rstrip("/"))


def latest_state_before(layout: Layout, run_date: str) -> str | None:
    """The latest night before `run_date` that wrote a state, or None."""
    earlier = [d for d in io.partition_dates(state_root(layout)) if d < run_date]
    return earlier[-1] if earlier else None


def read_state(spark: SparkSession, path: str) -> IdentityState:
    """Reads a persisted state folder (`Layout.identity_state(ds)`); one without `link_days/` (an older
    format) gets each link's whole history as a contribution of its first day.

    Raises
    ------
    FileNotFoundError
        When a table is missing (the folder is not a complete state).
    """
    missing = [t for t in STATE_TABLES if t != "link_days" and not io.exists(f"{path}/{t}")]
    if missing:
        raise FileNotFoundError(f"identity state at {path} is incomplete: no {missing}")
    tables = {t: spark.read.schema(_DDLS[t]).parquet(f"{path}/{t}") for t in STATE_TABLES
              if t != "link_days" or io.exists(f"{path}/{t}")}
    if "link_days" not in tables:
        tables["link_days"] = tables["links"].select("src", "dst", F.col("first_dt").alias("dt"), "first_time",
                                                     "last_time", "events")
    return IdentityState(**tables)


def read_consumed_days(path: str) -> dict[str, str | None]:
    """The validated days the state at `path` has consumed, each with the fingerprint it read (None: unknown).

    `days.json` maps day -> fingerprint; a plain list (an older state) means consumed, fingerprint unknown.
    No file: nothing consumed.
    """
    days = io.read_json(f"{path}/days.json", default={})
    return dict(sorted(days.items())) if isinstance(days, dict) else {d: None for d in sorted(days)}


def validated_fingerprint(layout: Layout, day: str) -> str | None:
    """The fingerprint in day `day`'s validated events marker; None when the folder has no marker."""
    marker = io.read_json(posixpath.join(layout.validated("events", day), VALIDATED_MARKER))
    return (marker or {}).get("fingerprint")


def days_to_read(layout: Layout, run_date: str, consumed: dict[str, str | None]) -> dict[str, str | None]:
    """The validated days <= `run_date` a night must read (module docstring), each with its fingerprint now.

    A day is read when `consumed` lacks it, or holds a known fingerprint other than the day's marker's now
    (a missing marker counts as other). A day consumed with an unknown fingerprint is not read again.
    """
    out = {}
    for day in io.partition_dates(layout.validated("events")):
        if day > run_date:
            break
        had = consumed.get(day)
        if day in consumed and had is None:
            continue
        now = validated_fingerprint(layout, day)
        if day not in consumed or now != had:
            out[day] = now
    return out


def write_state(state: IdentityState, path: str, *, consumed: dict[str, str | None], partitions: int) -> str:
    """Writes all state tables and `days.json` (`consumed`: day -> fingerprint read, None if unknown) into
    `path` at once (the folder is replaced whole)."""
    with io.atomic_dir(path) as tmp:
        state.nodes.repartition(partitions, "node").write.parquet(f"{tmp}/nodes")
        state.links.repartition(partitions, "src").write.parquet(f"{tmp}/links")
        state.link_days.repartition(partitions, "src").write.parquet(f"{tmp}/link_days")
        state.persons.coalesce(partitions).write.parquet(f"{tmp}/persons")
        state.merges.coalesce(1).write.parquet(f"{tmp}/merges")
        io.write_json(f"{tmp}/days.json", dict(sorted(consumed.items())))
    return path


def load_state_nodes(spark: SparkSession, where: Layout | str, run_date: str) -> DataFrame:
    """The identity state's nodes for `run_date`, the `state_nodes` argument of `attribute_events`.

    Parameters
    ----------
    where : Layout or str
        The data root's `Layout`, or the data root itself.

    Raises
    ------
    FileNotFoundError
        When the stitch stage has not written that night's state.
    """
    path = _layout(where).identity_state(run_date)
    if not io.exists(f"{path}/nodes"):
        raise FileNotFoundError(f"no identity state for {run_date} at {path}: run the stitch stage for that date first")
    return spark.read.schema(NODES_DDL).parquet(f"{path}/nodes")


def read_validated_events(spark: SparkSession, layout: Layout, days: list[str],
                          columns: tuple[str, ...] = STITCH_COLUMNS) -> DataFrame:
    """Validated events of `days` (selected columns) with `dt`, the partition day (a date); no rows for no days.

    Read with `basePath` so that Spark takes `dt` from the folder names: free, unlike parsing each row's
    file path.

    Raises
    ------
    FileNotFoundError
        When a day has no validated events folder.
    """
    from schemas import load

    schema = load("events").spark()
    if not days:
        return spark.createDataFrame([], schema).select(*columns, F.lit(None).cast("date").alias("dt"))
    paths = [layout.validated("events", d) for d in days]
    missing = [p for p in paths if not io.exists(p)]
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"no validated events at {missing[0]}{more}")
    df = spark.read.option("basePath", layout.validated("events")).schema(schema).parquet(*paths)
    return df.select(*columns, F.to_date(F.col("dt")).alias("dt"))
