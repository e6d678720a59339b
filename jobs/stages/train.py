"""Stage 4: implicit-feedback matrix factorization with `implicit` ALS.

Training is a single-node job by design (implicit is 13-17x faster than Spark MLlib's ALS at the same
rank; see bench/ and shared/anchors): Spark writes the interactions, this stage reads only the three
columns it needs with pyarrow, builds a CSR matrix with dense, sorted id<->index maps, and saves the
factors next to the ids they belong to, so embeddings can never misalign with ids.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from jobs.storage import io
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Factors:
    """Factors with their ids: row i of `vectors` belongs to `ids[i]`."""
    ids: np.ndarray          # object array of str, sorted
    vectors: np.ndarray      # float32 (len(ids), factors)

    def table(self, id_col: str) -> pa.Table:
        flat = pa.array(self.vectors.reshape(-1), type=pa.float32())
        return pa.table({id_col: pa.array(self.ids, type=pa.string()),
                         "factors": pa.FixedSizeListArray.from_arrays(flat, self.vectors.shape[1])})

    @classmethod
    def from_table(cls, table: pa.Table, id_col: str) -> "Factors":
        col = table.column("factors").combine_chunks()
        dim = col.type.list_size
        vectors = col.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
        return cls(np.asarray(table.column(id_col).to_pylist(), dtype=object), vectors)


def sorted_codes(ids) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted unique ids) of a string array: codes index the sorted ids.

    Arrow's dictionary encoding does the hashing in C++; sorting only the (small) dictionary keeps this
    several times faster than `np.unique` on millions of Python strings.
    """
    import pyarrow.compute as pc

    if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
        ids = np.asarray(ids)
        if ids.dtype != object and ids.dtype.kind not in "US":  # numeric ids: numpy sorts them fast already
            unique, codes = np.unique(ids, return_inverse=True)
            return codes.astype(np.int64), unique
    arr = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(ids, pa.string())
    encoded = pc.dictionary_encode(arr)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks() if encoded.num_chunks else pa.array([], pa.string())
    if len(encoded) == 0:
        return np.zeros(0, np.int64), np.zeros(0, dtype=object)
    dictionary = encoded.dictionary
    order = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    return codes, np.asarray(dictionary.take(pa.array(order)).to_pylist(), dtype=object)


def to_csr(person_ids, item_ids, weights: np.ndarray):
    """persons x items CSR plus the sorted unique ids that index its rows and columns."""
    from scipy.sparse import csr_matrix

    p_idx, persons = sorted_codes(person_ids)
    i_idx, items = sorted_codes(item_ids)
    matrix = csr_matrix((np.asarray(weights, dtype=np.float32), (p_idx, i_idx)), shape=(len(persons), len(items)))
    matrix.sum_duplicates()
    return matrix, persons, items


def train_als(user_items, *, factors: int, regularization: float, alpha: float, iterations: int,
              threads: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fits ALS on a persons x items confidence matrix; returns (person_factors, item_factors) as float32."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit threads itself; BLAS threads would oversubscribe
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                    iterations=iterations, num_threads=threads, random_state=seed,
                                    calculate_training_loss=False)
    model.fit(user_items, show_progress=False)
    return (np.ascontiguousarray(model.user_factors, dtype=np.float32),
            np.ascontiguousarray(model.item_factors, dtype=np.float32))


def read_interactions(path: str, columns=("person_id", "item_id", "weight", "purchased")) -> pa.Table:
    fs, local = io.fs_for(path)
    return pads.dataset(local, filesystem=fs, format="parquet").to_table(columns=list(columns))


def stored_config(cfg) -> dict:
    """The config as stored with the model: everything but where data lives and how Spark runs."""
    d = dataclasses.asdict(cfg)
    d.pop("data_root", None)
    d.pop("spark", None)
    return d


def model_version(cfg, run_date: str) -> str:
    return f"als-{run_date}-{cfg.fingerprint()}"


def run(spark, cfg, run_date: str) -> dict:
    started = time.time()
    layout = Layout(cfg.data_root)
    table = read_interactions(layout.interactions(run_date), ("person_id", "item_id", "weight"))
    if table.num_rows == 0:
        raise ValueError(f"no interactions at {layout.interactions(run_date)}: nothing to train on")
    matrix, persons, items = to_csr(table.column("person_id"), table.column("item_id"),
                                    table.column("weight").to_numpy())
    del table
    fit_started = time.time()
    a = cfg.als
    person_vecs, item_vecs = train_als(matrix, factors=a.factors, regularization=a.regularization, alpha=a.alpha,
                                       iterations=a.iterations, threads=a.threads, seed=cfg.seed)
    fit_seconds = time.time() - fit_started
    out = layout.model(run_date)
    version = model_version(cfg, run_date)
    with io.atomic_dir(out) as tmp:
        import pyarrow.parquet as pq

        fs, p = io.fs_for(tmp)
        fs.makedirs(p, exist_ok=True)
        pq.write_table(Factors(persons, person_vecs).table("person_id"), f"{p}/persons.parquet", filesystem=fs)
        pq.write_table(Factors(items, item_vecs).table("item_id"), f"{p}/items.parquet", filesystem=fs)
        io.write_json(f"{tmp}/model.json", {"model_version": version, "run_date": run_date,
                                            "als": dataclasses.asdict(a), "seed": cfg.seed,
                                            # every setting, so the gate can say what changed since the last
                                            # published model (jobs/gate.py config_changes)
                                            "config_fingerprint": cfg.fingerprint(),
                                            "config": stored_config(cfg),
                                            "persons": len(persons), "items": len(items), "nnz": int(matrix.nnz)})
    return {"path": out, "model_version": version, "persons": len(persons), "items": len(items),
            "nnz": int(matrix.nnz), "fit_seconds": round(fit_seconds, 1), "seconds": round(time.time() - started, 1)}


def load_factors(model_dir: str) -> tuple[Factors, Factors, dict]:
    import pyarrow.parquet as pq

    fs, p = io.fs_for(model_dir)
    persons = Factors.from_table(pq.read_table(f"{p}/persons.parquet", filesystem=fs), "person_id")
    items = Factors.from_table(pq.read_table(f"{p}/items.parquet", filesystem=fs), "item_id")
    return persons, items, io.read_json(f"{model_dir}/model.json", {})
