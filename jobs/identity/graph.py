"""Identity stitching: the cookies, app installs and accounts of one person become one `person_id`.

The identity graph
------------------
Nodes are user_ids, anonymous_ids (cookies, app installs) and email_hashes. Links come from the events:
anonymous_id-user_id (a login or any event carrying both), anonymous_id-email_hash and user_id-email_hash
(the `email_hash` sent with a login). Every link keeps the day and time it was first seen, the time it
was last seen and its events, per day (`link_days`, so that a day read again replaces its own share) and
summed (`links`); links and nodes accumulate from night to night in the identity state (`jobs.identity.state`).

Guards against over-merging
---------------------------
* Two user_ids become one person only through a shared email_hash (user-email links are the only
  edges between accounts).
* An anonymous_id is a leaf: in the graph it keeps exactly one edge, to its *home*, the first account
  (user_id or email_hash) it was seen with. A device later used by other accounts therefore never
  bridges them.
* A *shared device* is an anonymous_id whose links reach two or more persons. A *hub* is an anonymous_id
  seen with more than `identity.hub_max_accounts` user_ids (a kiosk, a bot, a test rig). An *email hub* is an
  email_hash linked to more than `identity.email_max_accounts` user_ids or `identity.email_max_devices`
  anonymous_ids (a test mailbox, a shop's own address typed at the till): it links nobody. All three are
  flagged in the state's `role` column and counted in the run report.

What the identity map says (contract `identity/dt=D/`, `identity_map`)
---------------------------------------------------------------------
* every user_id: its person;
* an anonymous_id of one person: that person; one never seen with an account: its own anonymous person;
* a shared device's anonymous_id: the person of the account most recently seen on it (the likeliest
  user the next time the storefront sees that cookie logged out);
* a hub's anonymous_id is left out, so the storefront serves it the segment list it serves strangers:
  a kiosk is many people, and nobody's personal list should be shown on it.

Stable person ids
-----------------
A new person gets ``"p-" + sha256("<id_type>:<id>").hexdigest()[:16]`` of its *anchor*, its earliest-seen
user_id or anonymous_id (first partition day, then first event time; ties broken by the internal node key,
which puts anonymous ids before user ids). The typed id is hashed, not the bare one, so that a user_id and
an anonymous_id that happen to share a text never share a person. Anchor and person_id are stored and
carried from night to night: tonight's component keeps the person_id of the earlier person whose anchor it
holds. When it holds several (two persons merge), the one with the earliest anchor survives and each other
one is recorded in `merges` (merged_person_id -> person_id, dt); `persons.merged_into` always names where a
merged person lives now. A shared device or a hub keeps its home edge in the graph, so a person anchored on
a device that later turns out to be shared keeps its id. Because a person's anchor is also its earliest
member, a rebuild from scratch gives the ids the nightly runs gave. The one exception is a split, when an
email becomes an email hub and the accounts it joined fall apart: the part holding the anchor keeps the id,
and the other parts get ids from their own anchors (which may differ from what a rebuild would give).

One night is `stitch(events, prior_state, settings, run_date=...)`: pure apart from Spark actions (counts,
local checkpoints); the state's tables and their reads and writes are in `jobs.identity.state`, which events
go to which person in `jobs.identity.attribution`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.config import IdentityConfig
from jobs.identity.components import checkpoint, connected_components
from jobs.identity.state import IdentityState

# Internal node keys: one-letter type prefix + id. Sorting them puts anonymous ids before email hashes
# before user ids, which is the documented tie-break for anchors.
PREFIX = {"anonymous_id": "a:", "email_hash": "e:", "user_id": "u:"}
ID_TYPE_OF_PREFIX = {v: k for k, v in PREFIX.items()}

ROLE_ACCOUNT, ROLE_EMAIL, ROLE_EMAIL_HUB = "account", "email", "email_hub"
ROLE_ANONYMOUS, ROLE_LINKED, ROLE_SHARED, ROLE_HUB = "anonymous", "linked", "shared", "hub"

EVENT_COLUMNS = ("anonymous_id", "user_id", "email_hash", "event_time")


@dataclass
class StitchResult:
    """What one night of stitching produced.

    Attributes
    ----------
    identity_map : DataFrame
        Contract identity map: id_type, id, person_id.
    state : IdentityState
        The new state to persist for this night.
    merges : DataFrame
        Tonight's merges only: merged_person_id, person_id, dt.
    stats : dict
        Counts for the run report (persons, new persons, merges, hubs, shared devices, iterations...).
    """

    identity_map: DataFrame
    state: IdentityState
    merges: DataFrame
    stats: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- helpers

def person_id_for(id_type: str, id_: str) -> str:
    """The person_id a new person anchored on (`id_type`, `id_`) gets (mirrors the Spark expression)."""
    return "p-" + hashlib.sha256(f"{id_type}:{id_}".encode()).hexdigest()[:16]


def _person_id_of_node(node: Column) -> Column:
    typed = F.concat(F.when(node.startswith("a:"), F.lit("anonymous_id:")).otherwise(F.lit("user_id:")),
                     F.substring(node, 3, 1 << 30))
    return F.concat(F.lit("p-"), F.substring(F.sha2(typed, 256), 1, 16))


def _key(prefix: str, col: str) -> Column:
    """Node key of a column; null when the id is null or blank."""
    return F.when(F.length(F.trim(F.col(col))) > 0, F.concat(F.lit(prefix), F.col(col)))


def _id_type(node: Column) -> Column:
    return (F.when(node.startswith("a:"), "anonymous_id").when(node.startswith("u:"), "user_id")
            .when(node.startswith("e:"), "email_hash"))


def require_columns(df: DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Raises ValueError naming the columns `df` (called `what` in the message) lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {df.columns}")


# ------------------------------------------------------------------------------------------- the core

def _id_triples(events: DataFrame, run_date: str) -> DataFrame:
    """The one pass over the events: per day `dt`, (anonymous_id, user_id, email_hash) with first and last
    event_time and count. Everything else is derived from this much smaller table. Days after `run_date`
    are ignored."""
    require_columns(events, EVENT_COLUMNS, "events")
    day = F.to_date(F.col("dt")) if "dt" in events.columns else F.to_date(F.col("event_time"))
    blank_is_null = lambda c: F.when(F.length(F.trim(F.col(c))) > 0, F.col(c)).alias(c)
    return (events.where(F.col("anonymous_id").isNotNull() & F.col("event_time").isNotNull()
                         & (day <= F.to_date(F.lit(run_date))))
            .select(blank_is_null("anonymous_id"), blank_is_null("user_id"), blank_is_null("email_hash"),
                    day.alias("dt"), "event_time")
            .groupBy("anonymous_id", "user_id", "email_hash", "dt")
            .agg(F.min("event_time").alias("first_time"), F.max("event_time").alias("last_time"),
                 F.count(F.lit(1)).alias("events"))
            .where(F.col("anonymous_id").isNotNull()))


def _day_links(triples: DataFrame) -> DataFrame:
    """Each day's contribution to the links seen in these events, per (src, dst, dt) (`LINK_DAYS_DDL`)."""
    a, u, e = _key("a:", "anonymous_id"), _key("u:", "user_id"), _key("e:", "email_hash")
    pairs = F.array(F.struct(a.alias("src"), u.alias("dst")), F.struct(a.alias("src"), e.alias("dst")),
                    F.struct(u.alias("src"), e.alias("dst")))
    return (triples.where(F.col("user_id").isNotNull() | F.col("email_hash").isNotNull())
            .select(F.explode(pairs).alias("p"), "dt", "first_time", "last_time", "events")
            .where(F.col("p.src").isNotNull() & F.col("p.dst").isNotNull())
            .groupBy(F.col("p.src").alias("src"), F.col("p.dst").alias("dst"), "dt")
            .agg(F.min("first_time").alias("first_time"), F.max("last_time").alias("last_time"),
                 F.sum("events").alias("events")))


def _replace_days(prior_link_days: DataFrame, new_link_days: DataFrame, days: DataFrame) -> DataFrame:
    """The prior per-day contributions, those of `days` (column `dt`) replaced by tonight's: re-reading a day
    replaces what it contributed, so nothing is counted twice."""
    kept = prior_link_days.join(F.broadcast(days), "dt", "left_anti")
    return kept.select(*new_link_days.columns).unionByName(new_link_days)


def links_of(link_days: DataFrame) -> DataFrame:
    """The accumulated links (`LINKS_DDL`) of per-day contributions: first day and time, last time, events."""
    return (link_days.groupBy("src", "dst")
            .agg(F.min(F.struct(F.col("dt").alias("first_dt"), "first_time")).alias("f"),
                 F.max("last_time").alias("last_time"), F.sum("events").alias("events"))
            .select("src", "dst", "f.first_dt", "f.first_time", "last_time", F.col("events").cast("long")))


def _seen_nodes(triples: DataFrame, links: DataFrame, prior_nodes: DataFrame) -> DataFrame:
    """node, first_dt, first_time, last_time for every node, prior and new."""
    anonymous = triples.select(F.concat(F.lit("a:"), F.col("anonymous_id")).alias("node"), F.col("dt").alias("first_dt"),
                               "first_time", "last_time")
    # Every user_id and email_hash arrives on an event with an anonymous_id: its a-links say when.
    accounts = (links.where(F.col("src").startswith("a:"))
                .select(F.col("dst").alias("node"), "first_dt", "first_time", "last_time"))
    return (prior_nodes.select("node", "first_dt", "first_time", "last_time")
            .unionByName(anonymous).unionByName(accounts)
            .groupBy("node")
            .agg(F.min(F.struct("first_dt", "first_time")).alias("f"), F.max("last_time").alias("last_time"))
            .select("node", "f.first_dt", "f.first_time", "last_time"))


def stitch(events: DataFrame, prior_state: IdentityState | None, settings: IdentityConfig, *,
           run_date: str, days: Iterable[str] | None = None) -> StitchResult:
    """One night of identity stitching: prior state + new events -> new state and identity map.

    Pure apart from Spark actions (counts, local checkpoints): reads and writes nothing.

    Parameters
    ----------
    events : DataFrame
        The validated events of the days read tonight (at least anonymous_id, user_id, email_hash, event_time;
        other columns are ignored), each day in full. An optional `dt` column (the partition day) orders first
        sightings; without it the UTC day of event_time is used. Rows of days after `run_date` are ignored.
        A day present here replaces that day's earlier contribution to the links (`link_days`): a late day
        read again is not counted twice. First and last sightings of nodes are minimum and maximum, which a
        repeated read leaves unchanged.
    prior_state : IdentityState or None
        The latest earlier night's state; None on a first run.
    settings : IdentityConfig
        `identity:` settings: `hub_max_accounts` (an anonymous_id linked to more user_ids is a hub: cut, its
        anonymous events go nowhere), `email_max_accounts` / `email_max_devices` (an email_hash linked to
        more user_ids / anonymous_ids is an email hub and links nobody), `max_iterations` (connected-components
        rounds allowed).
    run_date : str
        The night, ISO date: stamps new persons and merges.
    days : iterable of str, optional
        The days `events` holds in full, when a day may have no events left (a re-delivery that emptied it):
        their earlier contributions are replaced too. Days present in `events` always are.

    Returns
    -------
    StitchResult
    """
    spark = events.sparkSession
    prior = prior_state or IdentityState.empty(spark)
    hub_max_accounts, email_max_accounts = settings.hub_max_accounts, settings.email_max_accounts
    email_max_devices, max_iterations = settings.email_max_devices, settings.max_iterations
    night = F.to_date(F.lit(run_date))

    triples = checkpoint(_id_triples(events, run_date))
    read_days = triples.select("dt").unionByName(
        spark.createDataFrame([(d,) for d in days or () if d <= run_date], "dt string")
        .select(F.to_date("dt").alias("dt"))).distinct()
    link_days = checkpoint(_replace_days(prior.link_days, _day_links(triples), read_days))
    links = checkpoint(links_of(link_days))
    seen = _seen_nodes(triples, links, prior.nodes)

    # Email hubs: emails with too many accounts or devices link nobody.
    emails = (links.where(F.col("dst").startswith("e:")).groupBy(F.col("dst").alias("node"))
              .agg(F.sum(F.col("src").startswith("u:").cast("long")).alias("email_accounts"),
                   F.sum(F.col("src").startswith("a:").cast("long")).alias("email_devices"))
              .withColumn("email_hub", (F.col("email_accounts") > email_max_accounts)
                          | (F.col("email_devices") > email_max_devices)))
    usable = links.join(emails.where("email_hub").select(F.col("node").alias("dst")), "dst", "left_anti")

    # The graph: user-email edges, plus one edge per anonymous_id to its home (first account seen with it).
    home = (usable.where(F.col("src").startswith("a:")).groupBy("src")
            .agg(F.min(F.struct("first_dt", "first_time", "dst")).alias("h"))
            .select("src", F.col("h.dst").alias("dst")))
    edges = usable.where(F.col("src").startswith("u:")).select("src", "dst").unionByName(home)
    components, iterations = connected_components(edges, max_iterations=max_iterations)
    comp = checkpoint(seen.join(components, "node", "left")
                       .withColumn("component", F.coalesce("component", "node")))

    # Per anonymous_id: its accounts (more than hub_max_accounts: a hub), the persons its links reach (two or
    # more: a shared device) and the most recently seen of them.
    anon_stats = (usable.where(F.col("src").startswith("a:"))
                  .join(comp.select(F.col("node").alias("dst"), "component"), "dst")
                  .groupBy(F.col("src").alias("node"))
                  .agg(F.sum(F.col("dst").startswith("u:").cast("long")).alias("accounts"),
                       F.countDistinct("component").alias("reached"),
                       F.max_by("component", F.struct("last_time", "dst")).alias("recent_component")))

    # Person ids: a component keeps the prior live persons whose anchor it holds; the earliest anchor survives.
    members = comp.where(F.col("node").startswith("a:") | F.col("node").startswith("u:"))
    held = (prior.persons.where(F.col("status") == "live")
            .join(comp.select(F.col("node").alias("anchor"), "component"), "anchor"))
    survivors = (held.groupBy("component")
                 .agg(F.min(F.struct("anchor_first_dt", "anchor_first_time", "anchor", "person_id", "created_dt"))
                      .alias("s"))
                 .select("component", F.col("s.person_id").alias("survivor"), F.col("s.anchor").alias("s_anchor"),
                         F.col("s.anchor_first_dt").alias("s_first_dt"),
                         F.col("s.anchor_first_time").alias("s_first_time"),
                         F.col("s.created_dt").alias("s_created_dt")))
    merges_tonight = (held.join(survivors, "component").where(F.col("person_id") != F.col("survivor"))
                      .select(F.col("person_id").alias("merged_person_id"), F.col("survivor").alias("person_id"),
                              night.alias("dt")))
    candidates = (members.groupBy("component")
                  .agg(F.min(F.struct("first_dt", "first_time", "node")).alias("a"),
                       F.count(F.lit(1)).alias("members")))
    live = checkpoint(
        candidates.join(survivors, "component", "left")
        .select("component",
                F.coalesce("survivor", _person_id_of_node(F.col("a.node"))).alias("person_id"),
                F.coalesce("s_anchor", "a.node").alias("anchor"),
                F.when(F.col("survivor").isNotNull(), F.col("s_first_dt")).otherwise(F.col("a.first_dt"))
                .alias("anchor_first_dt"),
                F.when(F.col("survivor").isNotNull(), F.col("s_first_time")).otherwise(F.col("a.first_time"))
                .alias("anchor_first_time"),
                F.coalesce("s_created_dt", night).alias("created_dt"), "members"))

    # Nodes with role, component person and the person the identity map publishes.
    comp_person = live.select("component", "person_id")
    recent_person = comp_person.select(F.col("component").alias("recent_component"),
                                       F.col("person_id").alias("recent_person_id"))
    hub_limit = F.lit(hub_max_accounts)
    nodes = (comp.join(comp_person, "component", "left")
             .join(anon_stats, "node", "left")
             .join(emails, "node", "left")
             .join(recent_person, "recent_component", "left"))
    is_anon, is_user = F.col("node").startswith("a:"), F.col("node").startswith("u:")
    role = (F.when(is_user, ROLE_ACCOUNT)
            .when(F.col("node").startswith("e:"), F.when(F.col("email_hub"), ROLE_EMAIL_HUB).otherwise(ROLE_EMAIL))
            .when(F.coalesce(F.col("accounts"), F.lit(0)) > hub_limit, ROLE_HUB)
            .when(F.coalesce(F.col("reached"), F.lit(0)) >= 2, ROLE_SHARED)
            .when(F.coalesce(F.col("reached"), F.lit(0)) == 1, ROLE_LINKED)
            .otherwise(ROLE_ANONYMOUS))
    nodes = (nodes.withColumn("role", role)
             .select("node", _id_type(F.col("node")).alias("id_type"), F.substring("node", 3, 1 << 30).alias("id"),
                     "first_dt", "first_time", "last_time", "role",
                     F.when(is_anon, F.coalesce("accounts", F.lit(0)))
                     .when(~is_user, F.coalesce("email_accounts", F.lit(0))).cast("long").alias("accounts"),
                     "person_id",
                     F.when(is_user, F.col("person_id"))
                     .when(F.col("role").isin(ROLE_LINKED, ROLE_ANONYMOUS), F.col("person_id"))
                     .when(F.col("role") == ROLE_SHARED, F.col("recent_person_id")).alias("map_person_id")))
    nodes = checkpoint(nodes)

    # Persons: tonight's live ones, then every earlier one that is not live any more (merged tonight or before).
    anchor_now = nodes.select(F.col("node").alias("anchor"), F.col("person_id").alias("merged_into"))
    live_rows = live.select("person_id", "anchor", "anchor_first_dt", "anchor_first_time", "created_dt",
                            F.lit("live").alias("status"), "members", F.lit(None).cast("string").alias("merged_into"),
                            F.lit(None).cast("date").alias("merged_dt"))
    gone = (prior.persons.join(live.select("person_id"), "person_id", "left_anti")
            .join(merges_tonight.select(F.col("merged_person_id").alias("person_id"),
                                        F.col("dt").alias("tonight")), "person_id", "left")
            .drop("merged_into").join(anchor_now, "anchor", "left")
            .select("person_id", "anchor", "anchor_first_dt", "anchor_first_time", "created_dt",
                    F.lit("merged").alias("status"), "members", "merged_into",
                    F.coalesce("merged_dt", "tonight").alias("merged_dt")))
    persons = checkpoint(live_rows.unionByName(gone))
    merges_all = prior.merges.unionByName(merges_tonight)

    state = IdentityState(nodes=nodes, links=links, persons=persons, merges=merges_all, link_days=link_days)
    stats = _stats(state, run_date=run_date, iterations=iterations)
    return StitchResult(identity_map=identity_map(nodes), state=state, merges=merges_tonight, stats=stats)


def identity_map(nodes: DataFrame) -> DataFrame:
    """The contract identity map (id_type, id, person_id) of the state's nodes: every user_id and anonymous_id
    that publishes a person (`map_person_id`; hubs and email_hashes do not)."""
    return (nodes.where(F.col("id_type").isin("user_id", "anonymous_id") & F.col("map_person_id").isNotNull())
            .select("id_type", "id", F.col("map_person_id").alias("person_id")))


def _stats(state: IdentityState, *, run_date: str, iterations: int) -> dict:
    roles = {r["role"]: r["count"] for r in state.nodes.groupBy("role").count().collect()}  # <= 7 rows
    live, night = F.col("status") == "live", F.to_date(F.lit(run_date))
    count_if = lambda cond: F.sum(F.when(cond, 1).otherwise(0))
    p = state.persons.agg(
        count_if(live).alias("persons"),
        count_if(live & (F.col("created_dt") == night)).alias("new_persons"),
        count_if(live & (F.col("members") > 1)).alias("multi_id_persons"),
        count_if(~live & (F.col("merged_dt") == night)).alias("merges"),   # == rows of tonight's merges
    ).first()
    return {
        "persons": int(p["persons"] or 0),
        "new_persons": int(p["new_persons"] or 0),
        "persons_with_several_ids": int(p["multi_id_persons"] or 0),
        "merges": int(p["merges"] or 0),
        "user_ids": roles.get(ROLE_ACCOUNT, 0),
        "anonymous_ids": sum(roles.get(r, 0) for r in (ROLE_ANONYMOUS, ROLE_LINKED, ROLE_SHARED, ROLE_HUB)),
        "linked_anonymous_ids": roles.get(ROLE_LINKED, 0),
        "shared_devices": roles.get(ROLE_SHARED, 0),
        "hubs": roles.get(ROLE_HUB, 0),
        "email_hubs": roles.get(ROLE_EMAIL_HUB, 0),
        "cc_iterations": iterations,
    }


