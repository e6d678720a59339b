"""Small hand-made nights for the publish tests (not a test module): one date's staged lists and what the
publish stage reads beside them (catalog, interactions, purchases, identity map, model.json), written with pyarrow as the
earlier stages would. Each night's lists name their date, so a test can tell which night a reader sees."""
import datetime as dt

import pyarrow as pa

from jobs.storage import io
from jobs.storage.datasets import Datasets
from schemas import load

TOP_N = 3
ITEMS = [f"i{i}" for i in range(10)]
PERSONS = ("p1", "p2")
IDS = [("user_id", "u1", "p1"), ("anonymous_id", "a1", "p1"), ("anonymous_id", "a2", "p2")]


def first_item(run_date: str) -> str:
    """Person p1's first item on `run_date`: differs from night to night."""
    return ITEMS[dt.date.fromisoformat(run_date).toordinal() % 7]


def model_version(run_date: str) -> str:
    return f"als-{run_date}-test"


def stage_night(cfg, run_date: str, attempt: int = 0) -> None:
    """Staged lists (p1, p2, global) and the inputs the publish stage checks them against, for `run_date`;
    another `attempt` (a re-run of the date) gives other scores, as a re-run with new inputs would."""
    data = Datasets(cfg.data_root)
    first = ITEMS.index(first_item(run_date))
    rows = []
    for subject_type, subject_id in [("person", p) for p in PERSONS] + [("segment", "global")]:
        for rank in range(1, TOP_N + 1):
            rows.append({"subject_type": subject_type, "subject_id": subject_id, "rank": rank,
                         "item_id": ITEMS[(first + rank - 1) % 7], "score": 1.0 / rank + attempt / 1000, "source": "mf",
                         "variant": "control", "model_version": model_version(run_date),
                         "run_id": f"nightly-{run_date}-test"})
    schema = load("recommendations").arrow()
    data.staged_lists.write_arrow(pa.Table.from_pylist(rows, schema=schema), run_date)
    catalog = load("catalog").arrow()
    data.validated_catalog.write_arrow(pa.Table.from_pylist(
        [{"item_id": i, "title": i, "category_path": "A > B", "price": 1.0, "is_available": True} for i in ITEMS],
        schema=catalog), run_date)
    bought_at = dt.datetime.fromisoformat(run_date).replace(tzinfo=dt.UTC)
    data.interactions.write_arrow(pa.Table.from_pylist(
        [{"person_id": "p1", "item_id": "i9", "weight": 1.0, "weights": [1.0], "purchased": True,
          "last_time": bought_at}], schema=load("interactions").arrow()), run_date)
    data.purchases.write_arrow(pa.Table.from_pylist(
        [{"person_id": "p1", "item_id": "i9", "last_purchase_time": bought_at, "returned": False}],
        schema=load("purchases").arrow()), run_date)
    data.identity_map.write_arrow(pa.Table.from_pylist(
        [dict(zip(("id_type", "id", "person_id"), r)) for r in IDS], schema=load("identity").arrow()), run_date)
    io.write_json(f"{data.models.path(run_date)}/model.json",
                  {"model_version": model_version(run_date), "run_date": run_date})
