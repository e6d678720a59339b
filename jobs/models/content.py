"""Embeddings for items the model has not seen yet (new listings), from their attributes."""
from __future__ import annotations

import numpy as np

from schemas.vocabulary import CATEGORY_SEPARATOR, leaf_category_series


def cold_item_vectors(catalog, model_ids: np.ndarray, model_vectors: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings for catalog items the model has not seen (new listings), from their attributes.

    A cold item gets the mean vector of the trained items that share its leaf category and brand, else its
    leaf category, else its top-level category: it is then retrieved for people who like similar items.
    Items with no such neighbour stay out (popular fill still reaches them). Returns (ids, vectors).
    """
    import pandas as pd

    cat = catalog.to_pandas() if hasattr(catalog, "to_pandas") else catalog
    path = cat["category_path"].fillna("")
    brand = cat["brand"] if "brand" in cat.columns else pd.Series("", index=cat.index)
    cat = cat.assign(leaf=leaf_category_series(path), top=path.str.split(CATEGORY_SEPARATOR).str[0].str.strip(),
                     brand=brand.fillna(""))
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
