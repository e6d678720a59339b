"""`recs tune`: the model settings that score best on a night's holdout, written as a config file.

Each trial trains ALS on a date's temporal holdout (written by the interactions stage) and scores NDCG@k
of the night's retrieval on the gate's seeded sample of test persons, with the gate's own code
(`jobs.evaluation.holdout`). The search (`jobs.models.tuning.search`) tries the current settings first, so
the result can only match or beat them on this holdout.

Output: a YAML config file holding only the best `als:` settings (loadable with
`load_config(conf_file=...)` / `recs run --conf FILE`), with every trial's figures in a comment header, and
`<out_file>.trials.json` with the same figures as data.

Tuning and gating the same date's holdout measure on the same persons: the settings found are a little
flattered there. Judge them on a later night's gate report.
"""
from __future__ import annotations

import dataclasses
import time

from jobs.config import RecsConfig
from jobs.evaluation.holdout import evaluate_settings, load_holdout
from jobs.models.tuning import SEARCH_SPACE, TUNED_KEYS, best_trial, render_config, search
from jobs.storage import io
from jobs.storage.datasets import Datasets

FIGURES = ("ndcg_at_k", "precision_at_k", "recall_at_k", "map_at_k", "hit_rate_at_k", "n_users", "seconds")


def tune(cfg: RecsConfig, run_date: str, *, budget_seconds: float, out_file: str, seed: int,
         max_trials: int | None = None, space: dict[str, tuple] | None = None) -> dict:
    """Searches als.factors / iterations / regularization / alpha on `run_date`'s holdout; writes the best.

    Returns ``out_file``, ``trials_file``, ``best`` (settings and figures), ``current`` (trial 0's figures),
    ``trials`` (count), ``test_persons``, ``seconds``.

    Raises
    ------
    jobs.evaluation.holdout.HoldoutMissingError
        When no holdout was written for `run_date`.
    ValueError
        When the holdout has no test person with train history: there is nothing to score.
    """
    started = time.perf_counter()
    space = space or SEARCH_SPACE
    gate = cfg.gate
    holdout = load_holdout(Datasets(cfg.data_root), run_date, holdout_days=gate.holdout_days,
                           max_test_persons=gate.max_test_persons,
                           segment_dimensions=cfg.segments.dimensions, seed=cfg.seed)
    if len(holdout.persons) == 0 or holdout.matrix.nnz == 0:
        raise ValueError(f"holdout of {run_date} has no test person with train history "
                         f"({holdout.counts}): nothing to tune on; pick a later date or a longer window")
    k = gate.k

    def score(settings: dict) -> dict:
        metrics = evaluate_settings(holdout, dataclasses.replace(cfg.als, **settings), seed=cfg.seed, k=k,
                                    brute_force_below=cfg.candidates.scann_brute_force_below, beyond_accuracy=False)
        return {m: metrics[m] for m in FIGURES}

    current = {key: getattr(cfg.als, key) for key in TUNED_KEYS}
    trials = search(score, current=current, budget_seconds=budget_seconds, seed=seed, max_trials=max_trials,
                    space=space)
    best = best_trial(trials)
    seconds = time.perf_counter() - started
    io.write_text(out_file, render_config(best, trials, run_date=run_date, k=k, persons=len(holdout.persons),
                                          seconds=seconds, seed=seed))
    trials_file = f"{out_file}.trials.json"
    io.write_json(trials_file, {
        "run_date": run_date, "k": k, "seed": seed, "budget_seconds": budget_seconds,
        "test_persons": len(holdout.persons), "holdout": holdout.counts, "space": space,
        "best_trial": best["trial"], "trials": trials})
    return io.json_ready({"out_file": out_file, "trials_file": trials_file, "best": best, "current": trials[0],
                          "trials": len(trials), "test_persons": len(holdout.persons), "seconds": round(seconds, 1)})
