"""Vectors in the factor space for items and people the model has no (or too little) history for, from attributes.

Items: each catalog item becomes a bag of attribute tokens (every level of its category path, brand, price band
within its top-level category, colour, material, the words of its title and description; any optional column
may be absent). A ridge regression fitted on the items with enough history maps those tokens to their learned
factors; an item below the threshold gets the predicted vector instead (rule: `content_items`). A new item is
then retrievable the day it is listed, and two new items of one category differ by their brand, price and words.

Pure numpy/scipy: no files, no Spark. The feature matrix is item x token (sparse); the solve is
tokens x tokens, bounded by `max_features`, so it does not grow with the catalog.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from schemas.vocabulary import CATEGORY_SEPARATOR

# Optional catalog columns read when present, and the token prefix of each; words of free text get `w:`.
ATTRIBUTE_COLUMNS = ("brand", "color", "material")
TEXT_COLUMNS = ("title", "description")
CATALOG_COLUMNS = ("item_id", "is_available", "category_path", "price", *ATTRIBUTE_COLUMNS, *TEXT_COLUMNS)
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
PRICE_BANDS = 5  # price quintiles within the item's top-level category


def _column(cat, name: str):
    import pandas as pd

    if name in cat.columns:
        return cat[name].astype("string").fillna("").str.strip().str.lower()
    return pd.Series("", index=cat.index, dtype="string")


def item_tokens(catalog) -> list[list[str]]:
    """The attribute tokens of each catalog row (a pandas frame or Arrow table; only `item_id` and
    `category_path` are required)."""
    import pandas as pd

    cat = catalog.to_pandas() if hasattr(catalog, "to_pandas") else catalog
    cat = cat.reset_index(drop=True)
    path = _column(cat, "category_path")
    levels = path.str.split(CATEGORY_SEPARATOR.strip())
    top = levels.str[0].fillna("").str.strip()
    tokens: list[list[str]] = [[] for _ in range(len(cat))]
    for i, parts in enumerate(levels.tolist()):
        prefix = []
        for depth, part in enumerate(p.strip() for p in parts or []):
            if part:
                prefix.append(part)
                tokens[i].append(f"c{depth}:" + ">".join(prefix))
    for name in ATTRIBUTE_COLUMNS:
        for i, v in enumerate(_column(cat, name).tolist()):
            if v:
                tokens[i].append(f"{name}:{v}")
    if "price" in cat.columns:
        price = pd.to_numeric(cat["price"], errors="coerce")
        band = price.groupby(top).rank(pct=True)
        for i, (b, t) in enumerate(zip(band.tolist(), top.tolist())):
            if b == b:  # not NaN
                tokens[i].append(f"price:{t}:{min(int(b * PRICE_BANDS), PRICE_BANDS - 1)}")
    for name in TEXT_COLUMNS:
        for i, v in enumerate(_column(cat, name).tolist()):
            if v:
                tokens[i].extend(sorted({"w:" + w for w in _WORD.findall(v)}))
    return tokens


@dataclass(frozen=True)
class ContentModel:
    """Ridge map from attribute tokens to factor vectors: vector = mean + features @ weights."""
    vocabulary: dict[str, int]
    weights: np.ndarray   # (tokens, factors)
    mean: np.ndarray      # (factors,)

    def features(self, tokens: list[list[str]]):
        """Rows of token indicators, L2-normalised (an item with many words weighs no more than one with few)."""
        from scipy import sparse

        rows, cols = [], []
        for r, toks in enumerate(tokens):
            idx = sorted({self.vocabulary[t] for t in toks if t in self.vocabulary})
            rows.extend([r] * len(idx))
            cols.extend(idx)
        x = sparse.csr_matrix((np.ones(len(rows), np.float64), (rows, cols)),
                              shape=(len(tokens), len(self.vocabulary)))
        norms = np.sqrt(np.asarray(x.sum(axis=1)).ravel())
        return sparse.diags(1.0 / np.maximum(norms, 1.0)) @ x

    def predict(self, tokens: list[list[str]]) -> np.ndarray:
        if not tokens:
            return np.zeros((0, len(self.mean)), np.float32)
        return (self.mean[None, :] + self.features(tokens) @ self.weights).astype(np.float32)


def fit_content_model(tokens: list[list[str]], vectors: np.ndarray, *, alpha: float, max_features: int,
                      min_items: int = 2) -> ContentModel:
    """Ridge regression (L2 penalty `alpha`) from the tokens of items with history to their factor vectors.

    Tokens seen on fewer than `min_items` of those items are dropped (nothing to learn from), and only the
    `max_features` most frequent are kept; category tokens are always kept first, so a new item's category
    still places it when its words are all new."""
    from collections import Counter

    counts = Counter(t for toks in tokens for t in set(toks))
    kept = [t for t, c in counts.items() if c >= min_items]
    kept.sort(key=lambda t: (not t.startswith("c"), -counts[t], t))
    vocabulary = {t: i for i, t in enumerate(kept[:max_features])}
    mean = vectors.mean(axis=0).astype(np.float64) if len(vectors) else np.zeros(vectors.shape[1])
    model = ContentModel(vocabulary, np.zeros((len(vocabulary), vectors.shape[1])), mean)
    if not vocabulary:
        return model
    x = model.features(tokens)
    gram = (x.T @ x).toarray() + alpha * np.eye(len(vocabulary))
    weights = np.linalg.solve(gram, x.T @ (vectors.astype(np.float64) - mean[None, :]))
    return ContentModel(vocabulary, weights, mean)


def content_items(catalog, model_ids: np.ndarray, model_vectors: np.ndarray, interactions_per_item: dict,
                  *, min_interactions: int, alpha: float, max_features: int, norm_quantile: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The rule for which vector an item is searched by, and the content vectors.

    An item keeps its learned (ALS) vector once at least `min_interactions` persons interacted with it in the
    window; any other available item (new, or trained on too few persons to trust) gets the content vector
    predicted from its attributes by a ridge model fitted on the items that keep theirs, rescaled to the
    `norm_quantile` quantile of the learned vectors' lengths (0: not rescaled). Why rescale: a ridge prediction
    shrinks toward the mean, and under inner-product search a short vector loses to every established item;
    rescaled, a new item competes like a well-liked item of its kind until its own history takes over.

    Returns (learned ids to keep, content ids, content vectors, summary)."""
    cat = catalog.to_pandas() if hasattr(catalog, "to_pandas") else catalog
    cat = cat.drop_duplicates("item_id").reset_index(drop=True)
    tokens = item_tokens(cat)
    token_of = dict(zip(cat["item_id"].tolist(), tokens))
    counts = np.array([interactions_per_item.get(i, 0) for i in model_ids.tolist()])
    warm = (counts >= min_interactions) & np.array([i in token_of for i in model_ids.tolist()], dtype=bool)
    available = cat["is_available"].fillna(False).astype(bool).to_numpy() if "is_available" in cat.columns \
        else np.ones(len(cat), bool)
    warm_ids = set(model_ids[counts >= min_interactions].tolist())
    cold_mask = available & ~cat["item_id"].isin(warm_ids).to_numpy()
    summary = {"min_interactions": min_interactions, "fitted_on": int(warm.sum())}
    if not warm.any() or not cold_mask.any():
        summary.update(features=0, content_items=0)
        return (model_ids[counts >= min_interactions], np.zeros(0, dtype=object),
                np.zeros((0, model_vectors.shape[1]), np.float32), summary)
    model = fit_content_model([token_of[i] for i in model_ids[warm].tolist()], model_vectors[warm],
                              alpha=alpha, max_features=max_features)
    cold_ids = cat["item_id"].to_numpy(object)[cold_mask]
    vectors = model.predict([tokens[i] for i in np.flatnonzero(cold_mask).tolist()])
    if norm_quantile > 0:
        target = float(np.quantile(np.linalg.norm(model_vectors[warm], axis=1), norm_quantile))
        vectors *= (target / np.maximum(np.linalg.norm(vectors, axis=1), 1e-12))[:, None]
    summary.update(features=len(model.vocabulary), content_items=int(len(cold_ids)),
                   replaced_learned=int(np.isin(cold_ids, model_ids).sum()))
    return model_ids[counts >= min_interactions], cold_ids, vectors, summary

