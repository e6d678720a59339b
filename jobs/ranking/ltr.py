"""The learned ranker: LightGBM LambdaRank trained on labelled candidates, judged against the retrieval order on
held-out persons, and the re-rank that Spark's partitions apply (ranker score, business terms, diversity).

`train_ranker` runs on the driver over a capped sample of persons (`rank.ranker.max_train_persons`); the model
travels to the executors as its text form in a broadcast, and `rerank_spark` scores each person's candidates
inside `applyInPandas`, so the scored table is never collected.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd

from jobs.config import BusinessConfig, DiversityConfig, RankerConfig
from jobs.ranking import business as business_terms
from jobs.ranking import diversity as mmr
from jobs.ranking.features import FEATURES


@dataclasses.dataclass(frozen=True)
class RankerResult:
    """What one night's training gives: the model (None when none could be trained), whether it serves (it
    beats the retrieval order), the validation figures behind that decision, and the feature importances."""

    model: str | None
    serves: bool
    reason: str
    validation: dict
    importances: dict
    counts: dict


# How far above zero the paired per-person gain of the ranker must be, in standard errors, where the ranker has to
# beat the retrieval order beyond the noise of its validation persons (one-sided 95%): see `train_ranker`.
NOISE_Z = 1.645


def ndcg_at_k(groups, labels, scores, *, k: int) -> float:
    """Mean graded NDCG@k ((2^label - 1) gains) over the groups with at least one positive label.
    Within a group, higher `scores` rank first; ties keep the given row order."""
    per_group = ndcg_per_group(groups, labels, scores, k=k)
    return float(per_group.mean()) if len(per_group) else float("nan")


def ndcg_per_group(groups, labels, scores, *, k: int) -> pd.Series:
    """Graded NDCG@k of each group with at least one positive label (index: the group's code in order of
    first appearance), as `ndcg_at_k` averages it."""
    frame = pd.DataFrame({"g": pd.factorize(np.asarray(groups, dtype=object))[0],
                          "label": np.asarray(labels, dtype=np.float64),
                          "s": -np.asarray(scores, dtype=np.float64)})
    frame["row"] = np.arange(len(frame))
    gain = np.exp2(frame["label"]) - 1.0
    ranked = frame.assign(gain=gain).sort_values(["g", "s", "row"], kind="stable")
    ranked["pos"] = ranked.groupby("g").cumcount() + 1
    top = ranked[ranked["pos"] <= k]
    dcg = (top["gain"] / np.log2(top["pos"] + 1)).groupby(top["g"]).sum()
    ideal_sorted = frame.assign(gain=gain).sort_values(["g", "gain"], ascending=[True, False], kind="stable")
    ideal_sorted["pos"] = ideal_sorted.groupby("g").cumcount() + 1
    itop = ideal_sorted[ideal_sorted["pos"] <= k]
    idcg = (itop["gain"] / np.log2(itop["pos"] + 1)).groupby(itop["g"]).sum()
    positive = idcg[idcg > 0]
    return dcg.reindex(positive.index).fillna(0.0) / positive


def paired_gain(valid: pd.DataFrame, ranked, *, k: int) -> dict:
    """The ranker's NDCG@k gain over the retrieval order per validation person (persons with a positive label):
    mean, its standard error and the one-sided lower bound mean - `NOISE_Z` x standard error."""
    retrieval = ndcg_per_group(valid["person_id"], valid["label"], -valid["retrieval_rank"].to_numpy(), k=k)
    ranker = ndcg_per_group(valid["person_id"], valid["label"], ranked, k=k)
    diff = (ranker - retrieval).to_numpy()
    mean = float(diff.mean()) if len(diff) else 0.0
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
    return {"persons": int(len(diff)), "mean": mean, "standard_error": se, "lower_bound": mean - NOISE_Z * se}


def split_persons(persons, *, validation_share: float, seed: int) -> np.ndarray:
    """A seeded boolean mask over `persons` (unique ids): True for the validation persons."""
    ids = np.unique(np.asarray(persons, dtype=object))
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(ids, size=int(round(len(ids) * validation_share)), replace=False)) if len(ids) else set()
    return np.array([p in chosen for p in np.asarray(persons, dtype=object)], dtype=bool)


def _dataset(frame: pd.DataFrame):
    import lightgbm as lgb

    frame = frame.sort_values(["person_id", "retrieval_rank"], kind="stable")
    groups = frame.groupby("person_id", sort=False).size().to_numpy()
    return lgb.Dataset(frame[list(FEATURES)].to_numpy(dtype=np.float64), label=frame["label"].to_numpy(),
                       group=groups, feature_name=list(FEATURES))


def _fit(frame: pd.DataFrame, ranker: RankerConfig, seed: int):
    """LambdaRank on `frame`'s persons, `ranker.trees` rounds of small trees (`num_leaves`, `min_data_in_leaf`)."""
    import lightgbm as lgb

    params = {"objective": "lambdarank", "learning_rate": ranker.learning_rate, "num_leaves": ranker.num_leaves,
              "min_data_in_leaf": ranker.min_data_in_leaf, "lambdarank_truncation_level": max(ranker.k, 10),
              "seed": seed, "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbose": -1}
    return lgb.train(params, _dataset(frame), num_boost_round=ranker.trees)


def train_ranker(frame: pd.DataFrame, ranker: RankerConfig, *, seed: int, business: BusinessConfig | None = None,
                 diversity: DiversityConfig | None = None, beyond_noise: bool = False) -> RankerResult:
    """Trains on the training persons of `frame` (person_id, item_id, label, category, margin_rate, stock_qty,
    every column of `FEATURES`) and judges it on the validation persons: NDCG@k of the retrieval order, the
    ranker's order and, when given, the ranker with the business terms and then with diversity, each with its
    intra-list category diversity. Serves when the ranker beats the retrieval order by `ranker.min_gain`, and,
    with `beyond_noise`, when the paired per-person gain's one-sided lower bound (`paired_gain`) is above 0 too:
    the rank stage asks that on a per-person holdout, whose validation labels are each person's last items, a
    weaker proxy of the next night than a temporal holdout's (on MovieLens a +1.3% gain on 283 persons served
    a ranker that cost the benchmark's random split 10%)."""
    counts = {"persons": int(frame["person_id"].nunique()) if len(frame) else 0, "rows": int(len(frame)),
              "positive_rows": int((frame["label"] > 0).sum()) if len(frame) else 0}
    if counts["positive_rows"] == 0 or counts["persons"] < 4:
        return RankerResult(None, False, f"too little training data ({counts['persons']} persons, "
                            f"{counts['positive_rows']} labelled candidates)", {}, {}, counts)
    is_validation = split_persons(frame["person_id"], validation_share=ranker.validation_share, seed=seed)
    train, valid = frame[~is_validation], frame[is_validation]
    counts.update(train_persons=int(train["person_id"].nunique()), validation_persons=int(valid["person_id"].nunique()))
    if (train["label"] > 0).sum() == 0 or (valid["label"] > 0).sum() == 0:
        return RankerResult(None, False, "no labelled candidate in the training or the validation persons",
                            {}, {}, counts)
    booster = _fit(train, ranker, seed)
    model = booster.model_to_string()
    validation = validation_figures(valid, model, ranker=ranker, business=business, diversity=diversity)
    gain = validation["ranker"]["ndcg"] / validation["retrieval"]["ndcg"] - 1.0 \
        if validation["retrieval"]["ndcg"] > 0 else float("inf")
    validation["relative_gain"] = gain
    serves = bool(gain > ranker.min_gain)
    reason = (f"ranker NDCG@{ranker.k} {validation['ranker']['ndcg']:.4f} vs retrieval order "
              f"{validation['retrieval']['ndcg']:.4f} ({gain:+.1%}) on {counts['validation_persons']} validation "
              + ("persons: it serves" if serves else
                 f"persons: not above the required {ranker.min_gain:+.1%}, tonight falls back to the retrieval order"))
    if beyond_noise:
        paired = validation["paired_gain"] = paired_gain(valid, score(model, valid), k=ranker.k)
        if serves and paired["lower_bound"] <= 0:
            serves = False
            reason = (f"{reason.removesuffix(': it serves')}, but within the noise of its validation persons (gain "
                      f"per person {paired['mean']:+.4f} +- {paired['standard_error']:.4f}, one-sided lower bound "
                      f"{paired['lower_bound']:+.4f} <= 0): tonight falls back to the retrieval order")
    gains = booster.feature_importance(importance_type="gain")
    total = float(gains.sum()) or 1.0
    importances = {f: round(float(g) / total, 4) for f, g in sorted(zip(FEATURES, gains), key=lambda x: -x[1])}
    return RankerResult(model, serves, reason, validation, importances, counts)


_BOOSTERS: dict[str, object] = {}


def score(model: str, features: pd.DataFrame) -> np.ndarray:
    """The model's scores for rows of `FEATURES` (the parsed model is cached per process, by its hash)."""
    import lightgbm as lgb

    key = hashlib.sha256(model.encode()).hexdigest()
    if key not in _BOOSTERS:
        _BOOSTERS.clear()  # one night's model at a time
        _BOOSTERS[key] = lgb.Booster(model_str=model)
    return _BOOSTERS[key].predict(features[list(FEATURES)].to_numpy(dtype=np.float64), num_threads=1)


def rerank_person(candidates: pd.DataFrame, relevance, *, business: BusinessConfig | None,
                  diversity: DiversityConfig | None) -> np.ndarray:
    """One person's candidates (sorted by item_id; category, margin_rate, stock_qty) in final order: positions.
    relevance is scaled 0..1, the business adjustment added, then the MMR re-rank applied in score units."""
    return _person_order(relevance, _column(candidates, "margin_rate"), _column(candidates, "stock_qty"),
                         _categories(candidates), business=business, diversity=diversity)


def _person_order(relevance, margin_rate, stock_qty, categories, *, business: BusinessConfig | None,
                  diversity: DiversityConfig | None) -> np.ndarray:
    raw = np.asarray(relevance, dtype=np.float64)
    rel = mmr.scaled(raw)
    if business is not None:
        rel = business_terms.adjusted(rel, margin_rate, stock_qty, business)
    if diversity is None:
        return np.argsort(-rel, kind="stable")
    # business terms are bounded in 0..1 units of the person's range; MMR weighs the ranker's score gaps as odds
    spread = raw.max() - raw.min() if len(raw) else 0.0
    return mmr.mmr_order(raw.min() + rel * spread if spread > 0 else rel, categories, diversity)


def _categories(frame: pd.DataFrame) -> np.ndarray:
    return frame["category"].fillna("").to_numpy(dtype=object)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)


def ordered_lists(frame: pd.DataFrame, relevance, *, business: BusinessConfig | None,
                  diversity: DiversityConfig | None) -> pd.DataFrame:
    """Every person's candidates of `frame` re-ranked: person_id, item_id, label (when present), category,
    rank (1 = first). Driver-side, for the validation split and the benchmarks."""
    frame = frame.assign(_rel=np.asarray(relevance, dtype=np.float64)).sort_values(["person_id", "item_id"])
    out = []
    for _, one in frame.groupby("person_id", sort=False):
        order = rerank_person(one, one["_rel"].to_numpy(), business=business, diversity=diversity)
        ranked = one.iloc[order].drop(columns="_rel")
        out.append(ranked.assign(rank=np.arange(1, len(ranked) + 1)))
    return pd.concat(out, ignore_index=True) if out else frame.drop(columns="_rel").assign(rank=[])


def list_figures(lists: pd.DataFrame, *, k: int) -> dict:
    """NDCG@k (graded labels) and intra-list category diversity of the top k of ranked lists."""
    top = lists[lists["rank"] <= k]
    return {"ndcg": ndcg_at_k(lists["person_id"], lists["label"], -lists["rank"].to_numpy(), k=k),
            "diversity": mmr.intra_list_diversity(
                [g.to_numpy(dtype=object) for _, g in top.groupby("person_id")["category"]])}


def validation_figures(valid: pd.DataFrame, model: str, *, ranker: RankerConfig,
                       business: BusinessConfig | None, diversity: DiversityConfig | None) -> dict:
    """The ablation on the validation persons: retrieval order, ranker, + business terms, + diversity; each
    variant's NDCG@k and diversity, and the relevance cost of each step against the ranker alone."""
    k = ranker.k
    ranked = score(model, valid)
    out = {"retrieval": list_figures(ordered_lists(valid, -valid["retrieval_rank"].to_numpy(), business=None,
                                                   diversity=None), k=k),
           "ranker": list_figures(ordered_lists(valid, ranked, business=None, diversity=None), k=k)}
    if business is not None:
        out["ranker_business"] = list_figures(ordered_lists(valid, ranked, business=business, diversity=None), k=k)
    if diversity is not None:
        out["ranker_business_diversity"] = list_figures(
            ordered_lists(valid, ranked, business=business, diversity=diversity), k=k)
    base = out["ranker"]["ndcg"]
    for name in ("ranker_business", "ranker_business_diversity"):
        if name in out and base > 0:
            out[name]["ndcg_cost_vs_ranker"] = 1.0 - out[name]["ndcg"] / base
    return out


def _rerank_batch(pdf: pd.DataFrame, model: str | None, business, diversity) -> pd.DataFrame:
    """Whole persons' candidates (sorted by person_id, item_id) -> person_id, item_id, score, source in final
    order, score falling from 1 (first) towards 0. One model call for the batch, then one re-rank per person."""
    relevance = score(model, pdf) if model is not None else pdf["retrieval_score"].to_numpy(dtype=np.float64)
    persons = pdf["person_id"].to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, persons[1:] != persons[:-1]])
    ends = np.r_[starts[1:], len(pdf)]
    # the batch's columns as arrays once: slicing a frame per person cost more than the re-rank itself
    margin, stock, categories = _column(pdf, "margin_rate"), _column(pdf, "stock_qty"), _categories(pdf)
    rows, scores = [], []
    for a, b in zip(starts, ends):
        order = _person_order(relevance[a:b], margin[a:b], stock[a:b], categories[a:b], business=business,
                              diversity=diversity)
        rows.append(a + order)
        scores.append(1.0 - np.arange(b - a, dtype=np.float64) / (b - a))
    taken = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return pd.DataFrame({"person_id": persons[taken], "item_id": pdf["item_id"].to_numpy(dtype=object)[taken],
                         "score": np.concatenate(scores) if scores else np.zeros(0),
                         "source": pdf["source"].to_numpy(dtype=object)[taken]})


def rerank_spark(features, *, model: str | None, business: BusinessConfig | None,
                 diversity: DiversityConfig | None, spark, partitions: int | None = None):
    """Each person's candidates (the columns of `candidate_features`, with source) re-scored inside Spark:
    person_id, item_id, score, source, where score falls from 1 (first) towards 0 in the final order. Without a
    model the relevance is the retrieval score (business terms and diversity still apply).

    `mapInPandas` over partitions clustered by person and sorted: each Arrow batch is scored in one model call;
    a person whose rows run past the end of a batch is carried into the next one, so every person is re-ranked
    whole."""
    shared = spark.sparkContext.broadcast(model) if model is not None else None
    schema = "person_id string, item_id string, score double, source string"

    def batches(frames):
        carry = None
        for pdf in frames:
            pdf = pdf if carry is None else pd.concat([carry, pdf], ignore_index=True)
            if pdf.empty:
                continue
            last = pdf["person_id"].iat[-1]
            whole = (pdf["person_id"] != last).to_numpy()
            carry = pdf[~whole].reset_index(drop=True)
            if whole.any():
                yield _rerank_batch(pdf[whole].reset_index(drop=True), shared and shared.value, business, diversity)
        if carry is not None and len(carry):
            yield _rerank_batch(carry, shared and shared.value, business, diversity)

    columns = ["person_id", "item_id", "source", "category", "margin_rate", "stock_qty", *FEATURES]
    clustered = (features.select(*columns).repartition(*([partitions] if partitions else []), "person_id")
                 .sortWithinPartitions("person_id", "item_id"))
    return clustered.mapInPandas(batches, schema)
