"""Which person an event goes to, given the identity state's nodes (`attribute_events`).

The rule
--------
1. An event with a user_id goes to that user's person, on any device, hubs included.
2. An anonymous event (no user_id) on a device of one person goes to that person; a device never seen
   with an account is a person of its own (an anonymous person).
3. An anonymous event on a shared device goes to the account of the same session_id if that session has
   an event with a user_id (the next one in the session, else the last one before it); else to the next
   account seen on that device after the event (any event with a user_id, by time); else to no person.
4. An anonymous event on a hub goes to no person.

"No person" is a null `person_id`; ids unknown to the state also get null.

Interactions (stage 3) calls it on every event of the training window; the stitch stage on the events it
read, for the share of attributed events in its report.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.identity.graph import ROLE_HUB, ROLE_SHARED, require_columns

ATTRIBUTION_COLUMNS = ("anonymous_id", "user_id", "session_id", "event_time")


def attribute_events(events: DataFrame, state_nodes: DataFrame) -> DataFrame:
    """Adds `person_id` to each event by the rule in this module's docstring (null: no person).

    Parameters
    ----------
    events : DataFrame
        Validated events with at least anonymous_id, user_id, session_id, event_time. Pass every event of
        the period (not only item events): the logins and signed-in events on shared devices are what
        places the anonymous events around them.
    state_nodes : DataFrame
        The identity state's nodes (`jobs.identity.state.load_state_nodes`, or `StitchResult.state.nodes`).

    Returns
    -------
    DataFrame
        `events`' columns (an existing person_id is replaced) plus `person_id`.
    """
    require_columns(events, ATTRIBUTION_COLUMNS, "events")
    require_columns(state_nodes, ("node", "role", "person_id"), "identity state")
    base = events.drop("person_id") if "person_id" in events.columns else events
    out_cols = base.columns
    shared = F.broadcast(state_nodes.where(F.col("role") == ROLE_SHARED)
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
    lookup = state_nodes.select(F.col("node").alias("_key"),
                          F.when(F.col("role").isin(ROLE_HUB, ROLE_SHARED), F.lit(None).cast("string"))
                          .otherwise(F.col("person_id")).alias("person_id"))
    return (plain.unionByName(shared_rows).join(lookup, "_key", "left")
            .select(*out_cols, "person_id"))

