"""Stage 2 of 9, stitch: identity stitching. The cookies, app installs and accounts of one person become one `person_id`.

Reads the latest earlier identity state and the validated days it has not consumed, stitches them
(`jobs.identity.graph.stitch`: the graph, its guards and stable ids are documented there), and writes the new
state `state/identity/dt=D/` and the contract identity map `identity/dt=D/`. Which days a night reads is
documented in `jobs.identity.state`.
"""
from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.config import RecsConfig
from jobs.identity.attribution import attribute_events
from jobs.identity.graph import ROLE_HUB, stitch
from jobs.identity.state import (days_to_read, latest_state_before, read_consumed_days, read_state,
                                 read_validated_events, state_root, write_state)
from jobs.storage import io
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)


def run(spark: SparkSession, cfg: RecsConfig, run_date: str) -> dict:
    """Stitches night `run_date`: latest earlier state + the validated days <= run_date it has not consumed or
    that were validated again since it consumed them (late partitions; rule in `jobs.identity.state`).

    Writes `state/identity/dt=D/` and the contract identity map `identity/dt=D/`. Returns a summary for the
    run report: persons, new_persons, merges, hubs (count and a few examples), shared_devices,
    events and share_attributed (of the events read tonight), days_read, days_reread (the days read again),
    prior_state, seconds.
    """
    started = time.time()
    layout = Layout(cfg.data_root)
    prior_day = latest_state_before(layout, run_date)
    prior = read_state(spark, layout.identity_state(prior_day)) if prior_day else None
    consumed = read_consumed_days(layout.identity_state(prior_day)) if prior_day else {}
    to_read = days_to_read(layout, run_date, consumed)
    days, reread = sorted(to_read), sorted(d for d in to_read if d in consumed)
    if prior is None and not days:
        raise FileNotFoundError(f"identity stitching for {run_date}: no earlier state under {state_root(layout)} and "
                                f"no validated events on or before {run_date} under {layout.validated('events')}")
    events = read_validated_events(spark, layout, days)
    log.info("stitch %s: prior state %s, %d day(s) to read, of which %d read again (validated again since: %s)",
             run_date, prior_day, len(days), len(reread), reread)

    result = stitch(events, prior, cfg.identity, run_date=run_date, days=days)
    state_path = write_state(result.state, layout.identity_state(run_date), consumed={**consumed, **to_read},
                             partitions=cfg.spark.shuffle_partitions)
    io.write_spark_parquet(result.identity_map.repartition(cfg.spark.shuffle_partitions, "id"),
                           layout.identity(run_date))
    nodes = result.state.nodes
    hub_examples = [(r["id"], r["accounts"]) for r in
                    nodes.where(F.col("role") == ROLE_HUB).orderBy(F.desc("accounts"), "id").limit(5).collect()]
    return {"path": layout.identity(run_date), "state": state_path, "prior_state": prior_day, "days_read": len(days),
            "days_reread": reread, **result.stats, "hub_examples": hub_examples, **_attributed_share(events, nodes),
            "seconds": round(time.time() - started, 1)}


def _attributed_share(events: DataFrame, nodes: DataFrame) -> dict:
    """events and share_attributed of the events read tonight (share None when there are none)."""
    counted = attribute_events(events, nodes).agg(
        F.count(F.lit(1)).alias("events"), F.count("person_id").alias("attributed")).first()
    n = int(counted["events"])
    return {"events": n, "share_attributed": round(counted["attributed"] / n, 4) if n else None}
