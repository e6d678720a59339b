"""Stage 2: identity stitching. The cookies, app installs and accounts of one person become one `person_id`.

The identity graph
------------------
Nodes are user_ids, anonymous_ids (cookies, app installs) and email_hashes. Links come from the events:
anonymous_id-user_id (a login or any event carrying both), anonymous_id-email_hash and user_id-email_hash
(the `email_hash` sent with a login). Every link keeps the day and time it was first seen and the time it
was last seen; links and nodes accumulate from night to night in the identity state.

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

Which person an event goes to (`attribute_events`)
--------------------------------------------------
1. An event with a user_id goes to that user's person, on any device, hubs included.
2. An anonymous event (no user_id) on a device of one person goes to that person; a device never seen
   with an account is a person of its own (an anonymous person).
3. An anonymous event on a shared device goes to the account of the same session_id if that session has
   an event with a user_id (the next one in the session, else the last one before it); else to the next
   account seen on that device after the event (any event with a user_id, by time); else to no person.
4. An anonymous event on a hub goes to no person.

"No person" is a null `person_id`; ids unknown to the state also get null.

What the identity map says (contract `identity/dt=D/`)
-----------------------------------------------------
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

Incremental state
-----------------
`state/identity/dt=D/` holds `nodes/`, `links/`, `persons/`, `merges/` (cumulative) and `days.json` (the
validated days it has consumed). Night D starts from the latest earlier state and adds every validated day
<= D that the state has not consumed: the days after it, and a late partition validated since. With no
earlier state it reads every validated day <= D. Days after D are never read.
"""
from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import time
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.storage import io
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)

# Internal node keys: one-letter type prefix + id. Sorting them puts anonymous ids before email hashes
# before user ids, which is the documented tie-break for anchors.
PREFIX = {"anonymous_id": "a:", "email_hash": "e:", "user_id": "u:"}
ID_TYPE_OF_PREFIX = {v: k for k, v in PREFIX.items()}

ROLE_ACCOUNT, ROLE_EMAIL, ROLE_EMAIL_HUB = "account", "email", "email_hub"
ROLE_ANONYMOUS, ROLE_LINKED, ROLE_SHARED, ROLE_HUB = "anonymous", "linked", "shared", "hub"

NODES_DDL = ("node string, id_type string, id string, first_dt date, first_time timestamp, "
             "last_time timestamp, role string, accounts long, person_id string, map_person_id string")
LINKS_DDL = "src string, dst string, first_dt date, first_time timestamp, last_time timestamp, events long"
PERSONS_DDL = ("person_id string, anchor string, anchor_first_dt date, anchor_first_time timestamp, "
               "created_dt date, status string, members long, merged_into string, merged_dt date")
MERGES_DDL = "merged_person_id string, person_id string, dt date"

EVENT_COLUMNS = ("anonymous_id", "user_id", "email_hash", "event_time")
ATTRIBUTION_COLUMNS = ("anonymous_id", "user_id", "session_id", "event_time")
STATE_TABLES = ("nodes", "links", "persons", "merges")


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
        return cls(*(spark.createDataFrame([], ddl) for ddl in (NODES_DDL, LINKS_DDL, PERSONS_DDL, MERGES_DDL)))


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


def _checkpoint(df: DataFrame) -> DataFrame:
    """Cuts the lineage (iterative plans otherwise grow each round) and keeps the small result in memory."""
    return df.localCheckpoint(eager=True)


def _require(df: DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {df.columns}")


# ----------------------------------------------------------------------------------- connected components

def _large_star(edges: DataFrame) -> DataFrame:
    """Each node links its larger neighbours to the smallest node of its neighbourhood (itself included)."""
    both = (edges.select(F.col("hi").alias("u"), F.col("lo").alias("v"))
            .unionByName(edges.select(F.col("lo").alias("u"), F.col("hi").alias("v"))))
    smallest = F.least(F.col("u"), F.min("v").over(Window.partitionBy("u")))
    return (both.withColumn("m", smallest).where(F.col("v") > F.col("u"))
            .select(F.col("v").alias("hi"), F.col("m").alias("lo")).distinct())


def _small_star(edges: DataFrame) -> DataFrame:
    """Each node links itself and its smaller neighbours to the smallest of them."""
    with_min = edges.withColumn("m", F.min("lo").over(Window.partitionBy("hi")))
    return (with_min.select(F.col("lo").alias("hi"), F.col("m").alias("lo")).where(F.col("hi") != F.col("lo"))
            .unionByName(with_min.select("hi", F.col("m").alias("lo"))).distinct())


def _is_star_forest(edges: DataFrame) -> bool:
    """True when every edge joins a leaf to its component's smallest node: no centre is also a leaf, and no
    leaf hangs from two centres. One job, one shuffle."""
    ends = (edges.select(F.col("hi").alias("n"), F.lit(1).alias("as_leaf"), F.lit(0).alias("as_centre"))
            .unionByName(edges.select(F.col("lo").alias("n"), F.lit(0).alias("as_leaf"), F.lit(1).alias("as_centre"))))
    bad = (ends.groupBy("n").agg(F.sum("as_leaf").alias("leaf"), F.max("as_centre").alias("centre"))
           .where((F.col("leaf") > 1) | ((F.col("leaf") > 0) & (F.col("centre") > 0))))
    return bad.limit(1).count() == 0


def connected_components(edges: DataFrame, *, max_iterations: int) -> tuple[DataFrame, int]:
    """Connected components of an undirected graph, by alternating large-star and small-star rounds.

    Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014): O(log^2 n) rounds, each a
    couple of shuffles over the edges; nothing is collected on the driver but one count per check.

    Parameters
    ----------
    edges : DataFrame
        Columns `src`, `dst` (strings); direction, duplicates and self-loops are ignored.
    max_iterations : int
        Rounds allowed before giving up.

    Returns
    -------
    (DataFrame, int)
        (`node`, `component`) for every node on an edge, the component being its smallest node key, and
        the number of rounds used. Nodes without edges are not listed (each is its own component).

    Raises
    ------
    RuntimeError
        When the rounds run out before the components settle.
    """
    current = _checkpoint(edges.select(F.greatest("src", "dst").alias("hi"), F.least("src", "dst").alias("lo"))
                          .where(F.col("hi") != F.col("lo")).distinct())
    for iteration in range(1, max_iterations + 1):
        current = _checkpoint(_small_star(_large_star(current)))
        if _is_star_forest(current):
            centres = current.select(F.col("lo").alias("node"), F.col("lo").alias("component")).distinct()
            return current.select(F.col("hi").alias("node"), F.col("lo").alias("component")).unionByName(centres), \
                iteration
        log.debug("connected components: round %d not settled", iteration)
    raise RuntimeError(f"identity graph: connected components did not settle in {max_iterations} rounds "
                       f"(identity.max_iterations); raise it or look for an unexpectedly long chain of links")


# ------------------------------------------------------------------------------------------- the core

def _id_triples(events: DataFrame, run_date: str) -> DataFrame:
    """The one pass over the events: (anonymous_id, user_id, email_hash) with first (dt, event_time), last
    event_time and count. Everything else is derived from this much smaller table. Days after `run_date`
    are ignored."""
    _require(events, EVENT_COLUMNS, "events")
    day = F.to_date(F.col("dt")) if "dt" in events.columns else F.to_date(F.col("event_time"))
    blank_is_null = lambda c: F.when(F.length(F.trim(F.col(c))) > 0, F.col(c)).alias(c)
    return (events.where(F.col("anonymous_id").isNotNull() & F.col("event_time").isNotNull()
                         & (day <= F.to_date(F.lit(run_date))))
            .select(blank_is_null("anonymous_id"), blank_is_null("user_id"), blank_is_null("email_hash"),
                    day.alias("dt"), "event_time")
            .groupBy("anonymous_id", "user_id", "email_hash")
            .agg(F.min(F.struct(F.col("dt").alias("first_dt"), F.col("event_time").alias("first_time"))).alias("f"),
                 F.max("event_time").alias("last_time"), F.count(F.lit(1)).alias("events"))
            .where(F.col("anonymous_id").isNotNull())
            .select("anonymous_id", "user_id", "email_hash", "f.first_dt", "f.first_time", "last_time", "events"))


def _new_links(triples: DataFrame) -> DataFrame:
    """Links seen in these events, aggregated per (src, dst)."""
    a, u, e = _key("a:", "anonymous_id"), _key("u:", "user_id"), _key("e:", "email_hash")
    pairs = F.array(F.struct(a.alias("src"), u.alias("dst")), F.struct(a.alias("src"), e.alias("dst")),
                    F.struct(u.alias("src"), e.alias("dst")))
    return (triples.where(F.col("user_id").isNotNull() | F.col("email_hash").isNotNull())
            .select(F.explode(pairs).alias("p"), "first_dt", "first_time", "last_time", "events")
            .where(F.col("p.src").isNotNull() & F.col("p.dst").isNotNull())
            .select("p.src", "p.dst", "first_dt", "first_time", "last_time", "events"))


def _merge_links(prior: DataFrame, new: DataFrame) -> DataFrame:
    return (prior.select(*new.columns).unionByName(new).groupBy("src", "dst")
            .agg(F.min(F.struct("first_dt", "first_time")).alias("f"), F.max("last_time").alias("last_time"),
                 F.sum("events").alias("events"))
            .select("src", "dst", "f.first_dt", "f.first_time", "last_time", "events"))


def _seen_nodes(triples: DataFrame, links: DataFrame, prior_nodes: DataFrame) -> DataFrame:
    """node, first_dt, first_time, last_time for every node, prior and new."""
    anonymous = triples.select(F.concat(F.lit("a:"), F.col("anonymous_id")).alias("node"), "first_dt", "first_time",
                               "last_time")
    # Every user_id and email_hash arrives on an event with an anonymous_id: its a-links say when.
    accounts = (links.where(F.col("src").startswith("a:"))
                .select(F.col("dst").alias("node"), "first_dt", "first_time", "last_time"))
    return (prior_nodes.select("node", "first_dt", "first_time", "last_time")
            .unionByName(anonymous).unionByName(accounts)
            .groupBy("node")
            .agg(F.min(F.struct("first_dt", "first_time")).alias("f"), F.max("last_time").alias("last_time"))
            .select("node", "f.first_dt", "f.first_time", "last_time"))


def stitch(events: DataFrame, prior_state: IdentityState | None, *, hub_max_accounts: int, max_iterations: int,
           run_date: str, email_max_accounts: int = 5, email_max_devices: int = 100) -> StitchResult:
    """One night of identity stitching: prior state + new events -> new state and identity map.

    Pure apart from Spark actions (counts, local checkpoints): reads and writes nothing.

    Parameters
    ----------
    events : DataFrame
        The new validated events (at least anonymous_id, user_id, email_hash, event_time; other columns are
        ignored). An optional `dt` column (the partition day) orders first sightings; without it the UTC day
        of event_time is used. Rows of days after `run_date` are ignored.
    prior_state : IdentityState or None
        The latest earlier night's state; None on a first run.
    hub_max_accounts : int
        An anonymous_id linked to more user_ids than this is a hub: cut, its anonymous events go nowhere.
    max_iterations : int
        Connected-components rounds allowed.
    run_date : str
        The night, ISO date: stamps new persons and merges.
    email_max_accounts, email_max_devices : int
        An email_hash linked to more user_ids / anonymous_ids than this is an email hub and links nobody.

    Returns
    -------
    StitchResult
    """
    spark = events.sparkSession
    prior = prior_state or IdentityState.empty(spark)
    night = F.to_date(F.lit(run_date))

    triples = _checkpoint(_id_triples(events, run_date))
    links = _checkpoint(_merge_links(prior.links, _new_links(triples)))
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
    comp = _checkpoint(seen.join(components, "node", "left")
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
    live = _checkpoint(
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
    nodes = _checkpoint(nodes)

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
    persons = _checkpoint(live_rows.unionByName(gone))
    merges_all = prior.merges.unionByName(merges_tonight)

    state = IdentityState(nodes=nodes, links=links, persons=persons, merges=merges_all)
    identity_map = (nodes.where(F.col("id_type").isin("user_id", "anonymous_id") & F.col("map_person_id").isNotNull())
                    .select("id_type", "id", F.col("map_person_id").alias("person_id")))
    stats = _stats(state, run_date=run_date, iterations=iterations)
    return StitchResult(identity_map=identity_map, state=state, merges=merges_tonight, stats=stats)


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


# ------------------------------------------------------------------------------------------ attribution

def attribute_events(events: DataFrame, state: DataFrame) -> DataFrame:
    """Adds `person_id` to each event by the rule in this module's docstring (null: no person).

    Parameters
    ----------
    events : DataFrame
        Validated events with at least anonymous_id, user_id, session_id, event_time. Pass every event of
        the period (not only item events): the logins and signed-in events on shared devices are what
        places the anonymous events around them.
    state : DataFrame
        The identity state's nodes (`load_state`, or `StitchResult.state.nodes`).

    Returns
    -------
    DataFrame
        `events`' columns (an existing person_id is replaced) plus `person_id`.
    """
    _require(events, ATTRIBUTION_COLUMNS, "events")
    _require(state, ("node", "role", "person_id"), "identity state")
    base = events.drop("person_id") if "person_id" in events.columns else events
    out_cols = base.columns
    shared = F.broadcast(state.where(F.col("role") == ROLE_SHARED)
                         .select(F.substring("node", 3, 1 << 30).alias("anonymous_id"), F.lit(True).alias("_shared")))
    flagged = base.join(shared, "anonymous_id", "left")
    user = F.when(F.length(F.trim(F.col("user_id"))) > 0, F.col("user_id"))

    plain = (flagged.where(F.col("_shared").isNull())
             .withColumn("_key", F.when(user.isNotNull(), F.concat(F.lit("u:"), user))
                         .otherwise(F.concat(F.lit("a:"), F.col("anonymous_id")))))

    # Shared devices: the session's account (next in it, else last before), else the device's next account.
    # User-bearing rows sort first among rows of the same time, so a login at the same second counts as next.
    order = [F.col("event_time").asc(), F.col("_user").asc_nulls_last()]
    on_device = Window.partitionBy("anonymous_id").orderBy(*order)
    in_session = Window.partitionBy("anonymous_id", "session_id").orderBy(*order)
    after = Window.unboundedFollowing
    shared_rows = flagged.where(F.col("_shared")).withColumn("_user", user)
    session_user = F.when(F.col("session_id").isNotNull(), F.coalesce(
        F.first("_user", ignorenulls=True).over(in_session.rowsBetween(Window.currentRow, after)),
        F.last("_user", ignorenulls=True).over(in_session.rowsBetween(Window.unboundedPreceding, Window.currentRow))))
    device_next = F.first("_user", ignorenulls=True).over(on_device.rowsBetween(Window.currentRow, after))
    resolved = F.coalesce(F.col("_user"), session_user, device_next)
    shared_rows = (shared_rows.withColumn("_key", F.when(resolved.isNotNull(), F.concat(F.lit("u:"), resolved)))
                   .drop("_user"))

    # Hubs' and shared devices' own keys publish no person here: their anonymous events go nowhere unless
    # the shared-device rule found an account above.
    lookup = state.select(F.col("node").alias("_key"),
                          F.when(F.col("role").isin(ROLE_HUB, ROLE_SHARED), F.lit(None).cast("string"))
                          .otherwise(F.col("person_id")).alias("person_id"))
    return (plain.unionByName(shared_rows).join(lookup, "_key", "left")
            .select(*out_cols, "person_id"))


# ------------------------------------------------------------------------------------------- evaluation

def evaluate_stitching(identity_map_pdf, truth_pdf, *, exclude_anonymous_ids=()) -> dict:
    """Pairwise precision/recall of "these two ids are the same person" against ground truth.

    Counts pairs from the contingency table (n * (n - 1) / 2 per cell), never enumerating them.

    Parameters
    ----------
    identity_map_pdf : pandas.DataFrame
        id_type, id, person_id (the identity map).
    truth_pdf : pandas.DataFrame
        id_type, id, person (the generator's `truth/identities`).
    exclude_anonymous_ids : iterable of str
        anonymous_ids left out on both sides (shared devices, kiosks: they have no single true person).

    Returns
    -------
    dict
        precision and recall in [0, 1] (1.0 when there is no pair to judge), persons_found, true_persons,
        persons_ratio (found / true; 1.0 is perfect, above 1 means split persons), ids_evaluated and
        ids_missing (truth ids absent from the map: each counts as a person of its own).
    """
    import pandas as pd

    for name, pdf, cols in (("identity map", identity_map_pdf, ("id_type", "id", "person_id")),
                            ("truth", truth_pdf, ("id_type", "id", "person"))):
        missing = [c for c in cols if c not in pdf.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing}; it has {list(pdf.columns)}")
    excluded = set(exclude_anonymous_ids)
    truth = truth_pdf[["id_type", "id", "person"]]
    truth = truth[~((truth["id_type"] == "anonymous_id") & truth["id"].isin(excluded))]
    merged = truth.merge(identity_map_pdf[["id_type", "id", "person_id"]], on=["id_type", "id"], how="left")
    ids_missing = int(merged["person_id"].isna().sum())
    # An id the map does not know is, for the storefront, a person of its own.
    merged["person_id"] = merged["person_id"].astype(object).where(
        merged["person_id"].notna(), "missing:" + merged["id_type"].astype(str) + ":" + merged["id"].astype(str))

    def pairs(sizes: pd.Series) -> int:
        n = sizes.to_numpy(dtype="int64")
        return int((n * (n - 1) // 2).sum())

    together = pairs(merged.groupby(["person_id", "person"]).size())
    predicted = pairs(merged.groupby("person_id").size())
    true_pairs = pairs(merged.groupby("person").size())
    found, true_persons = merged["person_id"].nunique(), merged["person"].nunique()
    return {"precision": together / predicted if predicted else 1.0,
            "recall": together / true_pairs if true_pairs else 1.0,
            "persons_found": int(found), "true_persons": int(true_persons),
            "persons_ratio": found / true_persons if true_persons else 1.0,
            "ids_evaluated": len(merged), "ids_missing": ids_missing}


# -------------------------------------------------------------------------------------------------- I/O

_DT = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


def _partition_days(folder: str) -> list[str]:
    """ISO days of the complete `dt=YYYY-MM-DD` sub-folders of `folder` (hidden temporaries skipped)."""
    fs, p = io.fs_for(folder)
    if not fs.exists(p):
        return []
    days = []
    for entry in fs.ls(p, detail=False):
        m = _DT.match(posixpath.basename(entry.rstrip("/")))
        if m and fs.isdir(entry):
            days.append(m.group(1))
    return sorted(days)


def _state_root(layout: Layout) -> str:
    return posixpath.dirname(layout.identity_state("1970-01-01").rstrip("/"))


def read_state(spark: SparkSession, path: str) -> IdentityState:
    """Reads a persisted state folder (`Layout.identity_state(ds)`)."""
    ddls = dict(zip(STATE_TABLES, (NODES_DDL, LINKS_DDL, PERSONS_DDL, MERGES_DDL)))
    missing = [t for t in STATE_TABLES if not io.exists(f"{path}/{t}")]
    if missing:
        raise FileNotFoundError(f"identity state at {path} is incomplete: no {missing}")
    return IdentityState(*(spark.read.schema(ddls[t]).parquet(f"{path}/{t}") for t in STATE_TABLES))


def write_state(state: IdentityState, path: str, *, days: list[str], partitions: int) -> str:
    """Writes all state tables and `days.json` into `path` at once (the folder is replaced whole)."""
    with io.atomic_dir(path) as tmp:
        state.nodes.repartition(partitions, "node").write.parquet(f"{tmp}/nodes")
        state.links.repartition(partitions, "src").write.parquet(f"{tmp}/links")
        state.persons.coalesce(partitions).write.parquet(f"{tmp}/persons")
        state.merges.coalesce(1).write.parquet(f"{tmp}/merges")
        io.write_json(f"{tmp}/days.json", sorted(days))
    return path


def load_state(spark: SparkSession, cfg, run_date: str) -> DataFrame:
    """The identity state's nodes for `run_date`, the `state` argument of `attribute_events`.

    Raises
    ------
    FileNotFoundError
        When the stitch stage has not written that night's state.
    """
    path = Layout(cfg.data_root).identity_state(run_date)
    if not io.exists(f"{path}/nodes"):
        raise FileNotFoundError(f"no identity state for {run_date} at {path}: run the stitch stage for that date first")
    return spark.read.schema(NODES_DDL).parquet(f"{path}/nodes")


def read_events_with_day(spark: SparkSession, layout: Layout, days: list[str], columns: list[str]) -> DataFrame:
    """Validated events of `days` (selected columns) with `dt`, the partition day (a date).

    Read with `basePath` so that Spark takes `dt` from the folder names: free, unlike parsing each row's
    file path.
    """
    from schemas import load

    paths = [layout.validated("events", d) for d in days]
    missing = [p for p in paths if not io.exists(p)]
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"no validated events at {missing[0]}{more}")
    df = (spark.read.option("basePath", layout.validated("events")).schema(load("events").spark())
          .parquet(*paths))
    return df.select(*columns, F.to_date(F.col("dt")).alias("dt"))


def run(spark: SparkSession, cfg, run_date: str) -> dict:
    """Stitches night `run_date`: latest earlier state + unconsumed validated days <= run_date.

    Writes `state/identity/dt=D/` and the contract identity map `identity/dt=D/`. Returns a summary for the
    run report: persons, new_persons, merges, hubs (count and a few examples), shared_devices,
    events and share_attributed (of the events read tonight), days_read, prior_state, seconds.
    """
    started = time.time()
    layout = Layout(cfg.data_root)
    earlier = [d for d in _partition_days(_state_root(layout)) if d < run_date]
    prior_day = earlier[-1] if earlier else None
    prior = read_state(spark, layout.identity_state(prior_day)) if prior_day else None
    consumed = set(io.read_json(f"{layout.identity_state(prior_day)}/days.json", default=[])) if prior_day else set()
    validated = [d for d in _partition_days(layout.validated("events")) if d <= run_date]
    days = [d for d in validated if d not in consumed]
    if prior is None and not days:
        raise FileNotFoundError(f"identity stitching for {run_date}: no earlier state under {_state_root(layout)} and "
                                f"no validated events on or before {run_date} under {layout.validated('events')}")
    columns = ["anonymous_id", "user_id", "email_hash", "event_time", "session_id"]
    if days:
        events = read_events_with_day(spark, layout, days, columns)
    else:
        from schemas import load

        events = (spark.createDataFrame([], load("events").spark())
                  .select(*columns, F.lit(None).cast("date").alias("dt")))
    log.info("stitch %s: prior state %s, %d new day(s)", run_date, prior_day, len(days))

    ident = cfg.identity
    result = stitch(events, prior, hub_max_accounts=ident.hub_max_accounts, max_iterations=ident.max_iterations,
                    run_date=run_date, email_max_accounts=ident.email_max_accounts,
                    email_max_devices=ident.email_max_devices)
    state_path = write_state(result.state, layout.identity_state(run_date), days=sorted(consumed | set(days)),
                             partitions=cfg.spark.shuffle_partitions)
    nodes = spark.read.schema(NODES_DDL).parquet(f"{state_path}/nodes")
    identity_map = (nodes.where(F.col("id_type").isin("user_id", "anonymous_id") & F.col("map_person_id").isNotNull())
                    .select("id_type", "id", F.col("map_person_id").alias("person_id")))
    io.write_spark_parquet(identity_map.repartition(cfg.spark.shuffle_partitions, "id"), layout.identity(run_date))

    share = None
    if days:
        counted = attribute_events(events, nodes).agg(
            F.count(F.lit(1)).alias("events"), F.count("person_id").alias("attributed")).first()
        share = {"events": int(counted["events"]),
                 "share_attributed": round(counted["attributed"] / counted["events"], 4) if counted["events"] else None}
    hub_examples = [(r["id"], r["accounts"]) for r in
                    nodes.where(F.col("role") == ROLE_HUB).orderBy(F.desc("accounts"), "id").limit(5).collect()]
    return {"path": layout.identity(run_date), "state": state_path, "prior_state": prior_day, "days_read": len(days),
            **result.stats, "hub_examples": hub_examples,
            **(share or {"events": 0, "share_attributed": None}),
            "seconds": round(time.time() - started, 1)}
