"""The identity state carried from night to night, and the reads and writes of stitching.

`state/identity/dt=D/` holds `nodes/`, `links/`, `persons/`, `merges/` (cumulative) and `days.json` (the
validated days it has consumed). Night D starts from the latest earlier state and adds every validated day
<= D that the state has not consumed: the days after it, and a late partition validated since. With no
earlier state it reads every validated day <= D. Days after D are never read.

Everything here goes through `jobs.storage.io` and `jobs.storage.layout.Layout`, so a URI root works too.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.storage import io
from jobs.storage.layout import Layout

NODES_DDL = ("node string, id_type string, id string, first_dt date, first_time timestamp, "
             "last_time timestamp, role string, accounts long, person_id string, map_person_id string")
LINKS_DDL = "src string, dst string, first_dt date, first_time timestamp, last_time timestamp, events long"
PERSONS_DDL = ("person_id string, anchor string, anchor_first_dt date, anchor_first_time timestamp, "
               "created_dt date, status string, members long, merged_into string, merged_dt date")
MERGES_DDL = "merged_person_id string, person_id string, dt date"
STATE_TABLES = ("nodes", "links", "persons", "merges")
_DDLS = dict(zip(STATE_TABLES, (NODES_DDL, LINKS_DDL, PERSONS_DDL, MERGES_DDL)))

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
        Accumulated links `src`-`dst` between node keys (`LINKS_DDL`).
    persons : DataFrame
        Every person ever assigned (`PERSONS_DDL`): `status` live or merged, the anchor that fixes its id,
        and for merged ones `merged_into`, the live person their anchor belongs to now.
    merges : DataFrame
        Log of merges, never rewritten: merged_person_id -> person_id (the survivor then), dt.
    """

    nodes: DataFrame
    links: DataFrame
    persons: DataFrame
    merges: DataFrame

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
    """Reads a persisted state folder (`Layout.identity_state(ds)`).

    Raises
    ------
    FileNotFoundError
        When a table is missing (the folder is not a complete state).
    """
    missing = [t for t in STATE_TABLES if not io.exists(f"{path}/{t}")]
    if missing:
        raise FileNotFoundError(f"identity state at {path} is incomplete: no {missing}")
    return IdentityState(*(spark.read.schema(_DDLS[t]).parquet(f"{path}/{t}") for t in STATE_TABLES))


def read_consumed_days(path: str) -> list[str]:
    """The validated days the state at `path` has consumed (`days.json`); none when it has no such file."""
    return sorted(io.read_json(f"{path}/days.json", default=[]))


def write_state(state: IdentityState, path: str, *, days: list[str], partitions: int) -> str:
    """Writes all state tables and `days.json` into `path` at once (the folder is replaced whole)."""
    with io.atomic_dir(path) as tmp:
        state.nodes.repartition(partitions, "node").write.parquet(f"{tmp}/nodes")
        state.links.repartition(partitions, "src").write.parquet(f"{tmp}/links")
        state.persons.coalesce(partitions).write.parquet(f"{tmp}/persons")
        state.merges.coalesce(1).write.parquet(f"{tmp}/merges")
        io.write_json(f"{tmp}/days.json", sorted(days))
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
