"""Implicit-feedback matrix factorization with `implicit` ALS, on one node by design.

implicit is 13-17x faster than Spark MLlib's ALS at the same rank on this class of machine (bench/ and
shared/anchors), so Spark prepares the interactions and the fit runs here. The matrix is indexed by sorted
ids, and factors always travel with their ids (`Factors`), so embeddings can never misalign with ids.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa

from jobs.progress import steps


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
        import pyarrow.compute as pc

        col = table.column("factors").combine_chunks()
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
        # fixed-size lists (written here) or plain lists of one length (Spark's array<float>: als.engine spark)
        dim = col.type.list_size if pa.types.is_fixed_size_list(col.type) else (len(flat) // len(col) if len(col) else 0)
        vectors = flat.reshape(len(col), dim).astype(np.float32, copy=False)
        return cls(np.asarray(table.column(id_col).to_pylist(), dtype=object), vectors)


def sorted_codes(ids) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted unique ids) of an id array: codes index the sorted ids.

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
              threads: int, seed: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fits ALS on a persons x items confidence matrix; returns (person_factors, item_factors) as float32.
    With `progress`, each iteration is a step of `jobs.progress` (the night's fit, not the tuning trials')."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit threads itself; BLAS threads would oversubscribe
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                    iterations=iterations, num_threads=threads, random_state=seed,
                                    calculate_training_loss=False)
    if not progress:
        model.fit(user_items, show_progress=False)
    else:
        with steps(f"train ALS {user_items.shape[0]:,} x {user_items.shape[1]:,}", total=iterations,
                   unit="iterations") as done:
            model.fit(user_items, show_progress=False, callback=lambda iteration, seconds, loss: done.advance())
    return (np.ascontiguousarray(model.user_factors, dtype=np.float32),
            np.ascontiguousarray(model.item_factors, dtype=np.float32))
