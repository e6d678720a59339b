"""Model settings that score best on a night's holdout: the `tune` stage's search and `recs tune`.

Each trial trains ALS on a date's temporal holdout (written by the interactions stage) with the trial's
settings, on the confidences of the trial's half-life (`Holdout.matrix_for`: built once per half-life,
shared by the trials), and scores NDCG@k of exact top-k over the available items for a seeded sample of
test persons. The search itself (`jobs.models.tuning.search`, TPE or random) tries the current settings first,
so its best can only match or beat them on this holdout.

`recs tune` writes a YAML config file holding the best settings (loadable with `recs run --conf FILE`), with
every trial's figures in a comment header, and `<out_file>.trials.json` with the same figures as data.
Tuning and gating the same date's holdout measure on the same persons: the settings found are a little
flattered there; the adoption margin (`tuning.min_relative_gain`) is there for that.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Callable

from jobs.config import RecsConfig, TuningConfig
from jobs.decay import HALF_LIFE_GRID_DAYS, grid_position
from jobs.evaluation.holdout import Holdout, evaluate, evaluate_settings, load_holdout
from jobs.evaluation.night_lists import holdout_sources, pipeline_lists, release, retrieval_candidates
from jobs.models.tuning import HALF_LIFE_KEY, Space, best_trial, fixed, render_config, search, warm_space, wide_space
from jobs.storage import io
from jobs.storage.datasets import Datasets

FIGURES = ("ndcg_at_k", "precision_at_k", "recall_at_k", "map_at_k", "hit_rate_at_k", "n_users", "seconds")
TUNABLE_KEYS = ("als.factors", "als.iterations", "als.regularization", "als.alpha", HALF_LIFE_KEY)
# The ranking weight searched after the model's settings: how much item popularity moves the blend. Margin and the
# category cap are business choices, not relevance, so they are never tuned. The grid stops at 0.3: at 1 popularity
# outweighs the model (the real shop's small holdout adopted it and lost on the next month), and when popularity
# alone is better the gate's fallback publishes the popularity lists anyway.
RANK_WEIGHT_KEY = "rank.popularity_weight"
POPULARITY_WEIGHTS = (0.0, 0.03, 0.1, 0.3)
TUNED_KEYS = (*TUNABLE_KEYS, RANK_WEIGHT_KEY)
# Of a wide or full night's budget, what the model's search leaves to the ranking weight's grid.
RANK_SEARCH_SHARE = 0.2
WIDE, WARM, FULL = "wide", "warm", "full"


def settings_of(cfg: RecsConfig, keys=TUNABLE_KEYS) -> dict:
    """The config's values of dotted `keys`."""
    out = {}
    for dotted in keys:
        node = cfg
        for name in dotted.split("."):
            node = getattr(node, name)
        out[dotted] = node
    return out


def search_space(mode: str, current: dict, pinned: tuple[str, ...]) -> Space:
    """What a night searches: the wide space (`wide`, `full`) or the warm one around `current`, without pinned
    keys; the half-life only among the precomputed grid (a half-life off the grid was set by the user)."""
    half_lives = HALF_LIFE_GRID_DAYS if grid_position(current[HALF_LIFE_KEY]) is not None else ()
    space = wide_space(half_lives)
    if mode == WARM:
        space = warm_space(space, current)
    return fixed(space, [*pinned, *([] if half_lives else [HALF_LIFE_KEY])])


def tuning_mode(history: list[dict], run_date: str, full_every_days: int) -> str:
    """`wide` when no night was tuned before, `full` when the last wide or full search is `full_every_days` or
    more days old, else `warm`. `history`: the earlier nights' records, oldest first."""
    tuned = [r for r in history if r.get("mode") in (WIDE, WARM, FULL)]
    if not tuned:
        return WIDE
    last_wide = max((r["run_date"] for r in tuned if r["mode"] in (WIDE, FULL)), default=None)
    if last_wide is None or (dt.date.fromisoformat(run_date) - dt.date.fromisoformat(last_wide)).days >= full_every_days:
        return FULL
    return WARM


def holdout_scorer(holdout: Holdout, cfg: RecsConfig, *, k: int) -> Callable[[dict], dict]:
    """`score(settings)` for the search: `cfg` with the trial's dotted settings, fitted on the holdout matrix
    of the trial's half-life, exact top-k (no index build), accuracy figures only."""
    def score(settings: dict) -> dict:
        trial = cfg.with_settings(settings)
        metrics = evaluate_settings(holdout, trial.als, seed=cfg.seed, k=k,
                                    beyond_accuracy=False, half_life_days=trial.interactions.half_life_days,
                                    exact=True)
        return {m: metrics[m] for m in FIGURES}

    return score


def adoption(trials: list[dict], *, min_relative_gain: float) -> dict:
    """Whether the best trial replaces trial 0 (the current settings): only when its NDCG@k beats theirs by
    `min_relative_gain`. Returns ``adopted``, ``settings`` (what the night uses), ``changes`` ({key: [before,
    after]}), ``figures`` (current and best NDCG@k and MAP, the required NDCG@k) and ``reason``."""
    current, best = trials[0], best_trial(trials)
    required = current["ndcg_at_k"] * (1 + min_relative_gain)
    adopted = best["trial"] != 0 and best["ndcg_at_k"] > 0 and best["ndcg_at_k"] >= required
    figures = {"current": {m: current[m] for m in ("ndcg_at_k", "map_at_k", "recall_at_k")},
               "best": {m: best[m] for m in ("ndcg_at_k", "map_at_k", "recall_at_k")},
               "best_trial": best["trial"], "required_ndcg_at_k": required}
    chosen = best if adopted else current
    changes = ({key: [current["settings"][key], best["settings"][key]] for key in sorted(best["settings"])
                if best["settings"][key] != current["settings"][key]} if adopted else {})
    gain = best["ndcg_at_k"] / current["ndcg_at_k"] - 1 if current["ndcg_at_k"] > 0 else None
    reason = (f"best trial NDCG@k {best['ndcg_at_k']:.4f} vs current {current['ndcg_at_k']:.4f}"
              + (f" ({gain:+.1%})" if gain is not None else "")
              + (": adopted" if adopted else f": kept the current settings (needs >= {required:.4f})"))
    return {"adopted": bool(adopted), "settings": dict(chosen["settings"]), "changes": changes, "figures": figures,
            "reason": reason}


def search_holdout(cfg: RecsConfig, holdout: Holdout, *, space: Space, current: dict, budget_seconds: float,
                   tuning: TuningConfig, seed: int, min_trials: int = 0) -> list[dict]:
    """The trials of one search on `holdout` (trial 0 = `current`), by `tuning.method` within the budget, after
    the first `min_trials`."""
    return search(holdout_scorer(holdout, cfg, k=cfg.gate.k), space=space, current=current,
                  budget_seconds=budget_seconds, seed=seed, method=tuning.method,
                  max_trials=tuning.max_trials or None, patience=tuning.patience_trials or None,
                  min_trials=min_trials)


def search_rank_weight(spark, data: Datasets, cfg: RecsConfig, holdout: Holdout, *, seed: int,
                       budget_seconds: float) -> list[dict]:
    """Trials of `rank.popularity_weight` (trial 0 = `cfg`'s, then each of `POPULARITY_WEIGHTS`) on the lists the
    night would publish, rebuilt on `holdout` as the gate rebuilds them (`jobs.evaluation.night_lists`: `cfg`'s
    retrieval once, then the ranking step, fill and demotion per weight), scored like the model's trials. A fixed
    grid, walked while `budget_seconds` lasts (trial 0 always runs: it pays for what every trial shares, segment
    popularity and item features; the others are small Spark jobs over the sampled persons).

    The retrieval's ALS is the night's holdout model (`holdout_model`), saved here for the gate and the rank
    stage, which then read it instead of fitting it again."""
    started = time.perf_counter()
    src = holdout_sources(spark, data, holdout, cfg)
    try:
        candidates = retrieval_candidates(src, cfg, seed=seed, shared=True)
        trials = []
        for weight in dict.fromkeys([cfg.rank.popularity_weight, *POPULARITY_WEIGHTS]):
            if trials and time.perf_counter() - started >= budget_seconds:
                break
            trial_started = time.perf_counter()
            lists = pipeline_lists(src, cfg.with_settings({RANK_WEIGHT_KEY: weight}), candidates)
            metrics = evaluate(holdout, lists, k=cfg.gate.k, beyond_accuracy=False)
            trials.append({"trial": len(trials), "settings": {RANK_WEIGHT_KEY: weight},
                           **{m: metrics[m] for m in FIGURES if m != "seconds"},
                           "seconds": round(time.perf_counter() - trial_started, 3)})
    finally:
        release(src)
    return trials


def tune(cfg: RecsConfig, run_date: str, *, budget_seconds: float, out_file: str, seed: int,
         max_trials: int | None = None, mode: str = WIDE) -> dict:
    """`recs tune`: searches the tunable settings (minus pinned ones) on `run_date`'s holdout; writes the best.

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
    holdout = load_holdout(Datasets(cfg.data_root), run_date, holdout_days=cfg.gate.holdout_days,
                           max_test_persons=cfg.tuning.max_test_persons, segment_dimensions=cfg.segments.dimensions,
                           seed=cfg.seed, half_life_days=cfg.interactions.half_life_days)
    if len(holdout.persons) == 0 or holdout.matrix.nnz == 0:
        raise ValueError(f"holdout of {run_date} has no test person with train history "
                         f"({holdout.counts}): nothing to tune on; pick a later date or a longer window")
    current = settings_of(cfg, [k for k in TUNABLE_KEYS if k not in cfg.pinned])
    space = search_space(mode, {**settings_of(cfg), **current}, cfg.pinned)
    tuning = cfg.tuning if max_trials is None else cfg.tuning.__class__(
        **{**cfg.tuning.__dict__, "max_trials": max_trials})
    trials = search_holdout(cfg, holdout, space=space, current={k: current[k] for k in space},
                            budget_seconds=budget_seconds, tuning=tuning, seed=seed)
    best = best_trial(trials)
    seconds = time.perf_counter() - started
    k = cfg.gate.k
    io.write_text(out_file, render_config(best, trials, run_date=run_date, k=k, persons=len(holdout.persons),
                                          seconds=seconds, seed=seed, method=cfg.tuning.method))
    trials_file = f"{out_file}.trials.json"
    io.write_json(trials_file, {
        "run_date": run_date, "k": k, "seed": seed, "budget_seconds": budget_seconds, "method": cfg.tuning.method,
        "test_persons": len(holdout.persons), "holdout": holdout.counts, "space": {k: repr(v) for k, v in space.items()},
        "best_trial": best["trial"], "trials": trials})
    return io.json_ready({"out_file": out_file, "trials_file": trials_file, "best": best, "current": trials[0],
                          "trials": len(trials), "test_persons": len(holdout.persons), "seconds": round(seconds, 1)})
