"""Stage 6 of 9, gate: nothing worse than popularity, or much worse than the live lists, reaches the storefront.

The gate measures recipes, not factors, on one holdout: it trains ALS with the night's settings (`cfg.als`,
`cfg.seed`) on the temporal holdout's train part (everything before the cutoff, written by the interactions
stage), retrieves top-k with the night's own retrieval (`jobs.models.mf.MFModel.recommend`: available items,
nothing bought before the cutoff) for a seeded sample of test persons, and scores what they then put in the cart
or bought. On the same holdout and persons it scores the popularity baselines (all-time, the last N days for
each of `gate.popularity_windows_days`, per segment) and the recipe of the last published model (its settings
from its model.json), so every figure is comparable (`jobs.evaluation.holdout`).

Verdict (`decide`), with required = best baseline's NDCG@k x (1 + gate.min_lift_over_popularity):

| the night's model                          | previous recipe           | verdict    | what is published       |
|--------------------------------------------|---------------------------|------------|-------------------------|
| >= required, and >= previous x (1 - drop)  | any / none                | `pass`     | the night's lists       |
| >= required, but < previous x (1 - drop)   | much better               | `fail`     | nothing: previous stays |
| < required                                 | >= required               | `fail`     | nothing: previous stays |
| < required                                 | < required, or none       | `fallback` | popularity lists        |

`fallback` is how a shop's first night, or a bad model, still gets lists no worse than "most popular": the
retrieve and rank stages read the verdict and build the lists of the best baseline (its window, per segment or
not), the publish stage publishes them without marking the model published, and `recs run` exits with status 2.
Too few evaluable persons (`gate.min_test_persons`) cannot be judged: `pass` by rule `too_little_data`.

Writes `models/dt=D/evaluation.json` (the figures) and `reports/dt=D/gate.json` (figures, thresholds, checks,
verdict, reasons, fallback); on a refusal raises `ModelGateError` after writing both.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from jobs.config import AlsConfig, GateConfig, RecsConfig
from jobs.evaluation.holdout import baseline_recs, evaluate, evaluate_settings, load_holdout
from jobs.storage.datasets import Datasets
from jobs.storage.io import json_ready

log = logging.getLogger(__name__)

MODEL = "model"
PREVIOUS = "previous_recipe"
PASS, FAIL, FALLBACK, SKIPPED = "pass", "fail", "fallback", "skipped"


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

def fallback_lists(baseline: str) -> dict:
    """What the rank stage builds for a `fallback` night: the lists of baseline `baseline`."""
    if baseline.startswith("popularity_recent_"):
        return {"baseline": baseline, "window_days": int(baseline.removeprefix("popularity_recent_").rstrip("d")),
                "per_segment": False}
    return {"baseline": baseline, "window_days": None, "per_segment": baseline == "popularity_segment"}


def decide(*, model: dict | None, baselines: dict[str, dict], previous: dict | None, gate: GateConfig, k: int,
           evaluated_persons: int) -> dict:
    """The verdict from figures measured on one holdout (see the module's table). Pure.

    Parameters
    ----------
    model, previous : dict or None
        Metrics (`evaluate_all` keys) of the night's recipe and of the last published recipe (None: none).
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
                       "reason": f"NDCG@{k} {ndcg:.4f} {'>=' if ok else '<'} {required:.4f} required: the best "
                                 f"popularity baseline ({best_name}) has {best:.4f} and the model must beat it "
                                 f"by {gate.min_lift_over_popularity:.0%}"})
    else:
        warnings.append("no popularity baseline could be computed (no train interaction on an available item)")
    if previous is not None:
        prev_ndcg = previous["ndcg_at_k"]
        floor = prev_ndcg * (1 - gate.max_drop_vs_previous)
        ok = ndcg >= floor
        checks.append({"name": "drop_vs_previous", "metric": f"ndcg@{k}", "value": ndcg,
                       "previous_value": prev_ndcg, "max_drop": gate.max_drop_vs_previous, "required": floor,
                       "passed": bool(ok),
                       "reason": f"NDCG@{k} {ndcg:.4f} {'>=' if ok else '<'} {floor:.4f} required: the recipe of "
                                 f"the published lists scores {prev_ndcg:.4f} on the same holdout and the model "
                                 f"may fall at most {gate.max_drop_vs_previous:.0%} below it"})
    reasons = [c["reason"] for c in checks]
    failed = {c["name"] for c in checks if not c["passed"]}
    if not failed:
        return {"verdict": PASS, "rule": "checks", "checks": checks, "warnings": warnings, "reasons": reasons}
    if "lift_over_popularity" not in failed:
        return {"verdict": FAIL, "rule": "drop_vs_previous", "checks": checks, "warnings": warnings,
                "reasons": reasons}
    if previous is not None and previous["ndcg_at_k"] >= required:
        return {"verdict": FAIL, "rule": "previous_beats_popularity", "checks": checks, "warnings": warnings,
                "reasons": [*reasons, f"the published lists' recipe ({previous['ndcg_at_k']:.4f}) still beats "
                                      f"popularity: they stay live"]}
    return {"verdict": FALLBACK, "rule": "below_popularity", "checks": checks, "warnings": warnings,
            "fallback": fallback_lists(best_name),
            "reasons": [*reasons, f"neither the model nor the published lists' recipe beats popularity: the "
                                  f"{best_name} lists are published instead"]}


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


def _previous_als(previous: dict, current: AlsConfig) -> AlsConfig:
    """The last published model's ALS settings (from its model.json); missing keys as tonight's."""
    stored = ((previous.get("model") or {}).get("config") or {}).get("als") or previous.get("model", {}).get("als") or {}
    known = {f.name for f in dataclasses.fields(AlsConfig)}
    return dataclasses.replace(current, **{k: v for k, v in stored.items() if k in known and k != "threads"})


# ------------------------------------------------------------------------------------------------ stage

def run(spark, cfg: RecsConfig, run_date: str) -> dict:
    """Evaluates the night's recipe on D's holdout, writes the figures and the verdict, refuses a bad model.

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
    index_settings = cfg.candidates.index  # the night's index rule, so the gate scores the night's retrieval
    previous = data.models.latest_published_before(run_date)
    metrics: dict[str, dict] = {}
    if n_eval > 0 and holdout.matrix.nnz > 0:
        metrics[MODEL] = evaluate_settings(holdout, cfg.als, seed=cfg.seed, k=k, index_settings=index_settings)
        for name, recs in baseline_recs(holdout, k=k, windows_days=gate.popularity_windows_days).items():
            metrics[name] = evaluate(holdout, recs, k=k)
        if previous is not None:
            previous_als = _previous_als(previous, cfg.als)
            metrics[PREVIOUS] = (metrics[MODEL] if previous_als == cfg.als else
                                 evaluate_settings(holdout, previous_als, seed=cfg.seed, k=k,
                                                   index_settings=index_settings))
    baselines = {n: m for n, m in metrics.items() if n.startswith("popularity")}
    decision = decide(model=metrics.get(MODEL), baselines=baselines, previous=metrics.get(PREVIOUS), gate=gate,
                      k=k, evaluated_persons=n_eval if MODEL in metrics else 0)

    evaluation = {  # data.models / write_report make these strict JSON (io.json_ready) as they write
        "run_date": run_date, "model_version": meta.get("model_version"), "k": k,
        "cutoff": holdout.cutoff.isoformat(),
        "holdout": holdout.counts, "als": dataclasses.asdict(cfg.als), "seed": cfg.seed, "metrics": metrics}
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
            "config_changes": config_changes(previous["model"].get("config"), cfg)},
        "report_path": report_path, "seconds": round(time.time() - started, 1)}
    data.write_report(run_date, "gate.json", report)
    for w in decision["warnings"]:
        log.warning("gate %s: %s", run_date, w)
    summary = {"verdict": decision["verdict"], "rule": decision["rule"], "report": report_path,
               "model_version": meta.get("model_version"), "evaluated_persons": n_eval,
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
