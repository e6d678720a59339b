"""A night's lists rebuilt on the gate's holdout: what the storefront would have shown, scored on what came next.

The gate judges what is published, not the raw retrieval. For a pipeline's settings (a `RecsConfig`: tonight's, or
the last published model's from its model.json) everything the nightly run does between the interactions and the
published lists is replayed as of the holdout's cutoff, for the gate's sample of test persons:

1. retrieval (`retrieval_candidates`): ALS with the pipeline's `als.*` on the holdout train weighted with its
   `interactions.half_life_days`, the item index of D's available items plus new items placed by their attributes
   (`jobs.models.content.content_items`, the retrieve stage's rule), top `candidates.n` by `candidates.index`,
   minus the pairs `jobs.exclusions` rules out under the pipeline's `filters.*` (purchases before the cutoff);
2. ranking (`pipeline_lists`): the ranking step `jobs.ranking.ranker_for(cfg)` (the rank stage's) over those
   candidates, with the popular fill of each person's segment (`segment_popularity` over the validated events of
   the `window_days` ending the day before the cutoff, flagged ids left out), item features from the holdout train
   and D's catalog, the same exclusions and the category demotion of `rank.*`, cut at `top_n`;
3. the popularity baselines (`popularity_lists`) exactly as a `fallback` night would publish them: no candidates,
   the fill alone, over the baseline's window of days, per segment or the `global` list for everyone.

Bounded: every per-person table (candidates, exclusions, lists) is for the sampled persons only (at most
`gate.max_test_persons`) and only the finished lists reach the driver; the segment popularity and item features
are Spark aggregations over the events and the holdout train, as in the rank stage. What is the same for every
pipeline (the Spark inputs, fitted models, candidates, segment popularity per window) is built once per holdout and
reused.

A per-person holdout (`jobs.evaluation.person_split`) has no common cutoff: its train runs to D, so the lists are
rebuilt as of D, and the held-out persons' held-out events are left out of the events popularity is counted on
(as they are out of the train).

What differs from the real night, by necessity: the purchases before the cutoff come from the holdout train
(`purchased`, `last_time`), which does not know returns (a returned purchase is not `purchased` there, so it is not
excluded); the persons' context (country, device) is their latest as of D; A/B arms are not replayed (the
`model` arm's `rank.*` is what is judged).
"""
from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.config import ConfigError, RecsConfig
from jobs.evaluation.holdout import Holdout
from jobs.evaluation.holdout_model import holdout_model
from jobs.evaluation.person_split import PER_PERSON, outside_holdout
from jobs.exclusions import excluded_pairs
from jobs.identity import attribute_events, load_state_nodes
from jobs.models.als import Factors
from jobs.models.content import content_items
from jobs.models.mf import MFModel
from jobs.ranking import ranker_for
from jobs.ranking.lists import ListInputs, fill_length, item_features, segment_popularity
from jobs.storage.datasets import Datasets
from jobs.storage.layout import window
from quality.activity import without_ids

log = logging.getLogger(__name__)

CANDIDATES_SCHEMA = "person_id string, item_id string, score double, source string"
PURCHASES_SCHEMA = "person_id string, item_id string, last_purchase_time timestamp, returned boolean"

# The settings of a published pipeline that shape its lists: the gate rebuilds the previous lists with these.
LIST_SETTINGS = ("als.", "interactions.half_life_days", "candidates.n", "candidates.index.", "filters.", "rank.",
                 "top_n", "window_days", "event_weights.", "segments.", "activity.max_weight_per_person_item")


@dataclasses.dataclass
class HoldoutSources:
    """The Spark side of one holdout, read once and shared by every pipeline the gate rebuilds on it."""

    spark: object
    holdout: Holdout
    last_train_day: str
    events: DataFrame      # validated events of the window ending the day before the cutoff, flagged ids left out
                           # (and, for a per-person holdout, its held-out events)
    catalog: DataFrame     # D's validated catalog (Spark)
    catalog_arrow: object  # the same for the cold items' vectors (item_id, is_available, category_path, brand)
    train: DataFrame       # the holdout train (Spark): item popularity for the ranker's features
    persons: DataFrame     # the sampled persons with their context (cached; small)
    purchases: DataFrame   # the sampled persons' purchases before the cutoff, as `jobs.exclusions` reads them
    data: Datasets | None = None  # where the night's holdout model is shared (`holdout_model`)
    cached: dict = dataclasses.field(default_factory=dict)


def holdout_sources(spark, data: Datasets, holdout: Holdout, cfg: RecsConfig) -> HoldoutSources:
    """Reads what every rebuilt pipeline needs besides the holdout's own tables (see the module docstring)."""
    run_date = holdout.run_date
    last_train_day = (holdout.cutoff - pd.Timedelta(days=1)).date().isoformat()
    dims = tuple(cfg.segments.dimensions)
    per_person = holdout.kind == PER_PERSON
    events = data.window_events(spark, last_train_day, cfg.window_days,
                                columns=["event_type", "item_id", "user_id", "anonymous_id", "event_time", *dims,
                                         *(["session_id"] if per_person else [])])
    # window days end before the cutoff; the filter also holds for events whose day partition and time disagree
    cutoff = F.to_timestamp(F.lit(f"{holdout.cutoff.date().isoformat()} 00:00:00"))  # the session's zone is UTC
    events = events.where(F.col("event_time") < cutoff)
    if data.flagged_ids.exists(run_date):
        events = without_ids(events, data.flagged_ids.read_spark(spark, run_date))
    if per_person:  # the held-out persons' later events are their test: kept out of popularity as out of train
        columns = events.columns
        attributed = attribute_events(events, load_state_nodes(spark, data.layout, run_date))
        events = outside_holdout(attributed, data.holdout_cuts.read_spark(spark, run_date),
                                 data.holdout_test.read_spark(spark, run_date)).select(*columns).drop("session_id")
    sample = pd.DataFrame({"person_id": pd.Series(holdout.persons, dtype="object")})
    sampled = spark.createDataFrame(sample, "person_id string")
    persons = (sampled.join(data.persons.read_spark(spark, run_date).select("person_id", *dims), "person_id", "left")
               .cache())  # every sampled person gets a list, with their context when known
    train = holdout.train
    bought = train[train["purchased"].to_numpy() & (pd.Index(holdout.persons).get_indexer(train["person_id"]) >= 0)]
    purchases = spark.createDataFrame(
        pd.DataFrame({"person_id": bought["person_id"].astype(object).to_numpy(),
                      "item_id": bought["item_id"].astype(object).to_numpy(),
                      "last_purchase_time": pd.to_datetime(bought["last_time"], utc=True).dt.tz_convert(None),
                      "returned": np.zeros(len(bought), dtype=bool)}), PURCHASES_SCHEMA).cache()
    return HoldoutSources(
        spark=spark, holdout=holdout, last_train_day=last_train_day, events=events,
        catalog=data.validated_catalog.read_spark(spark, run_date),
        catalog_arrow=data.validated_catalog.read_arrow(run_date),
        train=data.holdout_train.read_spark(spark, run_date, ["item_id", "weight"]), persons=persons,
        purchases=purchases, data=data)


def _key(*parts) -> str:
    return json.dumps(parts, sort_keys=True, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o)
                      else list(o))


def _excluded(src: HoldoutSources, cfg: RecsConfig) -> DataFrame:
    """(person_id, item_id) of the sampled persons that `cfg.filters` keeps out of their lists, as of the cutoff."""
    key = _key("excluded", cfg.filters)
    if key not in src.cached:
        src.cached[key] = excluded_pairs(src.purchases, run_date=src.last_train_day,
                                         bought_lookback_days=cfg.filters.bought_lookback_days,
                                         exclude_returned=cfg.filters.exclude_returned
                                         ).select("person_id", "item_id").cache()
    return src.cached[key]


def retrieval_candidates(src: HoldoutSources, cfg: RecsConfig, *, seed: int, shared: bool = False) -> pd.DataFrame:
    """The pipeline's retrieval on the holdout for the sampled persons: person_id, item_id, score, source, rank
    (1..candidates.n). Cached per retrieval settings, so pipelines that differ only after retrieval share it.

    `shared`: the night's own pipeline, whose ALS fit is the night's holdout model (`holdout_model`: read when
    the rank stage saved it first, else fitted and saved for it); `src.cached["holdout_model"]` says which."""
    holdout = src.holdout
    key = _key("candidates", cfg.als, cfg.interactions.half_life_days, cfg.candidates.n, cfg.candidates.index,
               cfg.filters, cfg.content, seed)
    if key in src.cached:
        return src.cached[key]
    matrix = holdout.matrix_for(cfg.interactions.half_life_days)
    if shared and src.data is not None:
        model, src.cached["holdout_model"] = holdout_model(src.data, holdout, cfg.als,
                                                           half_life_days=cfg.interactions.half_life_days, seed=seed)
    else:
        model = MFModel.fit(matrix, cfg.als, seed=seed)
    # the retrieve stage's rule: learned vectors for items enough persons touched, content vectors for the rest
    persons_per_item = dict(zip(matrix.item_ids.tolist(), np.diff(matrix.matrix.tocsc().indptr).tolist()))
    c = cfg.content
    keep, content_ids, content_vectors, _ = content_items(
        src.catalog_arrow, model.items.ids, model.items.vectors, persons_per_item,
        min_interactions=c.min_interactions, alpha=c.ridge_alpha, max_features=c.max_features,
        norm_quantile=c.norm_quantile)
    rows = np.flatnonzero(np.isin(model.items.ids, keep))
    learned = MFModel(model.persons, Factors(model.items.ids[rows], model.items.vectors[rows]))
    index = learned.item_index(holdout.available_items, extra=Factors(content_ids, content_vectors))
    excluded = _excluded(src, cfg).toPandas()  # the sampled persons' pairs only: bounded
    found = learned.recommend(holdout.persons, index,
                            exclude_persons=excluded["person_id"].to_numpy(dtype=object),
                            exclude_items=excluded["item_id"].to_numpy(dtype=object),
                            n=min(cfg.candidates.n, len(index.ids)), index_settings=cfg.candidates.index)
    src.cached[key] = found.select(["person_id", "item_id", "score", "source", "rank"]).to_pandas()
    return src.cached[key]


def _fallback_length(src: HoldoutSources, cfg: RecsConfig) -> int:
    """How many popular items each segment list holds on a fallback night (`fill_length`), for `cfg`."""
    key = _key("fallback_length", cfg.filters, cfg.top_n)
    if key not in src.cached:
        src.cached[key] = fill_length(_excluded(src, cfg), cfg.top_n, True)
    return src.cached[key]


def _segment_items(src: HoldoutSources, cfg: RecsConfig, *, window_days: int, length: int) -> DataFrame:
    """`segment_popularity` over the `window_days` ending the day before the cutoff, `length` items per segment.
    Built once per window and popularity settings, as long as a fallback night's lists (the longest asked for),
    then cut: pop_rank does not depend on the length."""
    days = min(window_days, cfg.window_days)
    key = _key("segments", days, cfg.event_weights, cfg.segments, cfg.activity.max_weight_per_person_item)
    built = src.cached.get(key)
    if built is None or built[1] < length:
        if built is not None:
            built[0].unpersist()
        longest = max(length, _fallback_length(src, cfg))
        start = window(src.last_train_day, days)[0]
        events = src.events.where(F.col("event_time") >= F.to_timestamp(F.lit(f"{start} 00:00:00")))
        available = src.catalog.where(F.col("is_available")).select("item_id")
        items = segment_popularity(events, available, dimensions=tuple(cfg.segments.dimensions),
                                   event_weights=cfg.event_weights.as_dict(), min_events=cfg.segments.min_events,
                                   length=longest,
                                   max_weight_per_person_item=cfg.activity.max_weight_per_person_item).cache()
        src.cached[key] = built = (items, longest)
    return built[0].where(F.col("pop_rank") <= length)


def _features(src: HoldoutSources) -> DataFrame:
    if "features" not in src.cached:
        src.cached["features"] = item_features(src.catalog, src.train).cache()
    return src.cached["features"]


def _collect(lists: DataFrame) -> pd.DataFrame:
    """The finished lists of the sampled persons (bounded: persons x top_n rows) for the metrics."""
    return lists.select("person_id", "item_id", "score", "rank").toPandas()


def pipeline_lists(src: HoldoutSources, cfg: RecsConfig, candidates: pd.DataFrame, *, ranker=None) -> pd.DataFrame:
    """The lists the rank stage would build from `candidates` with `cfg` (see the module docstring):
    person_id, item_id, score, rank (1..top_n). `ranker`: the ranking step, default `ranker_for(cfg)`."""
    spark = src.spark
    cands = spark.createDataFrame(candidates[["person_id", "item_id", "score", "source"]], CANDIDATES_SCHEMA)
    inputs = ListInputs(cands, src.persons, _segment_items(src, cfg, window_days=cfg.window_days,
                                                           length=fill_length(None, cfg.top_n, False)),
                        _excluded(src, cfg), _features(src), dimensions=tuple(cfg.segments.dimensions),
                        top_n=cfg.top_n)
    return _collect((ranker or ranker_for(cfg))(inputs, cfg.rank))


def popularity_lists(src: HoldoutSources, cfg: RecsConfig, *, window_days: int | None, per_segment: bool,
                     ranker=None) -> pd.DataFrame:
    """The lists a `fallback` night publishes for the baseline of `window_days` (None: the whole window) and
    `per_segment` (else everyone gets the `global` list): the fill alone, ranked by the ranking step."""
    spark, dims = src.spark, tuple(cfg.segments.dimensions)
    persons = (src.persons if per_segment else
               src.persons.select("person_id", *[F.lit(None).cast("string").alias(d) for d in dims]))
    inputs = ListInputs(spark.createDataFrame([], CANDIDATES_SCHEMA), persons,
                        _segment_items(src, cfg, window_days=window_days or cfg.window_days,
                                       length=_fallback_length(src, cfg)),
                        _excluded(src, cfg), _features(src), dimensions=dims, top_n=cfg.top_n)
    return _collect((ranker or ranker_for(cfg))(inputs, cfg.rank))


def release(src: HoldoutSources) -> None:
    """Drops what `src` cached in Spark."""
    for value in src.cached.values():
        frame = value[0] if isinstance(value, tuple) else value
        if isinstance(frame, DataFrame):
            frame.unpersist()
    src.persons.unpersist()
    src.purchases.unpersist()


# ------------------------------------------------------------------------------------------------ the previous lists

def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested settings dict as {dotted key: value}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def published_pipeline(model_meta: dict, cfg: RecsConfig) -> tuple[RecsConfig, list[str]]:
    """The pipeline of a published model: `cfg` with the list-shaping settings recorded in its model.json
    (`config`, the night's `RecsConfig.settings()`: ALS, half-life, retrieval, filters, `rank.*`, fill) applied.
    Settings it did not record (an older model) or that this version no longer has stay as tonight's, and are
    returned by name (`als.threads` is how fast, not what: always tonight's)."""
    recorded = flatten(model_meta.get("config") or {})
    if not recorded and model_meta.get("als"):  # a model.json written before the whole config was
        recorded = {f"als.{k}": v for k, v in model_meta["als"].items()}
    settings = {k: v for k, v in recorded.items() if k.startswith(LIST_SETTINGS) and k != "als.threads"}
    out, unknown = cfg.replace(pinned=()), []
    for key, value in sorted(settings.items()):
        try:
            out = out.with_settings({key: value})
        except ConfigError:
            unknown.append(key)
    if unknown:
        log.warning("the published model's settings %s are unknown to this version: tonight's are used", unknown)
    missing = sorted(k for k in flatten(json_settings(cfg)) if k.startswith(LIST_SETTINGS) and k != "als.threads"
                     and k not in settings)
    return out.replace(pinned=cfg.pinned), missing


def json_settings(cfg: RecsConfig) -> dict:
    """`cfg.settings()` as model.json stores it (tuples as lists)."""
    return json.loads(json.dumps(cfg.settings(), default=list))


def pipeline_settings(cfg: RecsConfig) -> dict:
    """The list-shaping settings of a pipeline, for the gate report: {dotted key: value}."""
    return {k: v for k, v in sorted(flatten(json_settings(cfg)).items()) if k.startswith(LIST_SETTINGS)}
