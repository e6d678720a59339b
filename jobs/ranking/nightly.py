"""The rank stage's learned part, one call: train tonight's ranker on the night's holdout, judge it, and when it
serves re-rank tonight's candidates with it (business terms and diversity after it) inside Spark.

Training data without leakage: the candidates are those of the night's holdout model (ALS fitted on the holdout's
train part with the night's settings; fitted once a night by the gate or by this stage, whichever runs first,
`jobs.evaluation.holdout_model`), for a seeded sample of up to `rank.ranker.max_train_persons` holdout persons.
On a temporal holdout their features come from the interactions before its cutoff only (as of the cutoff), and
their labels from what each person did from the cutoff on (`features.GRADES`). On a per-person holdout each
person has their own cut: features from their own interactions up to it (recencies counted from the end of their
cut day), labels from what the split held out of them (`features.per_person_training_examples`). The sample's
feature table is the only thing collected to the driver.
"""
from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.config import RecsConfig
from jobs.evaluation.person_split import PER_PERSON, TEMPORAL
from jobs.ranking.features import FEATURES, candidate_features, per_person_training_examples, training_examples
from jobs.ranking.ltr import RankerResult, rerank_spark, train_ranker
from jobs.storage.datasets import Datasets

log = logging.getLogger(__name__)

REPORT = "ranker.json"


def training_frame(spark: SparkSession, cfg: RecsConfig, data: Datasets, run_date: str):
    """(pandas frame of labelled training candidates with features, the holdout's counts and cutoff) or
    (None, reason) when there is no holdout to learn from."""
    from jobs.evaluation.holdout import HoldoutMissingError, load_holdout, model_recs
    from jobs.evaluation.holdout_model import holdout_model
    from jobs.identity import attribute_events, load_state_nodes

    try:
        holdout = load_holdout(data, run_date, holdout_days=cfg.gate.holdout_days,
                               max_test_persons=cfg.rank.ranker.max_train_persons,
                               segment_dimensions=tuple(cfg.segments.dimensions), seed=cfg.seed,
                               half_life_days=cfg.interactions.half_life_days)
    except HoldoutMissingError as e:
        return None, f"no holdout to train on ({e})"
    if len(holdout.persons) == 0 or holdout.matrix.nnz == 0:
        return None, "the holdout has no person with history before the cutoff and activity after it"
    # the night's holdout ALS: the gate fitted and saved it when it ran first (jobs/evaluation/holdout_model.py)
    model, fit = holdout_model(data, holdout, cfg.als, half_life_days=cfg.interactions.half_life_days, seed=cfg.seed)
    recs = model_recs(holdout, cfg.als, seed=cfg.seed, k=cfg.candidates.n, index_settings=cfg.candidates.index,
                      model=model)
    candidates = spark.createDataFrame(recs[["person_id", "item_id", "score"]].astype({"score": "float64"}))
    inputs = dict(interactions=data.holdout_train.read_spark(spark, run_date),
                  catalog=data.validated_catalog.read_spark(spark, run_date),
                  persons=data.persons.read_spark(spark, run_date), segment_dimensions=tuple(cfg.segments.dimensions))

    def events_of_last(days: int) -> DataFrame:  # the callee cuts them exactly
        events = data.window_events(spark, run_date, days, columns=[
            "anonymous_id", "user_id", "session_id", "event_time", "event_type", "item_id"])
        return attribute_events(events, load_state_nodes(spark, data.layout, run_date))

    if holdout.kind == PER_PERSON:
        cuts = data.holdout_cuts.read_spark(spark, run_date).join(
            spark.createDataFrame([(str(p),) for p in holdout.persons], "person_id string"), "person_id", "left_semi")
        span = cuts.agg(F.min("cut_day").alias("first"), F.max("cut_day").alias("last")).first()
        as_of = holdout.cutoff.date().isoformat()  # the end of D: where the global timeline ends
        examples = per_person_training_examples(
            candidates, events_of_last((dt.date.fromisoformat(run_date) - span["first"]).days + 1), cuts=cuts,
            held=data.holdout_test.read_spark(spark, run_date), as_of=as_of, **inputs)
        first, last = span["first"].isoformat(), span["last"].isoformat()
        cut_info = {"holdout": PER_PERSON, "cutoff": f"per person, {first} to {last}", "cut_days": [first, last],
                    "features_as_of": "the end of each person's cut day (item-level figures: the end of D)"}
    else:
        cut_day = holdout.cutoff.date().isoformat()
        days = holdout.counts["holdout_days"]
        # one day more than the holdout, so the cut day itself is read whatever the cutoff rule
        examples = training_examples(candidates, events_of_last(days + 1), cut_day=cut_day, **inputs)
        cut_info = {"holdout": TEMPORAL, "cutoff": cut_day, "holdout_days": days}
    frame = examples.toPandas()
    return frame, {**cut_info, "candidates_per_person": cfg.candidates.n, "holdout_model": fit}


def learned_candidates(spark: SparkSession, cfg: RecsConfig, run_date: str, candidates: DataFrame,
                       interactions: DataFrame, catalog: DataFrame, persons: DataFrame) -> tuple[DataFrame, dict]:
    """(tonight's candidates re-scored by the ranker, business terms and diversity, the report) when the ranker
    serves; (the candidates unchanged, the report saying why) when it is off or falls back. The report is also
    written to `reports/dt=D/ranker.json`."""
    data = Datasets(cfg.data_root)
    ranker = cfg.rank.ranker
    report: dict = {"run_date": run_date, "enabled": ranker.enabled, "serves": False, "features": list(FEATURES)}
    if not ranker.enabled:
        report["reason"] = "rank.ranker.enabled is false: the retrieval order (blend) serves"
    else:
        frame, info = training_frame(spark, cfg, data, run_date)
        if frame is None:
            report["reason"] = f"{info}: tonight falls back to the retrieval order (blend)"
        else:
            result: RankerResult = train_ranker(frame, ranker, seed=cfg.seed, business=cfg.rank.business,
                                                diversity=cfg.rank.diversity,
                                                beyond_noise=info["holdout"] == PER_PERSON)
            report.update(training=info, serves=result.serves, reason=result.reason, counts=result.counts,
                          validation=result.validation, importances=result.importances)
            if result.serves:
                next_day = (dt.date.fromisoformat(run_date) + dt.timedelta(days=1)).isoformat()
                features = candidate_features(candidates, interactions, catalog, persons, as_of=next_day,
                                              segment_dimensions=tuple(cfg.segments.dimensions))
                ranked = rerank_spark(features, model=result.model, business=cfg.rank.business,
                                      diversity=cfg.rank.diversity, spark=spark)
                # written once: the lists read the candidates several times (score ranges, exposure cap), and
                # each read of the plan would compute every feature and score every person again
                data.ranked_candidates.write_spark(ranked, run_date)
                candidates = data.ranked_candidates.read_spark(spark, run_date)
    (log.info if report["serves"] else log.warning)("ranker for %s: %s", run_date, report["reason"])
    report["path"] = data.write_report(run_date, REPORT, report)
    return candidates, report
