"""`recs tune`: a seeded random search over the ALS settings, scored like the model gate scores a night.

Each trial trains ALS on a date's temporal holdout (written by the interactions stage) and scores NDCG@k
of the night's retrieval on the gate's seeded sample of test persons, with the gate's own code
(`jobs.stages.gate.load_holdout` / `evaluate_settings`). The first trial is always the current settings, so the
result can only match or beat them on this holdout. Trials run until the time budget would be exceeded.

Output: a YAML config file holding only the best `als:` settings (loadable with
`load_config(conf_file=...)` / `recs run --conf FILE`), with every trial's figures in a comment header, and
`<out_file>.trials.json` with the same figures as data.

Tuning and gating the same date's holdout measure on the same persons: the settings found are a little
flattered there. Judge them on a later night's gate report.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import uuid

import numpy as np
import yaml

from jobs.storage import io

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


def _write_text_atomic(path: str, text: str) -> None:
    fs, p = io.fs_for(path)
    parent = p.rsplit("/", 1)[0] if "/" in p else "."
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{p}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "w") as f:
        f.write(text)
    fs.mv(tmp, p)


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


def tune(cfg, run_date: str, *, budget_seconds: float, out_file: str, seed: int,
         max_trials: int | None = None, space: dict[str, tuple] | None = None) -> dict:
    """Random search over als.factors / iterations / regularization / alpha on `run_date`'s holdout.

    Parameters
    ----------
    cfg : RecsConfig
        The base config: `als.threads`, `seed` (ALS init), `gate.k`, `gate.max_test_persons` and
        `candidates.scann_brute_force_below` are used as they are; the current `als` settings are trial 0.
    run_date : str
        The date whose holdout to tune on; the interactions stage must have run for it with `gate.enabled`.
    budget_seconds : float
        Wall-clock budget. A trial is started only while its estimated time (the costliest trial so far,
        scaled by iterations x factors^2) fits in what is left; trial 0 always runs.
    out_file : str
        Where to write the YAML config; the trials go to `<out_file>.trials.json`.
    seed : int
        Seed of the search order (ALS itself uses `cfg.seed`, as the night does).
    max_trials : int, optional
        Stop after this many trials even with budget left.
    space : dict, optional
        Values to try per key (default `SEARCH_SPACE`).

    Returns
    -------
    dict
        ``out_file``, ``trials_file``, ``best`` (settings and figures), ``current`` (trial 0's figures),
        ``trials`` (count), ``test_persons``, ``seconds``.

    Raises
    ------
    jobs.stages.gate.HoldoutMissingError
        When no holdout was written for `run_date`.
    ValueError
        When the holdout has no test person with train history: there is nothing to score.
    """
    from jobs.stages import gate

    started = time.perf_counter()
    space = space or SEARCH_SPACE
    missing = [key for key in TUNED_KEYS if not space.get(key)]
    if missing:
        raise ValueError(f"search space has no values for {missing}; keys: {list(TUNED_KEYS)}")
    holdout = gate.load_holdout(cfg, run_date)
    if len(holdout.persons) == 0 or holdout.matrix.nnz == 0:
        raise ValueError(f"holdout of {run_date} has no test person with train history "
                         f"({holdout.counts}): nothing to tune on; pick a later date or a longer window")
    k = cfg.gate.k
    current = {key: getattr(cfg.als, key) for key in TUNED_KEYS}
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
        als = dataclasses.replace(cfg.als, **settings)
        metrics = gate.evaluate_settings(holdout, als=als, seed=cfg.seed, k=k,
                                         brute_force_below=cfg.candidates.scann_brute_force_below,
                                         beyond_accuracy=False)
        trial = {"trial": len(trials), **settings, **{m: metrics[m] for m in (
            "ndcg_at_k", "precision_at_k", "recall_at_k", "map_at_k", "hit_rate_at_k", "n_users", "seconds")}}
        trials.append(trial)
        if _cost(settings) >= biggest[1]:
            biggest = (metrics["seconds"], _cost(settings))
        log.info("tune trial %d: %s NDCG@%d %.4f (%.2f s)", trial["trial"], settings, k, trial["ndcg_at_k"],
                 trial["seconds"])
    best = max(trials, key=lambda t: (t["ndcg_at_k"], -t["trial"]))  # ties: the earlier trial (current first)
    seconds = time.perf_counter() - started
    text = render_config(best, trials, run_date=run_date, k=k, persons=len(holdout.persons), seconds=seconds,
                         seed=seed)
    _write_text_atomic(out_file, text)
    trials_file = f"{out_file}.trials.json"
    io.write_json(trials_file, gate.json_ready({
        "run_date": run_date, "k": k, "seed": seed, "budget_seconds": budget_seconds,
        "test_persons": len(holdout.persons), "holdout": holdout.counts, "space": space,
        "best_trial": best["trial"], "trials": trials}))
    return gate.json_ready({"out_file": out_file, "trials_file": trials_file, "best": best, "current": trials[0],
                            "trials": len(trials), "test_persons": len(holdout.persons),
                            "seconds": round(seconds, 1)})
