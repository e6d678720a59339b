"""Stage 7 of 9, retrieve: ScaNN top-N candidates per person from the night's ALS embeddings.

The index holds only items available in the run day's catalog, so an unavailable item can never be
retrieved, plus new items placed by their attributes (`jobs.models.content`, source `content`). Items the
person already bought are excluded (`jobs.models.mf.MFModel.recommend` over-fetches so `n` remain).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.config import RecsConfig
from jobs.experiments import arm_of, serves_previous
from jobs.models.als import Factors
from jobs.models.content import cold_item_vectors
from jobs.models.mf import MFModel
from jobs.storage.datasets import Datasets

log = logging.getLogger(__name__)


def run(spark, cfg: RecsConfig, run_date: str) -> dict:
    """`spark` is unused: the search runs on this node."""
    started = time.time()
    data = Datasets(cfg.data_root)
    fallback = data.gate_fallback(run_date)
    if fallback:  # the gate judged the model below popularity: the rank stage publishes popularity lists
        from schemas import load

        out = data.candidates.write_arrow(load("candidates").arrow().empty_table(), run_date)
        if serves_previous(cfg.experiment):
            data.previous_candidates.write_arrow(load("candidates").arrow().empty_table(), run_date)
        return {"path": out, "skipped": f"gate fallback to {fallback['baseline']}", "candidates": 0,
                "seconds": round(time.time() - started, 1)}
    tables, meta = data.models.read(run_date, ("persons", "items"))
    model = MFModel.from_tables(tables)
    catalog = data.validated_catalog.read_arrow(run_date, ["item_id", "is_available", "category_path", "brand"])
    available = pc.filter(catalog.column("item_id"), pc.fill_null(catalog.column("is_available"), False))
    cold_ids, cold_vectors = cold_item_vectors(catalog, model.items.ids, model.items.vectors)
    index = model.item_index(available.to_numpy(zero_copy_only=False), extra=Factors(cold_ids, cold_vectors))
    bought = data.interactions.read_arrow(run_date, ["person_id", "item_id", "purchased"])
    bought = bought.filter(pc.field("purchased"))
    search_started = time.time()
    candidates = model.recommend(model.persons.ids, index,
                                 exclude_persons=bought.column("person_id").to_numpy(zero_copy_only=False),
                                 exclude_items=bought.column("item_id").to_numpy(zero_copy_only=False),
                                 n=cfg.candidates.n, brute_force_below=cfg.candidates.scann_brute_force_below)
    search_seconds = time.time() - search_started
    out = data.candidates.write_arrow(candidates.select(["person_id", "item_id", "score", "source"]), run_date)
    previous = (_previous_model_candidates(cfg, data, run_date, catalog, available, bought, candidates)
                if serves_previous(cfg.experiment) else None)
    return {"path": out, "model_version": meta.get("model_version"), **({"previous": previous} if previous else {}),
            "persons": pc.count_distinct(candidates.column("person_id")).as_py(),
            "candidates": candidates.num_rows, "indexed_items": len(index.ids), "cold_items": len(cold_ids),
            "search_seconds": round(search_seconds, 1), "seconds": round(time.time() - started, 1)}


def _previous_model_candidates(cfg: RecsConfig, data: Datasets, run_date: str, catalog, available, bought,
                               tonight) -> dict:
    """Candidates of the last published model for the persons of the arms that serve it (only those persons are
    searched). Without a published model before tonight, the night's model is all there is: its candidates."""
    arms = {a.name for a in cfg.experiment.arms if a.serves == "previous"}
    before = data.models.latest_published_before(run_date)
    if before is None:
        persons = tonight.column("person_id").to_numpy(zero_copy_only=False)
        mine = pc.is_in(tonight.column("person_id"),
                        value_set=pa.array([p for p in set(persons) if arm_of(cfg.experiment, p) in arms], pa.string()))
        data.previous_candidates.write_arrow(tonight.filter(mine).select(["person_id", "item_id", "score", "source"]),
                                             run_date)
        return {"model_version": None, "note": "no model published before tonight: the night's model serves"}
    tables, meta = data.models.read(before["run_date"], ("persons", "items"))
    model = MFModel.from_tables(tables)
    persons = [p for p in model.persons.ids if arm_of(cfg.experiment, p) in arms]
    cold_ids, cold_vectors = cold_item_vectors(catalog, model.items.ids, model.items.vectors)
    index = model.item_index(available.to_numpy(zero_copy_only=False), extra=Factors(cold_ids, cold_vectors))
    found = model.recommend(np.asarray(persons, dtype=object), index,
                            exclude_persons=bought.column("person_id").to_numpy(zero_copy_only=False),
                            exclude_items=bought.column("item_id").to_numpy(zero_copy_only=False),
                            n=cfg.candidates.n, brute_force_below=cfg.candidates.scann_brute_force_below)
    data.previous_candidates.write_arrow(found.select(["person_id", "item_id", "score", "source"]), run_date)
    return {"model_version": meta.get("model_version"), "persons": len(persons), "candidates": found.num_rows}
