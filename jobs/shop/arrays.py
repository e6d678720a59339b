"""Small numpy/Arrow building blocks shared by the shop's modules: seeded random streams, weighted draws,
id columns and a null-aware take."""
from __future__ import annotations

import binascii

import numpy as np
import pyarrow as pa

DAY_US = 86_400 * 1_000_000
STRING = pa.string()


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """An independent, reproducible stream per (seed, purpose, day)."""
    return np.random.default_rng([seed, *stream])


def probs(d: dict[str, float]) -> tuple[list[str], np.ndarray]:
    """The names of a {name: share} dict and their shares normalised to sum to 1."""
    p = np.array(list(d.values()), dtype=float)
    return list(d), p / p.sum()


def hex_strings(rng: np.random.Generator, n: int, n_hex: int, prefix: str = "") -> pa.StringArray:
    """`n` random ids `prefix + n_hex hex digits`, built straight into an Arrow buffer (no Python loop)."""
    if n == 0:  # a day with no order in a tiny shop: reshape(0, -1) cannot infer the width
        return pa.array([], pa.string())
    raw = rng.bytes(n * ((n_hex + 1) // 2))
    digits = np.frombuffer(binascii.hexlify(raw), dtype=np.uint8).reshape(n, -1)[:, :n_hex]
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    buf = np.empty((n, len(head) + n_hex), dtype=np.uint8)
    buf[:, :len(head)] = head
    buf[:, len(head):] = digits
    offsets = np.arange(n + 1, dtype=np.int32) * buf.shape[1]
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(buf.tobytes()))


def numbered(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Ids like `i000123`: the prefix and each number zero-padded to `width` digits."""
    return pa.array([f"{prefix}{n:0{width}d}" for n in numbers.tolist()], type=STRING)


def take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """values[idx] with null where idx < 0."""
    idx = np.asarray(idx, dtype=np.int64)
    return values.take(pa.array(idx, mask=idx < 0))
