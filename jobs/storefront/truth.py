"""The simulator's ground truth under `truth/storefront/`, one folder per table, partitioned by simulated day:

    exposures/dt=D   one row per list shown (a session's home page), with the true person and the expectations
    shown/dt=D       one row per shown item: its position, true utility, probabilities and what happened
    purchases/dt=D   every purchase of the day (rec or organic), with the true person and its return date
    planted/dt=D     the planted faults: persons whose exposure the storefront lost (SRM), persons shown both arms
    persons/dt=D     shoppers who arrived that day (`truth/persons` columns)
    identities/dt=D  their ids (`truth/identities` columns)
    summary/dt=D.json  the day's settings, live key-value version and counts

`arm_truth` turns them into the per-arm figures an A/B analysis is checked against.
"""
from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.shop.arrays import STRING
from jobs.shop.truth import TRUTH_SCHEMAS
from jobs.storage import io
from jobs.storage.layout import Layout

TIME = pa.timestamp("us", tz="UTC")
STOREFRONT_TRUTH_SCHEMAS: dict[str, pa.Schema] = {
    "exposures": pa.schema([
        ("exposure_id", STRING), ("event_time", TIME), ("person", STRING), ("user_id", STRING),
        ("anonymous_id", STRING), ("lookup_id", STRING), ("person_id", STRING), ("source", STRING),
        ("experiment_id", STRING), ("variant", STRING), ("kv_version", STRING), ("n_shown", pa.int32()),
        ("expected_clicks", pa.float64()), ("expected_purchases", pa.float64()), ("p_any_purchase", pa.float64()),
        ("expected_revenue", pa.float64()), ("planted", STRING)]),
    "shown": pa.schema([
        ("exposure_id", STRING), ("position", pa.int32()), ("item_id", STRING), ("true_utility", pa.float64()),
        ("price", pa.float64()), ("available", pa.bool_()), ("p_examine", pa.float64()), ("p_click", pa.float64()),
        ("p_cart", pa.float64()), ("p_purchase", pa.float64()), ("p_return", pa.float64()),
        ("expected_revenue", pa.float64()), ("clicked", pa.bool_()), ("carted", pa.bool_()),
        ("purchased", pa.bool_())]),
    "purchases": pa.schema([
        ("order_id", STRING), ("event_time", TIME), ("person", STRING), ("user_id", STRING),
        ("anonymous_id", STRING), ("item_id", STRING), ("quantity", pa.int32()), ("price", pa.float64()),
        ("exposure_id", STRING), ("return_date", pa.date32())]),
    "planted": pa.schema([("person", STRING), ("fault", STRING), ("variant", STRING), ("exposures", pa.int32())]),
    "persons": TRUTH_SCHEMAS["persons"],
    "identities": TRUTH_SCHEMAS["identities"],
}


def path(data_root: str, table: str, ds: str | None = None) -> str:
    base = Layout(data_root).truth(f"storefront/{table}")
    return base if ds is None else f"{base}/dt={ds}"


def summary_path(data_root: str, ds: str) -> str:
    return Layout(data_root).truth(f"storefront/summary/dt={ds}.json")


def read(data_root: str, table: str, days: list[str]) -> pa.Table:
    """The table over `days` (those simulated), one Arrow table."""
    schema = STOREFRONT_TRUTH_SCHEMAS[table]
    parts = [io.read_arrow_parquet(path(data_root, table, ds), schema=schema, what=f"truth/storefront/{table}")
             for ds in days if io.exists(path(data_root, table, ds))]
    return pa.concat_tables(parts) if parts else schema.empty_table()


def simulated_days(data_root: str) -> list[str]:
    return io.partition_dates(path(data_root, "exposures"))


def arm_truth(data_root: str, experiment_id: str, days: list[str] | None = None) -> dict[str, dict]:
    """Per arm of `experiment_id`, over the simulated `days` (all by default), by true person:

    - `exposed_persons`: persons with at least one exposure logged in the experiment (their first one counts
      them in its arm; persons seen in two arms are counted in `two_arm_persons` and left out of the rest);
    - `expected_revenue_per_person`: the truth's expected rec revenue (sum over their exposures in the arm);
    - `expected_rec_conversion`: the mean chance that their exposures led to at least one purchase;
    - `revenue_per_person`, `conversion`: what they actually bought (all purchases, rec or not) from their
      first exposure on, per exposed person, and the share who bought anything then.
    Organic shopping does not depend on the arm, so the true difference between arms is the difference of
    the expected figures; the realised ones carry the noise an analysis sees."""
    days = days if days is not None else simulated_days(data_root)
    ex = read(data_root, "exposures", days).filter(pc.equal(pc.field("experiment_id"), experiment_id)) \
        if days else STOREFRONT_TRUTH_SCHEMAS["exposures"].empty_table()
    ex = ex.to_pandas()
    buys = read(data_root, "purchases", days).to_pandas()
    if ex.empty:
        return {}
    arms_per_person = ex.groupby("person")["variant"].nunique()
    two_arm = set(arms_per_person[arms_per_person > 1].index)
    ex = ex[~ex.person.isin(two_arm)]
    first = ex.groupby("person")["event_time"].min().rename("first_exposure")
    per = ex.groupby(["variant", "person"]).agg(expected_revenue=("expected_revenue", "sum"),
                                                p_none=("p_any_purchase", lambda p: float(np.prod(1 - p))))
    per = per.reset_index().join(first, on="person")
    buys = buys.join(first, on="person", how="inner")
    buys = buys[buys.event_time >= buys.first_exposure]
    spent = (buys.price * buys.quantity).groupby(buys.person).sum()
    out = {}
    for arm, g in per.groupby("variant"):
        revenue = g.person.map(spent).fillna(0.0)
        out[arm] = {"exposed_persons": int(len(g)),
                    "expected_revenue_per_person": float(g.expected_revenue.mean()),
                    "expected_rec_conversion": float((1 - g.p_none).mean()),
                    "revenue_per_person": float(revenue.mean()), "conversion": float((revenue > 0).mean())}
    for arm in out.values():
        arm["two_arm_persons"] = len(two_arm)
    return out
