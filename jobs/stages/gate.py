"""Stage 5 of 8, gate: the model quality gate. A model that does worse than popularity, or much worse than the
model that is live, is refused before anything is retrieved, ranked or published.

The gate measures the night's recipe, not the night's factors: it trains ALS with the same settings
(`cfg.als`, `cfg.seed`) on the temporal holdout's train part (everything before the cutoff, written by the
interactions stage), retrieves top-k with the same ScaNN retrieval the night uses (`jobs.stages.retrieve.retrieve`:
available items only, items bought before the cutoff excluded) for a seeded sample of test persons, and
scores what they then put in the cart or bought in the holdout days. The same persons get three popularity
baselines (all-time, recent, per segment), with the same exclusions (`jobs.evaluation.holdout`).

Verdict (`decide`): pass when

    NDCG@k(model) >= max NDCG@k(popularity baselines) * (1 + gate.min_lift_over_popularity)
    and NDCG@k(model) >= NDCG@k(previous published model) * (1 - gate.max_drop_vs_previous)

where the previous published model is the latest earlier date whose model folder holds a `PUBLISHED` marker
(written by the publish stage), with the figures of its own night (`evaluation.json`).
Two rules let a model through without the checks, and the report names them: `too_little_data` (fewer than
`gate.min_test_persons` evaluable test persons, e.g. the first days of a shop) and `first_run` (no model was
ever published and `gate.allow_first_run`; a failed popularity check is then a warning).

Writes `models/dt=D/evaluation.json` (the figures) and `reports/dt=D/gate.json` (figures, thresholds,
checks, verdict, reasons); on a refusal raises `ModelGateError` after writing both.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from jobs.config import GateConfig, RecsConfig
from jobs.evaluation.holdout import baseline_recs, evaluate, evaluate_settings, load_holdout
from jobs.storage.datasets import Datasets
from jobs.storage.io import json_ready

log = logging.getLogger(__name__)

MODEL = "model"
BASELINES = ("popularity_global", "popularity_recent", "popularity_segment")


class ModelGateError(RuntimeError):
    """The model was refused by the quality gate; nothing of this run is published."""


# ------------------------------------------------------------------------------------------------ history

def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def config_changes(previous_config: dict | None, cfg: RecsConfig) -> dict:
    """Settings that differ from the previous model's (from its model.json `config`): {key: [then, now]}."""
    if not previous_config:
        return {}
    now = _flatten(json_ready(cfg.settings()))
    then = _flatten(previous_config)
    return {k: [then.get(k), now.get(k)] for k in sorted(set(now) | set(then)) if then.get(k) != now.get(k)}


# ------------------------------------------------------------------------------------------------ verdict

def decide(*, model: dict | None, baselines: dict[str, dict], previous: dict | None, gate: GateConfig, k: int,
           evaluated_persons: int) -> dict:
    """The verdict from the figures. Pure.

    Parameters
    ----------
    model : dict or None
        The model's metrics (`evaluate_all` keys); None when nothing could be evaluated.
    baselines : dict
        Baseline name -> metrics.
    previous : dict or None
        The last published model (`ModelStore.latest_published_before`).
    gate : GateConfig
        Thresholds and rules.
    k : int
        The cut-off the figures are at.
    evaluated_persons : int
        Test persons the figures average over.

    Returns
    -------
    dict
        ``verdict`` (``pass`` | ``fail``), ``rule`` (``checks``, ``first_run`` or ``too_little_data``),
        ``checks`` (each with value, threshold, passed), ``reasons`` (why the verdict) and ``warnings``.
    """
    checks: list[dict] = []
    warnings: list[str] = []
    if model is None or evaluated_persons < max(gate.min_test_persons, 1):
        return {"verdict": "pass", "rule": "too_little_data", "checks": checks, "warnings": warnings,
                "reasons": [(f"only {evaluated_persons} test person(s) with history could be evaluated "
                             f"(gate.min_test_persons = {gate.min_test_persons}): too little data to judge, "
                             "the model is allowed through by rule")]}
    ndcg = model["ndcg_at_k"]
    if baselines:
        best_name = max(baselines, key=lambda name: baselines[name]["ndcg_at_k"])
        best = baselines[best_name]["ndcg_at_k"]
        required = best * (1 + gate.min_lift_over_popularity)
        ok = ndcg >= required
        checks.append({"name": "lift_over_popularity", "metric": f"ndcg@{k}", "value": ndcg,
                       "baseline": best_name, "baseline_value": best,
                       "min_lift": gate.min_lift_over_popularity, "required": required, "passed": bool(ok),
                       "reason": f"NDCG@{k} {ndcg:.4f} {'>=' if ok else '<'} {required:.4f} required: the best "
                                 f"popularity baseline ({best_name}) has {best:.4f} and the model must beat it "
                                 f"by {gate.min_lift_over_popularity:.0%}"})
    else:
        warnings.append("no popularity baseline could be computed (no train interaction on an available item)")

    prev_eval = (previous or {}).get("evaluation") or {}
    prev_model = (prev_eval.get("metrics") or {}).get(MODEL) or {}
    if previous is not None and (prev_eval.get("k") != k or prev_model.get("ndcg_at_k") is None):
        warnings.append(f"the previous published model ({previous['run_date']}, {previous['model_version']}) "
                        f"has no NDCG@{k} in its evaluation.json: the drop-vs-previous check was not applied")
    elif previous is not None:
        prev_ndcg = float(prev_model["ndcg_at_k"])
        floor = prev_ndcg * (1 - gate.max_drop_vs_previous)
        ok = ndcg >= floor
        checks.append({"name": "drop_vs_previous", "metric": f"ndcg@{k}", "value": ndcg,
                       "previous_run_date": previous["run_date"], "previous_model_version": previous["model_version"],
                       "previous_value": prev_ndcg, "max_drop": gate.max_drop_vs_previous, "required": floor,
                       "passed": bool(ok),
                       "reason": f"NDCG@{k} {ndcg:.4f} {'>=' if ok else '<'} {floor:.4f} required: the previous "
                                 f"published model ({previous['run_date']}, {previous['model_version']}) had "
                                 f"{prev_ndcg:.4f} on its own holdout and the model may fall at most "
                                 f"{gate.max_drop_vs_previous:.0%} below it"})

    reasons = [c["reason"] for c in checks]
    failed = [c["reason"] for c in checks if not c["passed"]]
    if previous is None and gate.allow_first_run:
        if failed:
            warnings.append("FIRST RUN BELOW THE BAR, published anyway: " + "; ".join(failed))
        return {"verdict": "pass", "rule": "first_run", "checks": checks, "warnings": warnings,
                "reasons": ["no model was published before this one (gate.allow_first_run = true): allowed through "
                            "by rule" + (" although a check failed (see warnings)" if failed else ""), *reasons]}
    return {"verdict": "fail" if failed else "pass", "rule": "checks", "checks": checks, "warnings": warnings,
            "reasons": reasons}


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
    """Evaluates the night's ALS recipe on D's holdout, writes the figures and the verdict, refuses a bad model.

    `spark` is not used (the holdout is bounded and read with pyarrow); it keeps the stage interface.

    Raises
    ------
    ModelGateError
        When the model is refused; `reports/dt=D/gate.json` says why.
    """
    started = time.time()
    data = Datasets(cfg.data_root)
    if not cfg.gate.enabled:
        note = "gate.enabled is false: the model was not evaluated and is not held back"
        report_path = data.write_report(run_date, "gate.json", {"run_date": run_date, "verdict": "skipped",
                                                                "note": note})
        log.warning("gate for %s skipped: %s", run_date, note)
        return {"verdict": "skipped", "note": note, "report": report_path}

    meta = data.models.meta(run_date)
    gate, k = cfg.gate, cfg.gate.k
    holdout = load_holdout(data, run_date, holdout_days=gate.holdout_days,
                           recent_popularity_days=gate.recent_popularity_days, max_test_persons=gate.max_test_persons,
                           segment_dimensions=cfg.segments.dimensions, seed=cfg.seed)
    n_eval = len(holdout.persons)
    metrics: dict[str, dict] = {}
    if n_eval > 0 and holdout.matrix.nnz > 0:
        metrics[MODEL] = evaluate_settings(holdout, cfg.als, seed=cfg.seed, k=k,
                                           brute_force_below=cfg.candidates.scann_brute_force_below)
        for name, recs in baseline_recs(holdout, k=k).items():
            metrics[name] = evaluate(holdout, recs, k=k)
    previous = data.models.latest_published_before(run_date)
    decision = decide(model=metrics.get(MODEL), baselines={n: m for n, m in metrics.items() if n != MODEL},
                      previous=previous, gate=gate, k=k, evaluated_persons=n_eval if MODEL in metrics else 0)

    evaluation = json_ready({
        "run_date": run_date, "model_version": meta.get("model_version"), "k": k,
        "cutoff": holdout.cutoff.isoformat(), "recent_since": holdout.recent_since.isoformat(),
        "holdout": holdout.counts, "als": dataclasses.asdict(cfg.als), "seed": cfg.seed, "metrics": metrics})
    data.models.write_evaluation(run_date, evaluation)
    report_path = f"{data.layout.reports(run_date)}/gate.json"
    report = json_ready({
        **evaluation,
        "verdict": decision["verdict"], "rule": decision["rule"], "reasons": decision["reasons"],
        "warnings": decision["warnings"], "checks": decision["checks"],
        "thresholds": dataclasses.asdict(gate),
        "previous": None if previous is None else {
            "run_date": previous["run_date"], "model_version": previous["model_version"],
            "path": previous["path"],
            "metrics": ((previous.get("evaluation") or {}).get("metrics") or {}).get(MODEL),
            "config_changes": config_changes(previous["model"].get("config"), cfg)},
        "report_path": report_path, "seconds": round(time.time() - started, 1)})
    data.write_report(run_date, "gate.json", report)
    for w in decision["warnings"]:
        log.warning("gate %s: %s", run_date, w)
    summary = {"verdict": decision["verdict"], "rule": decision["rule"], "report": report_path,
               "model_version": meta.get("model_version"), "evaluated_persons": n_eval,
               "ndcg_at_k": (metrics.get(MODEL) or {}).get("ndcg_at_k"),
               "best_baseline_ndcg_at_k": max((m["ndcg_at_k"] for n, m in metrics.items() if n != MODEL),
                                              default=None),
               "previous_run_date": previous["run_date"] if previous else None,
               "seconds": round(time.time() - started, 1)}
    if decision["verdict"] == "fail":
        message = refusal_message(report)
        log.error(message)
        raise ModelGateError(message)
    log.info("gate %s: %s by rule %s (NDCG@%d %s)", run_date, decision["verdict"], decision["rule"], k,
             summary["ndcg_at_k"])
    return json_ready(summary)
