"""Stage 6 of 9, gate: nothing worse than popularity, or much worse than the live lists, reaches the storefront.

The gate judges the lists that would be published, not the model alone, on one holdout: the one the interactions
stage wrote, temporal (train = everything before the cutoff) or, where few persons come back, per person
(`jobs.evaluation.person_split`: each sampled person's last items held out; lists rebuilt as of D); the report
says which and why (`holdout.holdout`, `holdout.holdout_reason`). For a seeded sample of test persons it rebuilds
(`jobs.evaluation.night_lists`) what the nightly run would publish, as of the cutoff:

- `model`: tonight's pipeline: ALS with the night's settings on the holdout train, the night's retrieval
  (`candidates.n`, `candidates.index`, new items by attributes, `jobs.exclusions` under `filters.*`), then the
  rank stage's ranking step (`jobs.ranking.ranker_for`) with tonight's `rank.*`, the popular fill of each
  person's segment and the category demotion, cut at `top_n`;
- `previous_recipe`: the previously published pipeline, the same way with its recorded settings (ALS, half-life,
  retrieval, filters and `rank.*` from its model.json), re-scored on tonight's holdout;
- the popularity baselines (all-time, the last N days for each of `gate.popularity_windows_days`, per segment)
  exactly as a `fallback` night would publish them (the fill alone, ranked the same way);
- `retrieval`: tonight's raw retrieval top-k, for information (what ranking, fill and diversity add or cost).

Each is scored against what the persons then put in the cart or bought, so every figure is comparable. A change
that makes the lists worse (ranking weights inverted, a broken fill) is refused even when the ALS model is the same.

Verdict (`decide`), with required = best baseline's NDCG@k x (1 + gate.min_lift_over_popularity):

| the night's lists                          | previous lists            | verdict    | what is published       |
|--------------------------------------------|---------------------------|------------|-------------------------|
| >= required, and >= previous x (1 - drop)  | any / none                | `pass`     | the night's lists       |
| >= required, but < previous x (1 - drop)   | much better               | `fail`     | nothing: previous stays |
| < required                                 | >= required               | `fail`     | nothing: previous stays |
| < required                                 | < required, or none       | `fallback` | popularity lists        |

`fallback` is how a shop's first night, or a bad model, still gets lists no worse than "most popular": the
retrieve and rank stages read the verdict and build the lists of the best baseline (its window, per segment or
not), the publish stage publishes them without marking the model published, and `recs run` exits with status 2.
Too few evaluable persons (`gate.min_test_persons`) cannot be judged: `pass` by rule `too_little_data`.

Writes `models/dt=D/evaluation.json` (the figures) and `reports/dt=D/gate.json` (figures, the settings each
pipeline's lists were built with, thresholds, checks, verdict, reasons, fallback); on a refusal raises
`ModelGateError` after writing both.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from jobs.config import GateConfig, RecsConfig
from jobs.evaluation.holdout import evaluate, load_holdout
from jobs.evaluation.night_lists import (flatten, holdout_sources, pipeline_lists, pipeline_settings,
                                         popularity_lists, published_pipeline, release, retrieval_candidates)
from jobs.storage.datasets import Datasets
from jobs.storage.io import json_ready

log = logging.getLogger(__name__)

MODEL = "model"  # tonight's lists
PREVIOUS = "previous_recipe"  # the previously published pipeline's lists, rebuilt on tonight's holdout
RETRIEVAL = "retrieval"  # tonight's raw retrieval top-k: for information, not judged
PASS, FAIL, FALLBACK, SKIPPED = "pass", "fail", "fallback", "skipped"


class ModelGateError(RuntimeError):
    """The model was refused by the quality gate; nothing of this run is published."""


# ------------------------------------------------------------------------------------------------ history

def config_changes(previous_config: dict | None, cfg: RecsConfig) -> dict:
    """Settings that differ from the previous model's (from its model.json `config`): {key: [then, now]}."""
    if not previous_config:
        return {}
    now = flatten(json_ready(cfg.settings()))
    then = flatten(previous_config)
    return {k: [then.get(k), now.get(k)] for k in sorted(set(now) | set(then)) if then.get(k) != now.get(k)}


# ------------------------------------------------------------------------------------------------ verdict

def fallback_lists(baseline: str) -> dict:
    """What the rank stage builds for a `fallback` night: the lists of baseline `baseline`."""
    if baseline.startswith("popularity_recent_"):
        return {"baseline": baseline, "window_days": int(baseline.removeprefix("popularity_recent_").rstrip("d")),
                "per_segment": False}
    return {"baseline": baseline, "window_days": None, "per_segment": baseline == "popularity_segment"}


def baseline_names(windows_days) -> list[str]:
    """The popularity baselines the gate scores: all-time, the last N days for each N, per segment."""
    return ["popularity_global", *[f"popularity_recent_{d}d" for d in windows_days], "popularity_segment"]


def decide(*, model: dict | None, baselines: dict[str, dict], previous: dict | None, gate: GateConfig, k: int,
           evaluated_persons: int) -> dict:
    """The verdict from figures measured on one holdout (see the module's table). Pure.

    Parameters
    ----------
    model, previous : dict or None
        Metrics (`evaluate_all` keys) of the night's lists and of the previously published pipeline's lists
        rebuilt on the same holdout (None: none).
    baselines : dict
        Baseline name -> metrics.

    Returns
    -------
    dict
        ``verdict`` (pass | fail | fallback), ``rule``, ``checks`` (each with value, threshold, passed),
        ``reasons``, ``warnings`` and, for a fallback, ``fallback`` (`fallback_lists`).
    """
    checks: list[dict] = []
    warnings: list[str] = []
    if model is None or evaluated_persons < max(gate.min_test_persons, 1):
        return {"verdict": PASS, "rule": "too_little_data", "checks": checks, "warnings": warnings,
                "reasons": [(f"only {evaluated_persons} test person(s) with history could be evaluated "
                             f"(gate.min_test_persons = {gate.min_test_persons}): too little data to judge, "
                             "the model is allowed through by rule")]}
    ndcg = model["ndcg_at_k"]
    best_name, required = None, 0.0
    if baselines:
        best_name = max(baselines, key=lambda name: (baselines[name]["ndcg_at_k"], name))
        best = baselines[best_name]["ndcg_at_k"]
        required = best * (1 + gate.min_lift_over_popularity)
        ok = ndcg >= required
        checks.append({"name": "lift_over_popularity", "metric": f"ndcg@{k}", "value": ndcg,
                       "baseline": best_name, "baseline_value": best,
                       "min_lift": gate.min_lift_over_popularity, "required": required, "passed": bool(ok),
                       "reason": f"the night's lists score NDCG@{k} {ndcg:.4f} {'>=' if ok else '<'} {required:.4f} "
                                 f"required: the best popularity baseline ({best_name}) has {best:.4f} and the "
                                 f"lists must beat it by {gate.min_lift_over_popularity:.0%}"})
    else:
        warnings.append("no popularity baseline could be computed (no train interaction on an available item)")
    if previous is not None:
        prev_ndcg = previous["ndcg_at_k"]
        floor = prev_ndcg * (1 - gate.max_drop_vs_previous)
        ok = ndcg >= floor
        checks.append({"name": "drop_vs_previous", "metric": f"ndcg@{k}", "value": ndcg,
                       "previous_value": prev_ndcg, "max_drop": gate.max_drop_vs_previous, "required": floor,
                       "passed": bool(ok),
                       "reason": f"the night's lists score NDCG@{k} {ndcg:.4f} {'>=' if ok else '<'} {floor:.4f} "
                                 f"required: the previously published pipeline's lists, rebuilt on the same "
                                 f"holdout, score {prev_ndcg:.4f} and the night's may fall at most "
                                 f"{gate.max_drop_vs_previous:.0%} below them"})
    reasons = [c["reason"] for c in checks]
    failed = {c["name"] for c in checks if not c["passed"]}
    if not failed:
        return {"verdict": PASS, "rule": "checks", "checks": checks, "warnings": warnings, "reasons": reasons}
    if "lift_over_popularity" not in failed:
        return {"verdict": FAIL, "rule": "drop_vs_previous", "checks": checks, "warnings": warnings,
                "reasons": reasons}
    if previous is not None and previous["ndcg_at_k"] >= required:
        return {"verdict": FAIL, "rule": "previous_beats_popularity", "checks": checks, "warnings": warnings,
                "reasons": [*reasons, f"the previously published pipeline's lists ({previous['ndcg_at_k']:.4f}) "
                                      f"still beat popularity: they stay live"]}
    return {"verdict": FALLBACK, "rule": "below_popularity", "checks": checks, "warnings": warnings,
            "fallback": fallback_lists(best_name),
            "reasons": [*reasons, f"neither the night's lists nor the previously published pipeline's beat "
                                  f"popularity: the {best_name} lists are published instead"]}


def refusal_message(report: dict) -> str:
    """The loud, figure-carrying message of `ModelGateError`."""
    failed = [c["reason"] for c in report["checks"] if not c["passed"]]
    prev = report.get("previous")
    live = (f"the lists published on {prev['run_date']} (model {prev['model_version']}) stay live"
            if prev else "no model was published before; whatever lists were live stay live")
    return (f"MODEL GATE REFUSED model {report['model_version']} for {report['run_date']}: NOT PUBLISHED.\n"
            + "".join(f"  - {r}\n" for r in failed)
            + f"Nothing of this run reaches the storefront: {live}.\n"
            + f"All figures: {report['report_path']}")


# ------------------------------------------------------------------------------------------------ stage

def run(spark, cfg: RecsConfig, run_date: str) -> dict:
    """Rebuilds the night's lists and the previously published pipeline's on D's holdout, scores them and the
    popularity baselines, writes the figures and the verdict, refuses a bad night.

    Raises
    ------
    ModelGateError
        When the night is refused; `reports/dt=D/gate.json` says why.
    """
    started = time.time()
    data = Datasets(cfg.data_root)
    if not cfg.gate.enabled:
        note = "gate.enabled is false: the model was not evaluated and is not held back"
        report_path = data.write_report(run_date, "gate.json", {"run_date": run_date, "verdict": SKIPPED,
                                                                "note": note})
        log.warning("gate for %s skipped: %s", run_date, note)
        return {"verdict": SKIPPED, "note": note, "report": report_path}

    meta = data.models.meta(run_date)
    gate, k = cfg.gate, cfg.gate.k
    holdout = load_holdout(data, run_date, holdout_days=gate.holdout_days, max_test_persons=gate.max_test_persons,
                           segment_dimensions=cfg.segments.dimensions, seed=cfg.seed,
                           half_life_days=cfg.interactions.half_life_days)
    n_eval = len(holdout.persons)
    previous = data.models.latest_published_before(run_date)
    previous_cfg, previous_unrecorded = (published_pipeline(previous["model"], cfg) if previous is not None
                                         else (None, []))
    metrics: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    shared_model = None  # whether tonight's holdout ALS was read (the rank stage fitted it) or fitted here
    if n_eval > 0 and holdout.matrix.nnz > 0:
        src = holdout_sources(spark, data, holdout, cfg)
        try:
            timer = time.perf_counter()
            candidates = retrieval_candidates(src, cfg, seed=cfg.seed, shared=True)
            shared_model = src.cached.get("holdout_model")
            metrics[RETRIEVAL] = evaluate(holdout, candidates[candidates["rank"] <= k], k=k)
            metrics[MODEL] = evaluate(holdout, pipeline_lists(src, cfg, candidates), k=k)
            seconds[MODEL] = round(time.perf_counter() - timer, 1)
            timer = time.perf_counter()
            built: dict[tuple, dict | None] = {}  # e.g. all-time and the last 90 days are one list when window_days is 90
            for name in baseline_names(gate.popularity_windows_days):
                spec = fallback_lists(name)
                same = (min(spec["window_days"] or cfg.window_days, cfg.window_days), spec["per_segment"])
                if same not in built:
                    lists = popularity_lists(src, cfg, window_days=spec["window_days"],
                                             per_segment=spec["per_segment"])
                    built[same] = evaluate(holdout, lists, k=k) if len(lists) else None
                if built[same] is not None:
                    metrics[name] = built[same]
            seconds["baselines"] = round(time.perf_counter() - timer, 1)
            if previous_cfg is not None and pipeline_settings(previous_cfg) == pipeline_settings(cfg):
                # the same settings on the same holdout build the same lists: tonight's figure is theirs
                metrics[PREVIOUS] = {**metrics[MODEL], "same_settings_as_model": True}
            elif previous_cfg is not None:
                timer = time.perf_counter()
                previous_candidates = retrieval_candidates(src, previous_cfg, seed=cfg.seed)
                metrics[PREVIOUS] = evaluate(holdout, pipeline_lists(src, previous_cfg, previous_candidates), k=k)
                seconds[PREVIOUS] = round(time.perf_counter() - timer, 1)
        finally:
            release(src)
    baselines = {n: m for n, m in metrics.items() if n.startswith("popularity")}
    decision = decide(model=metrics.get(MODEL), baselines=baselines, previous=metrics.get(PREVIOUS), gate=gate,
                      k=k, evaluated_persons=n_eval if MODEL in metrics else 0)

    if metrics and len(baselines) < len(baseline_names(gate.popularity_windows_days)):
        decision["warnings"].append("some popularity baselines had no list (no event on an available item in "
                                    "their window before the cutoff): "
                                    + ", ".join(sorted(set(baseline_names(gate.popularity_windows_days))
                                                       - set(baselines))))
    evaluation = {  # data.models / write_report make these strict JSON (io.json_ready) as they write
        "run_date": run_date, "model_version": meta.get("model_version"), "k": k,
        "cutoff": holdout.cutoff.isoformat(),
        "holdout": holdout.counts, "als": dataclasses.asdict(cfg.als), "seed": cfg.seed, "metrics": metrics,
        # what each judged list was built with, so a reader can tell which change moved a figure
        "lists": {MODEL: pipeline_settings(cfg),
                  PREVIOUS: None if previous_cfg is None else pipeline_settings(previous_cfg)},
        "list_seconds": seconds, "holdout_model": shared_model}
    data.models.write_evaluation(run_date, evaluation)
    report_path = f"{data.layout.reports(run_date)}/gate.json"
    report = {
        **evaluation,
        "verdict": decision["verdict"], "rule": decision["rule"], "reasons": decision["reasons"],
        "warnings": decision["warnings"], "checks": decision["checks"], "fallback": decision.get("fallback"),
        "thresholds": dataclasses.asdict(gate),
        "previous": None if previous is None else {
            "run_date": previous["run_date"], "model_version": previous["model_version"],
            "path": previous["path"],
            "metrics": metrics.get(PREVIOUS),
            # list-shaping settings its model.json did not record (an older model): tonight's were used
            "settings_not_recorded": previous_unrecorded,
            "config_changes": config_changes(previous["model"].get("config"), cfg)},
        "report_path": report_path, "seconds": round(time.time() - started, 1)}
    data.write_report(run_date, "gate.json", report)
    for w in decision["warnings"]:
        log.warning("gate %s: %s", run_date, w)
    summary = {"verdict": decision["verdict"], "rule": decision["rule"], "report": report_path,
               "model_version": meta.get("model_version"), "evaluated_persons": n_eval,
               "holdout": holdout.kind, "holdout_reason": holdout.reason,
               "ndcg_at_k": (metrics.get(MODEL) or {}).get("ndcg_at_k"),
               "best_baseline_ndcg_at_k": max((m["ndcg_at_k"] for m in baselines.values()), default=None),
               "fallback": decision.get("fallback"),
               "previous_run_date": previous["run_date"] if previous else None,
               "seconds": round(time.time() - started, 1)}
    if decision["verdict"] == FAIL:
        message = refusal_message(report)
        log.error(message)
        raise ModelGateError(message)
    log.info("gate %s: %s by rule %s (NDCG@%d %s)", run_date, decision["verdict"], decision["rule"], k,
             summary["ndcg_at_k"])
    return json_ready(summary)
