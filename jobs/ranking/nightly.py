"""The rank stage's learned part, one call: train tonight's ranker on the temporal holdout, judge it, and when it
serves re-rank tonight's candidates with it (business terms and diversity after it) inside Spark.

Training data without leakage: the candidates are those of the night's holdout model (ALS fitted on the holdout's
train part, the interactions before its cutoff, with the night's settings; fitted once a night by the gate or by
this stage, whichever runs first, `jobs.evaluation.holdout_model`), for a seeded sample of up to
`rank.ranker.max_train_persons`
holdout persons; their features come from those pre-cutoff interactions only (as of the cutoff), and their labels
from what each person did from the cutoff on (`features.GRADES`). The sample's feature table is the only thing
collected to the driver.
"""
from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import DataFrame, SparkSession

from jobs.config import RecsConfig
from jobs.ranking.features import FEATURES, candidate_features, training_examples
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
        return None, f"no temporal holdout to train on ({e})"
    if holdout.kind != "temporal":  # features are computed as of one cutoff; a per-person holdout has one per person
        return None, f"tonight's holdout is {holdout.kind}, not temporal ({holdout.reason}): no leak-free training rows"
    if len(holdout.persons) == 0 or holdout.matrix.nnz == 0:
        return None, "the holdout has no person with history before the cutoff and activity after it"
    # the night's holdout ALS: the gate fitted and saved it when it ran first (jobs/evaluation/holdout_model.py)
    model, fit = holdout_model(data, holdout, cfg.als, half_life_days=cfg.interactions.half_life_days, seed=cfg.seed)
    recs = model_recs(holdout, cfg.als, seed=cfg.seed, k=cfg.candidates.n, index_settings=cfg.candidates.index,
                      model=model)
    cut_day = holdout.cutoff.date().isoformat()
    candidates = spark.createDataFrame(recs[["person_id", "item_id", "score"]].astype({"score": "float64"}))
    days = holdout.counts["holdout_days"]
    # one day more than the holdout, so the cut day itself is read whatever the cutoff rule; the cut is exact below
    events = data.window_events(spark, run_date, days + 1, columns=[
        "anonymous_id", "user_id", "session_id", "event_time", "event_type", "item_id"])
    after = attribute_events(events, load_state_nodes(spark, data.layout, run_date))
    examples = training_examples(candidates, after, data.holdout_train.read_spark(spark, run_date),
                                 data.validated_catalog.read_spark(spark, run_date),
                                 data.persons.read_spark(spark, run_date), cut_day=cut_day,
                                 segment_dimensions=tuple(cfg.segments.dimensions))
    frame = examples.toPandas()
    return frame, {"cutoff": cut_day, "holdout_days": days, "candidates_per_person": cfg.candidates.n,
                   "holdout_model": fit}


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
                                                diversity=cfg.rank.diversity)
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
