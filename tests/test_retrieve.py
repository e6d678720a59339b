"""Stage 7, retrieve: the search inside Spark partitions against the driver-side search it replaced, the filters,
the saved index and its once-per-process cache, the nightly recall check."""
import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.exclusions import BOUGHT_RECENTLY, RETURNED, excluded_pairs, purchase_history
from jobs.models.als import Factors
from jobs.models.mf import MFModel
from jobs.stages import retrieve
from jobs.storage.datasets import Datasets
from schemas import load

pytestmark = pytest.mark.spark

RUN_DATE = "2026-03-10"
N_PERSONS, N_ITEMS, DIM = 300, 400, 8


def _catalog(n_items: int, unavailable: set[str]) -> pa.Table:
    schema = load("catalog").arrow()
    cols = {f.name: pa.nulls(n_items, f.type) for f in schema}
    ids = [f"i{j:04d}" for j in range(n_items)]
    cols["item_id"] = pa.array(ids, pa.string())
    cols["is_available"] = pa.array([i not in unavailable for i in ids])
    cols["category_path"] = pa.array(["A > B"] * n_items, pa.string())
    return pa.table(cols, schema=schema)


def _purchases(rows: list[tuple]) -> pa.Table:
    schema = load("purchases").arrow()
    return pa.table({"person_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                     "last_purchase_time": pa.array([r[2] for r in rows], schema.field("last_purchase_time").type),
                     "returned": [r[3] for r in rows]}, schema=schema)


def _interactions(items: np.ndarray, per_item: int) -> pa.Table:
    """`per_item` persons per item: enough history for every item to keep its learned vector (content.*)."""
    schema = load("interactions").arrow()
    n = len(items) * per_item
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols["person_id"] = pa.array([f"p{j % N_PERSONS:04d}" for j in range(n)], pa.string())
    cols["item_id"] = pa.array(np.repeat(items, per_item).tolist(), pa.string())
    cols["weight"] = pa.array(np.ones(n), pa.float64())
    cols["purchased"] = pa.array(np.zeros(n, bool))
    cols["last_time"] = pa.array(np.full(n, np.datetime64("2026-03-01", "us")), schema.field("last_time").type)
    return pa.table(cols, schema=schema)


@pytest.fixture
def night(cfg):
    """A trained model (random factors), a catalog with unavailable items and a purchase history with
    returned, recently bought and long-ago bought pairs."""
    rng = np.random.default_rng(7)
    persons = np.array([f"p{j:04d}" for j in range(N_PERSONS)], dtype=object)
    items = np.array([f"i{j:04d}" for j in range(N_ITEMS)], dtype=object)
    model = MFModel(Factors(persons, rng.normal(size=(N_PERSONS, DIM)).astype(np.float32)),
                    Factors(items, rng.normal(size=(N_ITEMS, DIM)).astype(np.float32)))
    data = Datasets(cfg.data_root)
    data.models.write(RUN_DATE, model.tables(), {"model_version": "als-test"})
    unavailable = {f"i{j:04d}" for j in range(0, N_ITEMS, 7)}
    data.validated_catalog.write_arrow(_catalog(N_ITEMS, unavailable), RUN_DATE)
    # each person's own best items, so the filters must act on what the search returns
    best = np.argsort(-(model.persons.vectors @ model.items.vectors.T), axis=1)
    recent = dt.datetime(2026, 3, 9, 12, tzinfo=dt.timezone.utc)
    long_ago = dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc)
    rows = []
    for r, person in enumerate(persons):
        top = [items[j] for j in best[r, :12]]
        rows += [(person, top[0], None, True), (person, top[1], recent, True),  # returned (once bought)
                 (person, top[2], recent, False), (person, top[3], recent, False),  # bought recently
                 (person, top[4], long_ago, False)]  # bought 99 days before D
    data.purchases.write_arrow(_purchases(rows), RUN_DATE)
    data.interactions.write_arrow(_interactions(items, per_item=5), RUN_DATE)  # every item keeps its learned vector
    return {"model": model, "data": data, "unavailable": unavailable, "purchases": pd.DataFrame(
        rows, columns=["person_id", "item_id", "last_purchase_time", "returned"])}


def _candidates(data) -> pd.DataFrame:
    return data.candidates.read_arrow(RUN_DATE).to_pandas()


def _driver_side(model: MFModel, catalog: pa.Table, excluded: pd.DataFrame, cfg) -> pd.DataFrame:
    """What the stage did before it ran in Spark: one process on the driver, `MFModel.recommend`."""
    available = catalog.filter(catalog.column("is_available")).column("item_id").to_numpy(zero_copy_only=False)
    recs = model.recommend(model.persons.ids, model.item_index(available),
                           exclude_persons=excluded["person_id"].to_numpy(object),
                           exclude_items=excluded["item_id"].to_numpy(object), n=cfg.candidates.n,
                           index_settings=cfg.candidates.index)
    return recs.to_pandas()


def _recall(got: pd.DataFrame, expected: pd.DataFrame) -> float:
    g = got.groupby("person_id").item_id.apply(set)
    e = expected.groupby("person_id").item_id.apply(set)
    return float(np.mean([len(g.get(p, set()) & items) / len(items) for p, items in e.items()]))


def test_spark_search_equals_the_driver_search_and_filters_every_list(spark, cfg, night):
    cfg = cfg.with_settings({"filters.bought_lookback_days": 30})
    summary = retrieve.run(spark, cfg, RUN_DATE)
    got = _candidates(night["data"])
    p = night["purchases"]
    excluded = p[p.returned | (p.last_purchase_time.notna()
                               & (p.last_purchase_time >= pd.Timestamp("2026-02-09", tz="UTC")))]
    expected = _driver_side(night["model"], night["data"].validated_catalog.read_arrow(RUN_DATE), excluded, cfg)
    assert _recall(got, expected) >= 0.99
    # every list full, none holding a returned, recently bought or unavailable item
    per = got.groupby("person_id").item_id.agg(["size", "nunique"])
    assert len(per) == N_PERSONS and (per["size"] == cfg.candidates.n).all() and (per["nunique"] == per["size"]).all()
    assert got.merge(excluded, on=["person_id", "item_id"]).empty
    assert not set(got.item_id) & night["unavailable"]
    # the long-ago purchase is each person's 5th best item: it stays (a 30-day lookback)
    long_ago = p[p.last_purchase_time.notna() & (p.last_purchase_time < pd.Timestamp("2026-01-01", tz="UTC"))]
    kept = got.merge(long_ago, on=["person_id", "item_id"])
    unavailable_long_ago = long_ago.item_id.isin(night["unavailable"]).sum()
    assert len(kept) == len(long_ago) - unavailable_long_ago
    # counted per run: every returned / recent pair whose item is indexed was among the person's top items
    f = summary["filters"]
    assert f[RETURNED]["excluded_pairs"] == 2 * N_PERSONS and f[BOUGHT_RECENTLY]["excluded_pairs"] == 2 * N_PERSONS
    indexed = ~excluded.item_id.isin(night["unavailable"])
    assert (f[RETURNED]["list_entries_removed"] + f[BOUGHT_RECENTLY]["list_entries_removed"]) == int(indexed.sum())
    assert f["unavailable"]["model_items_not_indexed"] == len(night["unavailable"])
    assert summary["persons_searched"] == N_PERSONS
    assert summary["index"]["recall_vs_exact"]["recall"] >= 0.99
    assert summary["index"]["plan"]["method"] == "exact"


def test_lookback_zero_lets_bought_items_come_back_but_never_returned_ones(spark, cfg, night):
    cfg = cfg.with_settings({"filters.bought_lookback_days": 0})
    summary = retrieve.run(spark, cfg, RUN_DATE)
    got = _candidates(night["data"])
    p = night["purchases"]
    bought_only = p[~p.returned & ~p.item_id.isin(night["unavailable"])]
    # bought items are each person's 3rd-5th best: with the lookback off they are in the lists again
    assert len(got.merge(bought_only, on=["person_id", "item_id"])) == len(bought_only)
    assert got.merge(p[p.returned], on=["person_id", "item_id"]).empty
    assert summary["filters"][BOUGHT_RECENTLY]["list_entries_removed"] == 0


def test_a_tree_index_is_saved_beside_the_model_and_keeps_recall(spark, cfg, night):
    cfg = cfg.with_settings({"candidates.index.method": "tree", "candidates.index.leaves": 20,
                             "candidates.index.leaves_to_search": 10, "candidates.index.reorder": 200})
    summary = retrieve.run(spark, cfg, RUN_DATE)
    index_dir = night["data"].models.index_path(RUN_DATE)
    assert summary["index"]["path"] == index_dir and summary["index"]["plan"]["method"] == "tree"
    saved = pq.read_table(f"{index_dir}/items.parquet")
    assert saved.num_rows == summary["indexed_items"] == N_ITEMS - len(night["unavailable"])
    got = _candidates(night["data"])
    p = night["purchases"]
    excluded = p[p.returned | p.last_purchase_time.notna()]
    exact_cfg = cfg.with_settings({"candidates.index.method": "exact"})
    expected = _driver_side(night["model"], night["data"].validated_catalog.read_arrow(RUN_DATE), excluded,
                            exact_cfg)
    assert _recall(got, expected) >= 0.9  # an approximate index on 8-dim random vectors: close, not equal
    assert got.merge(excluded, on=["person_id", "item_id"]).empty
    assert 0.9 <= summary["index"]["recall_vs_exact"]["recall"] < 1.0 + 1e-9


def test_the_saved_index_is_loaded_once_per_process(spark, cfg, night):
    from jobs.models import ann

    summary = retrieve.run(spark, cfg, RUN_DATE)
    index = summary["index"]
    persons = night["model"].persons
    batch = pa.record_batch({
        "person_id": pa.array(persons.ids[:10], pa.string()),
        "factors": pa.array([list(v) for v in persons.vectors[:10]], pa.list_(pa.float32())),
        "excluded_items": pa.array([None] * 10, pa.list_(pa.string())),
        "excluded_reasons": pa.array([None] * 10, pa.list_(pa.int32()))})
    before = ann.LOADS["count"]
    for _ in range(3):  # three tasks in one Python worker
        out = list(retrieve.search_partition(iter([batch, batch]), index_dir=index["path"], version=index["version"],
                                             n=5, batch_persons=4))
        assert sum(b.num_rows for b in out) == 2 * 10 * 5
    assert ann.LOADS["count"] - before <= 1


def test_gate_fallback_writes_no_candidates(spark, cfg, night):
    night["data"].write_report(RUN_DATE, "gate.json", {"verdict": "fallback",
                                                      "fallback": {"baseline": "popularity_global"}})
    summary = retrieve.run(spark, cfg, RUN_DATE)
    assert summary["candidates"] == 0 and _candidates(night["data"]).empty


def test_excluded_pairs_rule(spark):
    events = spark.createDataFrame([
        ("p1", "a", "purchase", dt.datetime(2026, 3, 10, 8)), ("p1", "a", "return", dt.datetime(2026, 3, 10, 9)),
        ("p1", "b", "purchase", dt.datetime(2026, 3, 4)), ("p1", "c", "purchase", dt.datetime(2026, 3, 3, 23)),
        ("p1", "d", "product_view", dt.datetime(2026, 3, 10)), ("p2", "a", "purchase", dt.datetime(2026, 3, 11))],
        "person_id string, item_id string, event_type string, event_time timestamp")
    history = purchase_history(events, run_date=RUN_DATE)
    assert {(r.item_id, r.returned) for r in history.collect()} == {("a", True), ("b", False), ("c", False)}
    got = {(r.item_id, r.reason) for r in excluded_pairs(history, run_date=RUN_DATE, bought_lookback_days=7,
                                                         exclude_returned=True).collect()}
    assert got == {("a", RETURNED), ("b", BOUGHT_RECENTLY)}  # c was bought 8 days before the end of D
    off = {(r.item_id, r.reason) for r in excluded_pairs(history, run_date=RUN_DATE, bought_lookback_days=0,
                                                         exclude_returned=False).collect()}
    assert off == set()
