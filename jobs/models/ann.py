"""Maximum-inner-product search with ScaNN: the nightly item index and the top-N items per person, with exclusions.

Index settings by catalog size (`index_plan`; every number overridable under `candidates.index`). The figures
behind the table were measured on this machine (shared/anchors' peer benchmarks, and bench/bench_retrieve.py):

- fewer than `exact_below` items (200k): `exact`, ScaNN `score_brute_force`. At 20k-100k items an index at
  recall 0.95 is at most 1.2x faster than ScaNN's exact scoring, so exact costs nothing.
- `exact_below` items or more: `tree`, leaves ~ sqrt(items) (at most 4000), search 20% of them, SOAR lambda 1.5,
  anisotropic hashing (2 dims per block, threshold 0.2), exact reorder of 2000. At 1M items this reached
  recall@100 0.978 (15% / 1500: 0.968, too close to 0.95 for a tree whose k-means differs per build) at about
  3x the speed of ScaNN's exact scoring and 20x numpy's; a tree without SOAR stalls near 0.92.
- `ah` (by config only): anisotropic hashing + reorder 800, no tree: 0.95 recall at 1.0-1.25x the exact speed
  between 20k and 100k items, rarely worth it.

`spherical=True` is never used: it ruins recall on unnormalised ALS factors.

The index is built once a night (`build_searcher`), saved with `save_index` and loaded once per process by
`cached_index` (the retrieve stage's executors); `search_top_n` is the one search-and-filter step that the
driver-side `top_n` (gate, tuning) and the executors share.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

EXACT, AH, TREE = "exact", "ah", "tree"
TREE_SEARCH_SHARE = 0.2
TREE_REORDER, AH_REORDER = 2000, 800
INDEX_META, INDEX_ITEMS, SCANN_DIR = "index.json", "items.parquet", "scann"


@dataclasses.dataclass(frozen=True)
class IndexPlan:
    """Resolved index settings for one catalog size (what `index_plan` picked and why is in the module table)."""
    method: str
    items: int
    leaves: int = 0
    leaves_to_search: int = 0
    soar_lambda: float = 0.0
    anisotropic_threshold: float = 0.2
    reorder: int = 0
    training_sample_size: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def index_plan(n_items: int, settings) -> IndexPlan:
    """The index for `n_items` from the module's table, with `settings` (`jobs.config.IndexConfig`: method,
    exact_below, leaves, leaves_to_search, soar_lambda, anisotropic_threshold, reorder, training_sample_size;
    0 = from the table) applied on top."""
    method = settings.method
    if method == "auto":
        method = EXACT if n_items < settings.exact_below else TREE
    if method == EXACT or n_items < 2:
        return IndexPlan(EXACT, n_items)
    threshold = float(settings.anisotropic_threshold)
    if method == AH:
        return IndexPlan(AH, n_items, anisotropic_threshold=threshold, reorder=settings.reorder or AH_REORDER)
    if method != TREE:
        raise ValueError(f"candidates.index.method {settings.method!r}: expected auto, exact, ah or tree")
    leaves = settings.leaves or int(np.clip(round(math.sqrt(n_items)), 1, 4000))
    leaves = max(1, min(leaves, n_items // 2))
    search = settings.leaves_to_search or max(1, round(TREE_SEARCH_SHARE * leaves))
    return IndexPlan(TREE, n_items, leaves=leaves, leaves_to_search=min(search, leaves),
                     soar_lambda=float(settings.soar_lambda), anisotropic_threshold=threshold,
                     reorder=settings.reorder or TREE_REORDER,
                     training_sample_size=min(n_items, settings.training_sample_size or n_items))


def build_searcher(item_vectors: np.ndarray, *, k: int, plan: IndexPlan):
    """A ScaNN maximum-inner-product searcher over `item_vectors` as `plan` says."""
    import scann

    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    builder = scann.scann_ops_pybind.builder(vectors, max(1, k), "dot_product")
    if plan.method == EXACT:
        return builder.score_brute_force().build()
    if plan.method == TREE:
        tree = {"num_leaves": plan.leaves, "num_leaves_to_search": plan.leaves_to_search,
                "training_sample_size": plan.training_sample_size}
        if plan.soar_lambda > 0:
            tree["soar_lambda"] = plan.soar_lambda
        builder = builder.tree(**tree)
    return builder.score_ah(2, anisotropic_quantization_threshold=plan.anisotropic_threshold).reorder(plan.reorder).build()


def search(searcher, plan: IndexPlan, queries: np.ndarray, k: int, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(item positions int64, scores float32), `k` per query, best first. `threads` > 1 uses ScaNN's own pool
    (benchmarks, the driver); executors run one task per core and search with 1."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    extra = {} if plan.method == EXACT else {"pre_reorder_num_neighbors": max(plan.reorder, k)}
    if threads > 1:
        searcher.set_num_threads(threads)
        idx, scores = searcher.search_batched_parallel(queries, final_num_neighbors=k, **extra)
    else:
        idx, scores = searcher.search_batched(queries, final_num_neighbors=k, **extra)
    return idx.astype(np.int64), scores.astype(np.float32)  # ScaNN returns uint32 positions


def over_fetch(excluded_count: np.ndarray, n: int, n_items: int) -> np.ndarray:
    """How many neighbours to ask for so that `n` remain after dropping a person's excluded items: `n` plus
    their excluded count rounded up to a power of two (few distinct sizes: persons are searched in buckets)."""
    slack = np.where(excluded_count == 0, 0,
                     2 ** np.ceil(np.log2(np.maximum(excluded_count, 1))).astype(np.int64))
    return np.minimum(n_items, n + slack)


def search_top_n(searcher, plan: IndexPlan, person_vectors: np.ndarray, *, n_items: int, excluded_rows: np.ndarray,
                 excluded_cols: np.ndarray, excluded_reasons: np.ndarray | None = None, n: int,
                 n_reasons: int = 1, threads: int = 1, batch: int = 8192
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-`n` items per person from `searcher`, never an excluded (row, col) pair.

    Returns (person_row, item_position int64, score float32, dropped) with rows grouped by person, best first;
    `dropped[r]` counts the excluded items of reason `r` (`excluded_reasons`, default 0) that the search returned
    within a person's list, i.e. the list entries each filter removed (over-fetching refilled them).
    """
    n_persons = len(person_vectors)
    n = min(n, n_items)
    dropped = np.zeros(n_reasons, np.int64)
    if n_persons == 0 or n == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32), dropped
    excluded_rows = np.asarray(excluded_rows, np.int64)
    codes = excluded_rows * n_items + np.asarray(excluded_cols, np.int64)
    reasons = np.zeros(len(codes), np.int64) if excluded_reasons is None else np.asarray(excluded_reasons, np.int64)
    order = np.argsort(codes, kind="stable")
    codes, reasons = codes[order], reasons[order]
    ks = over_fetch(np.bincount(excluded_rows, minlength=n_persons), n, n_items)
    out_p, out_i, out_s = [], [], []
    for k in np.unique(ks):
        rows = np.flatnonzero(ks == k)
        k = int(k)
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            idx, scores = search(searcher, plan, person_vectors[part], k, threads=threads)
            p = np.repeat(part, idx.shape[1]).reshape(idx.shape)
            found = p * n_items + idx
            pos = np.minimum(np.searchsorted(codes, found), max(len(codes) - 1, 0))
            hit = (codes[pos] == found) if len(codes) else np.zeros(found.shape, bool)
            keep = ~hit & (idx < n_items)  # ScaNN pads short results with out-of-range positions
            within = np.cumsum(keep, axis=1) - keep < n  # slots before the list is full
            dropped += np.bincount(reasons[pos[hit & within]], minlength=n_reasons)
            keep &= np.cumsum(keep, axis=1) <= n
            out_p.append(p[keep])
            out_i.append(idx[keep])
            out_s.append(scores[keep])
    p, i, s = np.concatenate(out_p), np.concatenate(out_i), np.concatenate(out_s)
    order = np.lexsort((-s, p))
    return p[order], i[order], s[order], dropped


def top_n(person_vectors: np.ndarray, item_vectors: np.ndarray, *, bought_rows: np.ndarray,
          bought_cols: np.ndarray, n: int, index_settings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-`n` items per person by inner product through the night's index settings (`index_settings`, a
    `jobs.config.IndexConfig`), excluding (row, col) pairs in `bought_*`: the gate's retrieval is the night's.

    Returns flat arrays (person_index, item_index int64, score float32), rows grouped by person, best first.
    """
    n_items = len(item_vectors)
    if len(person_vectors) == 0 or min(n, n_items) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    plan = index_plan(n_items, index_settings)
    k_max = int(over_fetch(np.bincount(np.asarray(bought_rows, np.int64), minlength=len(person_vectors)),
                           n, n_items).max())
    searcher = build_searcher(item_vectors, k=k_max, plan=plan)
    p, i, s, _ = search_top_n(searcher, plan, person_vectors, n_items=n_items, excluded_rows=bought_rows,
                              excluded_cols=bought_cols, n=n)
    return p, i, s


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact top-k (`exact`, rows of item positions) present in `found`'s row."""
    if len(exact) == 0:
        return 1.0
    hits = [len(np.intersect1d(f, e, assume_unique=False)) / max(len(e), 1) for f, e in zip(found, exact)]
    return float(np.mean(hits))


def exact_top_k(queries: np.ndarray, item_vectors: np.ndarray, k: int) -> np.ndarray:
    """Positions of the exact top-`k` items per query by numpy inner products (the reference for recall); batches
    keep the score matrix near 32M floats (128 MB) whatever the catalog size."""
    k = min(k, len(item_vectors))
    batch = int(np.clip(2**25 // max(len(item_vectors), 1), 16, 2048))
    out = []
    for start in range(0, len(queries), batch):
        scores = queries[start:start + batch] @ item_vectors.T
        out.append(np.argpartition(-scores, k - 1, axis=1)[:, :k])
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


# ------------------------------------------------------------------------------------------------ saved index

def save_index(local_dir: str, searcher, plan: IndexPlan, *, item_ids: np.ndarray, sources: np.ndarray,
               version: str) -> str:
    """Writes the searcher (ScaNN `serialize`), the ids and sources of its rows and `index.json` into
    `local_dir` (a folder on this machine; the caller moves it into the model folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(f"{local_dir}/{SCANN_DIR}", exist_ok=True)
    searcher.serialize(f"{local_dir}/{SCANN_DIR}")
    pq.write_table(pa.table({"item_id": pa.array(item_ids, pa.string()), "source": pa.array(sources, pa.string())}),
                   f"{local_dir}/{INDEX_ITEMS}")
    with open(f"{local_dir}/{INDEX_META}", "w") as f:
        json.dump({"version": version, "plan": plan.as_dict(), "items": int(len(item_ids))}, f, sort_keys=True)
    return local_dir


@dataclasses.dataclass(frozen=True)
class LoadedIndex:
    searcher: object
    plan: IndexPlan
    item_ids: np.ndarray
    sources: np.ndarray
    version: str


def _load_searcher(artifacts_dir: str):
    """ScaNN's `load_searcher`, for a folder that has moved since `serialize`: ScaNN records each asset by its
    absolute path at save time, so the paths are pointed at `artifacts_dir` before loading."""
    import re

    from scann.scann_ops.py import scann_ops_pybind

    with open(f"{artifacts_dir}/scann_assets.pbtxt") as f:
        assets = f.read()
    assets = re.sub(r'asset_path: "([^"]*)"',
                    lambda m: f'asset_path: "{os.path.join(artifacts_dir, os.path.basename(m.group(1)))}"', assets)
    return scann_ops_pybind.ScannSearcher(scann_ops_pybind.scann_pybind.ScannNumpy(artifacts_dir, assets), None)


def load_index(local_dir: str) -> LoadedIndex:
    import pyarrow.parquet as pq

    with open(f"{local_dir}/{INDEX_META}") as f:
        meta = json.load(f)
    items = pq.read_table(f"{local_dir}/{INDEX_ITEMS}")
    searcher = _load_searcher(os.path.abspath(f"{local_dir}/{SCANN_DIR}"))
    return LoadedIndex(searcher, IndexPlan(**meta["plan"]),
                       np.asarray(items.column("item_id").to_pylist(), dtype=object),
                       np.asarray(items.column("source").to_pylist(), dtype=object), meta["version"])


_LOADED: dict[tuple[str, str], LoadedIndex] = {}
LOADS = {"count": 0}  # how many times this process loaded an index from disk (tests check the cache holds)


def cached_index(local_dir: str, version: str) -> LoadedIndex:
    """The index at `local_dir`, loaded once per process and version: every batch and task a Python worker
    runs reuses it. Another version replaces it (one night's index in memory at a time)."""
    key = (local_dir, version)
    if key not in _LOADED:
        _LOADED.clear()
        loaded = load_index(local_dir)
        if loaded.version != version:
            raise ValueError(f"index at {local_dir} is version {loaded.version!r}, expected {version!r}: "
                             "it was rebuilt while this run read it")
        _LOADED[key] = loaded
        LOADS["count"] += 1
    return _LOADED[key]


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
