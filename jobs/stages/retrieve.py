"""Stage 5: ScaNN top-N candidates per person from the ALS embeddings.

The index holds only items available in the run day's catalog, so unavailable items can never be
retrieved. Items the person already bought are filtered after the search; to still return `n`
candidates, each person is searched with `n + slack` neighbours where slack is their bought count rounded
up to a power of two (people are searched in buckets of equal slack).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.storage import io
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)


def build_searcher(item_vectors: np.ndarray, *, k: int, brute_force_below: int):
    """ScaNN maximum-inner-product searcher: exact below `brute_force_below` items, AH + reorder above."""
    import scann

    builder = scann.scann_ops_pybind.builder(item_vectors, k, "dot_product")
    if len(item_vectors) < brute_force_below:
        return builder.score_brute_force().build()
    # Settings from shared/anchors: asymmetric hashing without a tree keeps recall@100 >= 0.95 up to ~100k
    # items at about the exact search's speed; a tree only pays off near a million items.
    if len(item_vectors) < 250_000:
        return builder.score_ah(2, anisotropic_quantization_threshold=0.2).reorder(max(800, 4 * k)).build()
    return (builder.tree(num_leaves=1000, num_leaves_to_search=150, training_sample_size=250_000, soar_lambda=1.5)
            .score_ah(2, anisotropic_quantization_threshold=0.2).reorder(max(1500, 4 * k)).build())


def retrieve(person_vectors: np.ndarray, item_vectors: np.ndarray, *, bought_rows: np.ndarray,
             bought_cols: np.ndarray, n: int, brute_force_below: int = 50_000
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-`n` items per person by inner product, excluding (row, col) pairs in `bought_*`.

    Returns flat arrays (person_index, item_index int64, score float32), rows grouped by person, best first.
    `bought_rows`/`bought_cols` index `person_vectors`/`item_vectors`.
    """
    n_persons, n_items = len(person_vectors), len(item_vectors)
    n = min(n, n_items)
    if n_persons == 0 or n == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    bought_codes = np.unique(bought_rows.astype(np.int64) * n_items + bought_cols.astype(np.int64))
    bought_count = np.bincount(bought_rows, minlength=n_persons) if len(bought_rows) else np.zeros(n_persons, int)
    slack = np.where(bought_count == 0, 0, 2 ** np.ceil(np.log2(np.maximum(bought_count, 1))).astype(np.int64))
    k_max = int(min(n_items, n + slack.max()))
    searcher = build_searcher(item_vectors, k=k_max, brute_force_below=brute_force_below)
    out_p, out_i, out_s = [], [], []
    for s in np.unique(slack):
        rows = np.flatnonzero(slack == s)
        k = int(min(n_items, n + s))
        for start in range(0, len(rows), 8192):
            batch = rows[start:start + 8192]
            idx, scores = searcher.search_batched(person_vectors[batch], final_num_neighbors=k)
            idx = idx.astype(np.int64)  # ScaNN returns uint32
            p = np.repeat(batch, k).reshape(len(batch), k)
            keep = ~np.isin(p * n_items + idx, bought_codes)
            keep &= np.cumsum(keep, axis=1) <= n
            out_p.append(p[keep])
            out_i.append(idx[keep])
            out_s.append(scores[keep].astype(np.float32))
    p, i, s = np.concatenate(out_p), np.concatenate(out_i), np.concatenate(out_s)
    order = np.lexsort((-s, p))
    return p[order], i[order], s[order]


def cold_item_vectors(catalog, model_ids: np.ndarray, model_vectors: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings for catalog items the model has not seen (new listings), from their attributes.

    A cold item gets the mean vector of the trained items that share its leaf category and brand, else its
    leaf category, else its top-level category: it is then retrieved for people who like similar items.
    Items with no such neighbour stay out (popular fill still reaches them). Returns (ids, vectors).
    """
    import pandas as pd

    cat = catalog.to_pandas() if hasattr(catalog, "to_pandas") else catalog
    path = cat["category_path"].fillna("").str.split(" > ")
    cat = cat.assign(leaf=path.str[-1], top=path.str[0], brand=cat["brand"].fillna(""))
    known = cat["item_id"].isin(set(model_ids))
    trained = cat[known].set_index("item_id").loc[model_ids[np.isin(model_ids, cat["item_id"])]]
    cold = cat[~known & cat["is_available"].fillna(False)]
    if cold.empty or trained.empty:
        return np.zeros(0, dtype=object), np.zeros((0, model_vectors.shape[1]), np.float32)
    vec_of = dict(zip(model_ids, model_vectors))
    trained_vecs = np.stack([vec_of[i] for i in trained.index])
    frame = pd.DataFrame(trained_vecs, index=trained.index)
    vectors = np.full((len(cold), model_vectors.shape[1]), np.nan, np.float32)
    for keys in (["leaf", "brand"], ["leaf"], ["top"]):
        means = frame.groupby([trained[k] for k in keys]).mean()
        todo = np.isnan(vectors[:, 0])
        if not todo.any():
            break
        idx = pd.MultiIndex.from_frame(cold.loc[todo, keys]) if len(keys) > 1 else pd.Index(cold.loc[todo, keys[0]])
        found = means.reindex(idx).to_numpy(np.float32)
        vectors[np.flatnonzero(todo)] = found
    ok = ~np.isnan(vectors[:, 0])
    return cold["item_id"].to_numpy(object)[ok], vectors[ok]


def read_catalog(path: str) -> pa.Table:
    import pyarrow.dataset as pads

    fs, local = io.fs_for(path)
    return pads.dataset(local, filesystem=fs, format="parquet").to_table(
        columns=["item_id", "is_available", "category_path", "brand"])


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indexes of `ids` in `sorted_ids` and a mask of which were found."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return pos, sorted_ids[pos] == ids


def run(spark, cfg, run_date: str) -> dict:
    from jobs.stages.train import load_factors, read_interactions

    started = time.time()
    layout = Layout(cfg.data_root)
    persons, items, meta = load_factors(layout.model(run_date))
    catalog = read_catalog(layout.validated("catalog", run_date))
    available_ids = pc.filter(catalog.column("item_id"), pc.fill_null(catalog.column("is_available"), False))
    in_index = np.flatnonzero(pc.is_in(pa.array(items.ids, pa.string()), value_set=available_ids)
                              .to_numpy(zero_copy_only=False))
    cold_ids, cold_vectors = cold_item_vectors(catalog, items.ids, items.vectors)
    index_ids = np.concatenate([items.ids[in_index], cold_ids])
    index_vectors = np.concatenate([items.vectors[in_index], cold_vectors])
    index_source = np.array(["mf"] * len(in_index) + ["content"] * len(cold_ids), dtype=object)
    order = np.argsort(index_ids, kind="stable")  # sorted ids: bought items are found by binary search
    index_ids, index_vectors, index_source = index_ids[order], index_vectors[order], index_source[order]
    bought = read_interactions(layout.interactions(run_date), ("person_id", "item_id", "purchased"))
    bought = bought.filter(pc.field("purchased"))
    rows, row_found = _positions(persons.ids, bought.column("person_id").to_numpy(zero_copy_only=False))
    cols, col_found = _positions(index_ids, bought.column("item_id").to_numpy(zero_copy_only=False))
    found = row_found & col_found
    search_started = time.time()
    p, i, s = retrieve(persons.vectors, index_vectors, bought_rows=rows[found], bought_cols=cols[found],
                       n=cfg.candidates.n, brute_force_below=cfg.candidates.scann_brute_force_below)
    search_seconds = time.time() - search_started
    table = pa.table({"person_id": pa.array(persons.ids, pa.string()).take(pa.array(p)),
                      "item_id": pa.array(index_ids, pa.string()).take(pa.array(i)),
                      "score": pa.array(s.astype(np.float64)),
                      "source": pa.array(index_source, pa.string()).take(pa.array(i))})
    out = io.write_arrow_parquet(table, layout.candidates(run_date))
    return {"path": out, "model_version": meta.get("model_version"), "persons": int(len(np.unique(p))),
            "candidates": int(len(p)), "indexed_items": int(len(index_ids)), "cold_items": int(len(cold_ids)),
            "search_seconds": round(search_seconds, 1), "seconds": round(time.time() - started, 1)}
