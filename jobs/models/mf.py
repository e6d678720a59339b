"""The recommender's one small model interface: fit matrix factorization, then recommend top-N items.

    matrix = InteractionMatrix.from_pairs(person_ids, item_ids, weights)
    model = MFModel.fit(matrix, settings, seed=cfg.seed)          # implicit ALS, or MLlib's (settings.engine)
    index = model.item_index(available_ids, extra=cold_items)      # what may be recommended
    recs = model.recommend(person_ids, index, exclude_persons=..., exclude_items=..., n=100,
                           index_settings=cfg.candidates.index)

The train stage fits and saves; the gate and `recs tune` fit on the holdout and score `recommend`'s lists;
the retrieve stage builds the night's index from the saved model and searches it inside Spark partitions
(`jobs.models.ann.search_top_n`, the same search and filter as `recommend`).
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from jobs.models.als import Factors, to_csr, train_als
from jobs.models.ann import exact_top_n, top_n

MF_SOURCE = "mf"
PERSONS_TABLE, ITEMS_TABLE = "persons", "items"


class AlsSettings(Protocol):
    """What a fit needs: `jobs.config.AlsConfig` or any object with these attributes."""
    factors: int
    iterations: int
    regularization: float
    alpha: float
    threads: int
    engine: str  # "implicit" (default when absent) or "spark"


@dataclasses.dataclass(frozen=True)
class InteractionMatrix:
    """persons x items confidences (CSR) with the sorted ids of its rows and columns."""
    matrix: object
    person_ids: np.ndarray
    item_ids: np.ndarray

    @classmethod
    def from_pairs(cls, person_ids, item_ids, weights) -> "InteractionMatrix":
        matrix, persons, items = to_csr(person_ids, item_ids, np.asarray(weights))
        return cls(matrix, persons, items)

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)


@dataclasses.dataclass(frozen=True)
class ItemIndex:
    """The items a recommendation may name: sorted ids, their vectors and where each vector came from."""
    ids: np.ndarray
    vectors: np.ndarray
    sources: np.ndarray

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Index of each id, -1 when absent."""
        return pd.Index(self.ids).get_indexer(ids)


@dataclasses.dataclass(frozen=True)
class MFModel:
    persons: Factors
    items: Factors

    @classmethod
    def fit(cls, matrix: InteractionMatrix, settings: AlsSettings, *, seed: int, progress: bool = False) -> "MFModel":
        if getattr(settings, "engine", "implicit") == "spark":  # MLlib on the running SparkSession
            from jobs.models.spark_als import fit_matrix

            person_vecs, item_vecs = fit_matrix(matrix.matrix, settings, seed=seed)
        else:
            person_vecs, item_vecs = train_als(matrix.matrix, factors=settings.factors,
                                               regularization=settings.regularization, alpha=settings.alpha,
                                               iterations=settings.iterations, threads=settings.threads, seed=seed,
                                               progress=progress)
        return cls(Factors(matrix.person_ids, person_vecs), Factors(matrix.item_ids, item_vecs))

    def tables(self) -> dict[str, pa.Table]:
        """The factor tables as saved with the model (`jobs.storage.datasets.ModelStore`)."""
        return {PERSONS_TABLE: self.persons.table("person_id"), ITEMS_TABLE: self.items.table("item_id")}

    @classmethod
    def from_tables(cls, tables: dict[str, pa.Table]) -> "MFModel":
        return cls(Factors.from_table(tables[PERSONS_TABLE], "person_id"),
                   Factors.from_table(tables[ITEMS_TABLE], "item_id"))

    def item_index(self, available_ids, extra: Factors | None = None, extra_source: str = "content") -> ItemIndex:
        """The trained items among `available_ids`, plus `extra` vectors (e.g. new items), sorted by id."""
        keep = np.flatnonzero(pd.Index(np.asarray(available_ids, dtype=object)).get_indexer(self.items.ids) >= 0)
        ids, vectors = self.items.ids[keep], self.items.vectors[keep]
        sources = np.full(len(ids), MF_SOURCE, dtype=object)
        if extra is not None and len(extra.ids):
            ids = np.concatenate([ids, extra.ids])
            vectors = np.concatenate([vectors, extra.vectors])
            sources = np.concatenate([sources, np.full(len(extra.ids), extra_source, dtype=object)])
        order = np.argsort(ids, kind="stable")
        return ItemIndex(ids[order], vectors[order].reshape(len(order), self.items.vectors.shape[1]), sources[order])

    def recommend(self, person_ids: np.ndarray, index: ItemIndex, *, exclude_persons=(), exclude_items=(), n: int,
                  index_settings=None, exact: bool = False) -> pa.Table:
        """Top-`n` items of `index` per person by inner product, never a (person, item) pair in `exclude_*`.

        `index_settings` (`jobs.config.IndexConfig`) picks the ScaNN index as the nightly retrieval does;
        `exact` scores with numpy and builds no ScaNN index (tuning trials: a fresh model each time).

        Persons without factors are skipped. Returns an Arrow table person_id, item_id, score, source, rank
        (1 = best), grouped by person in the order of `person_ids` (Arrow: millions of rows stay cheap).
        """
        if index_settings is None and not exact:
            raise ValueError("recommend: pass index_settings (cfg.candidates.index) or exact=True")
        person_ids = np.asarray(person_ids, dtype=object)
        rows = pd.Index(self.persons.ids).get_indexer(person_ids)
        person_ids, rows = person_ids[rows >= 0], rows[rows >= 0]
        b_rows = pd.Index(person_ids).get_indexer(np.asarray(exclude_persons, dtype=object))
        b_cols = index.positions(np.asarray(exclude_items, dtype=object))
        known = (b_rows >= 0) & (b_cols >= 0)  # an excluded item that is not in the index needs no filter
        bought = {"bought_rows": b_rows[known].astype(np.int64), "bought_cols": b_cols[known].astype(np.int64), "n": n}
        p, i, s = (exact_top_n(self.persons.vectors[rows], index.vectors, **bought) if exact else
                   top_n(self.persons.vectors[rows], index.vectors, index_settings=index_settings, **bought))
        starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]]) if len(p) else np.zeros(0, np.int64)
        rank = np.arange(len(p)) - np.repeat(starts, np.diff(np.r_[starts, len(p)])) + 1
        take_p, take_i = pa.array(p), pa.array(i)
        return pa.table({"person_id": pa.array(person_ids, pa.string()).take(take_p),
                         "item_id": pa.array(index.ids, pa.string()).take(take_i),
                         "score": pa.array(s.astype(np.float64)),
                         "source": pa.array(index.sources, pa.string()).take(take_i),
                         "rank": pa.array(rank.astype(np.int32))})
