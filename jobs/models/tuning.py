"""Searching model settings: a seeded, time-budgeted search that any scorer can drive.

`search` tries settings from `candidate_settings` (the current settings first, then a seeded random order
of the space) and asks `score(settings)` for each until the budget would be exceeded; the caller decides
what a score means (`jobs.evaluation.tuning` scores on a night's holdout). No I/O here.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import yaml


log = logging.getLogger(__name__)

TUNED_KEYS = ("factors", "iterations", "regularization", "alpha")

# Values tried per key: wide enough to cover small shops and large catalogs, coarse enough that a few dozen
# trials sample it meaningfully.
SEARCH_SPACE: dict[str, tuple] = {
    "factors": (16, 32, 64, 128, 192),
    "iterations": (5, 10, 15, 25),
    "regularization": (0.001, 0.01, 0.05, 0.1, 0.5, 1.0),
    "alpha": (1.0, 5.0, 10.0, 20.0, 40.0, 80.0),
}


def _cost(settings: dict) -> float:
    """Relative fit cost: ALS work grows with iterations and, roughly, the square of the factors."""
    return max(settings["iterations"], 1) * settings["factors"] ** 2


def candidate_settings(space: dict[str, tuple], *, seed: int, current: dict) -> list[dict]:
    """Every point of `space` in a seeded random order, the current settings first (without repeats)."""
    keys = list(TUNED_KEYS)
    grid = np.array(np.meshgrid(*[np.arange(len(space[k])) for k in keys], indexing="ij")).reshape(len(keys), -1).T
    order = np.random.default_rng(seed).permutation(len(grid))
    out = [dict(current)]
    for row in grid[order]:
        settings = {k: space[k][int(i)] for k, i in zip(keys, row)}
        if settings != out[0]:
            out.append(settings)
    return out


def render_config(best: dict, trials: list[dict], *, run_date: str, k: int, persons: int, seconds: float,
                  seed: int) -> str:
    """The YAML config file: a comment header with every trial, then `als:` with the best settings."""
    def row(t: dict) -> str:
        mark = "*" if t["trial"] == best["trial"] else " "
        note = "  (current settings)" if t["trial"] == 0 else ""
        return (f"# {mark}{t['trial']:>4} {t['factors']:>8} {t['iterations']:>10} {t['regularization']:>14g} "
                f"{t['alpha']:>7g} {t['ndcg_at_k']:>9.4f} {t['precision_at_k']:>9.4f} {t['recall_at_k']:>9.4f} "
                f"{t['seconds']:>8.2f}{note}")

    header = [
        f"# recs tune: ALS settings for the holdout of {run_date}; NDCG@{k} over {persons} test persons,",
        f"# {len(trials)} trial(s) of a seeded random search (seed {seed}) in {seconds:.0f} s; * = the best,",
        "# written below. Use with: recs run --conf THIS_FILE  (or load_config(conf_file=THIS_FILE)).",
        "#",
        f"#  trial  factors iterations regularization   alpha   ndcg@{k:<3} prec@{k:<3}  recall@{k:<3} seconds",
        *[row(t) for t in trials],
    ]
    body = yaml.safe_dump({"als": {key: best[key] for key in TUNED_KEYS}}, sort_keys=False)
    return "\n".join(header) + "\n" + body


def search(score: Callable[[dict], dict], *, current: dict, budget_seconds: float, seed: int,
           max_trials: int | None = None, space: dict[str, tuple] | None = None, metric: str = "ndcg_at_k"
           ) -> list[dict]:
    """Tries settings until the budget would be exceeded; returns the trials (trial 0 = `current`).

    `score(settings)` returns a dict of figures including `metric` and `seconds`. A trial is started only
    while its estimated time (the costliest trial so far, scaled by iterations x factors^2) fits in what
    is left; trial 0 always runs.
    """
    started = time.perf_counter()
    space = space or SEARCH_SPACE
    missing = [key for key in TUNED_KEYS if not space.get(key)]
    if missing:
        raise ValueError(f"search space has no values for {missing}; keys: {list(TUNED_KEYS)}")
    trials: list[dict] = []
    # A trial's time is extrapolated linearly in `_cost` from the costliest trial so far: fixed overheads
    # (retrieval, scoring) make that pessimistic for a bigger trial, and more accurate as bigger ones run.
    biggest = (0.0, 1.0)  # (seconds, cost) of the costliest trial so far
    cheapest = _cost({"factors": min(space["factors"]), "iterations": min(space["iterations"])})
    for settings in candidate_settings(space, seed=seed, current=current):
        if max_trials is not None and len(trials) >= max_trials:
            break
        left = budget_seconds - (time.perf_counter() - started)
        rate = biggest[0] / biggest[1]
        if trials and rate * _cost(settings) > left:
            if rate * cheapest > left:
                break  # not even the cheapest setting fits any more
            continue  # this one would overrun; a cheaper one may fit
        figures = score(settings)
        trial = {"trial": len(trials), **settings, **figures}
        trials.append(trial)
        if _cost(settings) >= biggest[1]:
            biggest = (figures["seconds"], _cost(settings))
        log.info("tune trial %d: %s %s %.4f (%.2f s)", trial["trial"], settings, metric, trial[metric],
                 trial["seconds"])
    return trials


def best_trial(trials: list[dict], metric: str = "ndcg_at_k") -> dict:
    """The best trial; ties go to the earlier one (the current settings first)."""
    return max(trials, key=lambda t: (t[metric], -t["trial"]))
