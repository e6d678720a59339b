"""A tiny, hand-made shop whose answer is known, for the gate, holdout and tuning tests (not a test module).

The shop: 90 persons in 3 taste groups (person p is in group p % 3), 120 items (item i is in group i % 3).
Each person bought 6 items of their own group and then, in the holdout days, 2 more of it; within a group,
item popularity is skewed (1/rank). Segments (country, device_type) are independent of the groups. So a
learned model finds the group and beats popularity (NDCG@5 about 0.27 vs 0.07), while random factors
(ALS with 0 iterations keeps implicit's random init) do worse than popularity (about 0.02).
"""
import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa

from jobs.decay import HALF_LIFE_GRID_DAYS
from jobs.storage import io
from jobs.storage.datasets import Datasets
from jobs.storage.layout import Layout

RUN_DATE = "2026-03-10"
PREVIOUS_DATE = "2026-03-09"
CUTOFF = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)  # start of D - 7 + 1 with holdout_days 7
UNAVAILABLE = "i118"


def shop_rows(n_persons=90, n_items=120, groups=3, per_person=6, seed=5):
    rng = np.random.default_rng(seed)
    train_rows, test_rows = [], []
    for p in range(n_persons):
        own = [i for i in range(n_items) if i % groups == p % groups]
        weights = 1.0 / (np.arange(len(own)) + 1.0)
        picked = rng.choice(own, size=per_person + 2, replace=False, p=weights / weights.sum())
        for i in picked[:per_person]:
            days_before = int(rng.integers(1, 60))
            # `weights`: the purchase's weight under each half-life of the grid, as the interactions stage writes
            weights = [10.0 * 0.5 ** (days_before / h) for h in HALF_LIFE_GRID_DAYS]
            train_rows.append((f"p{p:03d}", f"i{i:03d}", weights[HALF_LIFE_GRID_DAYS.index(30.0)], weights, True,
                               CUTOFF - dt.timedelta(days=days_before)))
        test_rows += [(f"p{p:03d}", f"i{i:03d}") for i in picked[per_person:]]
    return train_rows, test_rows, n_persons, n_items


def write_shop(cfg, *, spark=None, run_date=RUN_DATE, test=True):
    """Holdout (train, test), the night's interactions and model, catalog and persons for `run_date`."""
    layout = Layout(cfg.data_root)
    train_rows, test_rows, n_persons, n_items = shop_rows()
    if spark is not None:  # as the interactions stage writes it (Spark's timestamps and _SUCCESS files)
        from schemas import load

        io.write_spark_parquet(spark.createDataFrame(train_rows, load("interactions").spark()),
                               layout.holdout(run_date, "train"))
    else:
        io.write_arrow_parquet(pa.Table.from_pylist(
            [dict(zip(["person_id", "item_id", "weight", "weights", "purchased", "last_time"], r)) for r in train_rows],
            schema=_interactions_schema()), layout.holdout(run_date, "train"))
    if test:
        io.write_arrow_parquet(pa.table({"person_id": [r[0] for r in test_rows], "item_id": [r[1] for r in test_rows]}),
                               layout.holdout(run_date, "test"))
    else:  # an empty result as Spark may leave it: a folder with no data file
        with io.atomic_dir(layout.holdout(run_date, "test")) as tmp:
            fs, folder = io.fs_for(tmp)
            fs.makedirs(folder, exist_ok=True)
            fs.touch(f"{folder}/_SUCCESS")
    # the night's interactions = the holdout train here; enough for the train stage to write a model
    io.write_arrow_parquet(pa.Table.from_pylist(
        [dict(zip(["person_id", "item_id", "weight", "weights", "purchased", "last_time"], r)) for r in train_rows],
        schema=_interactions_schema()), layout.interactions(run_date))
    items = [f"i{i:03d}" for i in range(n_items)]
    io.write_arrow_parquet(pa.table({
        "item_id": items, "title": items, "category_path": [f"Home > Kitchen > C{i % 4}" for i in range(n_items)],
        "price": [1.0] * n_items, "is_available": [it != UNAVAILABLE for it in items]}),
        layout.validated("catalog", run_date))
    persons = [f"p{p:03d}" for p in range(n_persons)]
    countries = ["DE" if (p // 2) % 2 else "FR" for p in range(n_persons)]
    devices = [["ios", "android", None][(p // 3) % 3] for p in range(n_persons)]
    io.write_arrow_parquet(pa.table({"person_id": persons, "country": countries, "device_type": devices}),
                           layout.persons(run_date))
    write_events(cfg, train_rows, context=dict(zip(persons, zip(countries, devices))), run_date=run_date)
    from jobs.stages import train

    train.run(None, cfg, run_date)


def write_events(cfg, train_rows, *, context, run_date=RUN_DATE):
    """The validated purchase events behind the holdout train (one per train pair, the person's id as user_id),
    by day, and no flagged id: what the rank stage's popular fill is counted from."""
    from schemas import load

    layout, schema = Layout(cfg.data_root), load("events").arrow()
    by_day: dict[str, list[dict]] = {}
    for n, (person, item, *_, when) in enumerate(train_rows):
        country, device = context[person]
        by_day.setdefault(when.date().isoformat(), []).append({
            "event_id": f"e{n}", "event_time": when, "event_type": "purchase", "user_id": person, "item_id": item,
            "country": country, "device_type": device})
    for day, rows in by_day.items():
        io.write_arrow_parquet(pa.Table.from_pylist(rows, schema=schema), layout.validated("events", day))
    io.write_arrow_parquet(load("flagged_ids").arrow().empty_table(), layout.partition("flagged_ids", run_date))


def _interactions_schema():
    from schemas import load

    return load("interactions").arrow()


def gate_cfg(cfg, **gate_changes):
    """Test-sized ALS and a k the tiny shop can fill."""
    als = dataclasses.replace(cfg.als, factors=8, iterations=10, threads=1)
    changes = {"k": 5, "min_test_persons": 10, **gate_changes}
    return cfg.replace(als=als, gate=dataclasses.replace(cfg.gate, **changes))


def broken(cfg):
    """ALS that never iterates: implicit keeps its random initial factors."""
    return cfg.replace(als=dataclasses.replace(cfg.als, iterations=0))


def publish_previous(cfg, *, iterations=30, run_date=PREVIOUS_DATE):
    """A model published on an earlier night; the gate re-scores its recipe (its als settings) on tonight's
    holdout. `iterations=0` makes that recipe useless (random factors)."""
    path = Layout(cfg.data_root).model(run_date)
    io.write_json(f"{path}/model.json", {"model_version": f"als-{run_date}-prev", "run_date": run_date,
                                         "config": {"als": {"factors": 8, "iterations": iterations}}})
    return Datasets(cfg.data_root).models.mark_published(run_date)
