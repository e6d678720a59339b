"""Approximate maximum-inner-product search with ScaNN: the top-N items per person, with exclusions.

Below `brute_force_below` items ScaNN scores exactly; above, asymmetric hashing with reordering, and a tree
near a million items (settings from shared/anchors' recall/speed figures).
"""
from __future__ import annotations

import numpy as np

from jobs.progress import steps


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


def top_n(person_vectors: np.ndarray, item_vectors: np.ndarray, *, bought_rows: np.ndarray,
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
    with steps(f"top {n} of {n_items:,} items", total=n_persons, unit="persons") as done:
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
                done.advance(len(batch))
    p, i, s = np.concatenate(out_p), np.concatenate(out_i), np.concatenate(out_s)
    order = np.lexsort((-s, p))
    return p[order], i[order], s[order]


def exact_top_n(person_vectors: np.ndarray, item_vectors: np.ndarray, *, bought_rows: np.ndarray,
                bought_cols: np.ndarray, n: int, batch: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`top_n` by exact numpy inner products, with no index to build: what tuning trials use, since each
    trial's item vectors are new (same return contract as `top_n`)."""
    n_persons, n_items = len(person_vectors), len(item_vectors)
    n = min(n, n_items)
    if n_persons == 0 or n == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    order = np.argsort(bought_rows, kind="stable")
    bought_rows, bought_cols = bought_rows[order].astype(np.int64), bought_cols[order].astype(np.int64)
    out_p, out_i, out_s = [], [], []
    for start in range(0, n_persons, batch):
        stop = min(start + batch, n_persons)
        scores = person_vectors[start:stop] @ item_vectors.T
        lo, hi = np.searchsorted(bought_rows, [start, stop])
        scores[bought_rows[lo:hi] - start, bought_cols[lo:hi]] = -np.inf
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        top_scores = np.take_along_axis(scores, top, 1)
        keep = np.isfinite(top_scores)
        out_p.append(np.repeat(np.arange(start, stop), n).reshape(-1, n)[keep])
        out_i.append(top[keep].astype(np.int64))
        out_s.append(top_scores[keep].astype(np.float32))
    p, i, s = np.concatenate(out_p), np.concatenate(out_i), np.concatenate(out_s)
    order = np.lexsort((i, -s, p))
    return p[order], i[order], s[order]
