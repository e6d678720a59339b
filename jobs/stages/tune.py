"""Stage 4 of 9, tune: the night chooses its model settings on the gate's holdout, within a budget.

Tuned: `als.factors`, `als.iterations`, `als.regularization`, `als.alpha` and `interactions.half_life_days`
(among `jobs.decay.HALF_LIFE_GRID_DAYS`, whose weights the interactions stage already wrote), then, on wide and
full nights, the ranking's `rank.popularity_weight` on the lists the night would publish (rebuilt on the holdout
as the gate rebuilds them, with the model settings just chosen); never a key the user set (`RecsConfig.pinned`).
The current settings are the last night's (`state/tuning/history.jsonl`), or
the config's on the first night. Mode (`jobs.evaluation.tuning.tuning_mode`): `wide` the first night
(log-scale ranges wide enough for very different shops), `full` (wide again) every `tuning.full_every_days`,
else `warm` (narrow ranges around the current settings), with budgets `tuning.budget_seconds_wide` and
`tuning.budget_seconds_warm`. The best trial is adopted only when its NDCG@k beats the current settings' by
`tuning.min_relative_gain` on the same persons.

Writes `tuning/dt=D/settings.json` (the settings the night uses, the mode, every trial, the figures, the
seconds) and the night's line of the history; `jobs.pipeline.run_stage` applies the settings to every later
stage's config. With `tuning.enabled` false, or no holdout (`gate.enabled` false), the night uses the config.
"""
from __future__ import annotations

import logging
import time

from jobs.config import RecsConfig
from jobs.evaluation.holdout import load_holdout
from jobs.evaluation.tuning import (FULL, RANK_SEARCH_SHARE, RANK_WEIGHT_KEY, TUNED_KEYS, WIDE, adoption,
                                    search_holdout, search_rank_weight, search_space, settings_of, tuning_mode)
from jobs.storage import io
from jobs.storage.datasets import Datasets

log = logging.getLogger(__name__)

OFF = "off"


def current_settings(cfg: RecsConfig, history: list[dict]) -> dict:
    """The settings tonight starts from: the config's tunable keys, overlaid with the last night's tuned
    settings (pinned keys keep the config's value)."""
    current = settings_of(cfg, TUNED_KEYS)
    if history:
        current.update({k: v for k, v in history[-1].get("settings", {}).items() if k in current})
    return {k: v for k, v in current.items() if k not in cfg.pinned}


def run(spark, cfg: RecsConfig, run_date: str) -> dict:
    """The model's trials read the holdout with pyarrow and fit on this node; the ranking weight's trials rebuild
    lists with `spark` (None: that search is skipped)."""
    started = time.time()
    data = Datasets(cfg.data_root)
    history = data.tuning_history.before(run_date)
    current = current_settings(cfg, history)
    base = {"run_date": run_date, "pinned": sorted(k for k in cfg.pinned if k in TUNED_KEYS),
            "method": cfg.tuning.method, "changes": {}, "adopted": False}
    if not cfg.tuning.enabled or not cfg.gate.enabled:
        why = "tuning.enabled is false" if not cfg.tuning.enabled else "no holdout (gate.enabled is false)"
        # with tuning on but no holdout to judge on, the last tuned settings stay in use
        kept = current if cfg.tuning.enabled else {}
        doc = {**base, "mode": OFF, "settings": kept, "figures": {}, "trials": [],
               "reason": f"{why}: no search tonight; the night uses " + ("the current settings" if kept else "the config"),
               "seconds": round(time.time() - started, 1)}
        data.tuning.write(run_date, doc)
        return {"mode": OFF, "reason": doc["reason"], "settings": doc["settings"], "seconds": doc["seconds"]}

    # A night run again with the same config and history keeps its settings: the search is timed, so a new
    # one could pick others, and a re-run must give the same lists.
    basis = {"config": cfg.fingerprint(), "pinned": list(cfg.pinned), "current": current}
    done = data.tuning.read(run_date)
    if done is not None and done.get("basis") == io.json_ready(basis):
        log.info("tune %s: already tuned with this config and history; keeping its settings", run_date)
        return {"mode": done["mode"], "adopted": done["adopted"], "changes": done["changes"],
                "settings": done["settings"], "reason": "re-run: " + done.get("reason", ""), "reused": True,
                "seconds": round(time.time() - started, 1)}
    mode = tuning_mode(history, run_date, cfg.tuning.full_every_days)
    night = cfg.with_settings(current)
    holdout = load_holdout(data, run_date, holdout_days=cfg.gate.holdout_days,
                           max_test_persons=cfg.tuning.max_test_persons, segment_dimensions=cfg.segments.dimensions,
                           seed=cfg.seed, half_life_days=night.interactions.half_life_days)
    n_persons = len(holdout.persons)
    if n_persons < max(cfg.gate.min_test_persons, 1) or holdout.matrix.nnz == 0:
        reason = (f"only {n_persons} test person(s) with history (gate.min_test_persons = "
                  f"{cfg.gate.min_test_persons}): too little to tune on, the current settings stay")
        doc = {**base, "mode": mode, "settings": current, "figures": {}, "reason": reason, "trials": [],
               "holdout": holdout.counts, "seconds": round(time.time() - started, 1)}
        data.tuning.write(run_date, doc)
        log.warning("tune %s: %s", run_date, reason)
        return {"mode": mode, "reason": reason, "settings": current, "seconds": doc["seconds"]}

    space = search_space(mode, {**settings_of(night), **current}, cfg.pinned)
    wide = mode in (WIDE, FULL)
    budget = cfg.tuning.budget_seconds_wide if wide else cfg.tuning.budget_seconds_warm
    search_rank = wide and spark is not None and RANK_WEIGHT_KEY not in cfg.pinned
    search_started = time.time()
    trials = search_holdout(night, holdout, space=space, current={k: current[k] for k in space},
                            budget_seconds=budget * (1 - RANK_SEARCH_SHARE) if search_rank else budget,
                            tuning=cfg.tuning, seed=cfg.seed + len(history),
                            min_trials=cfg.tuning.min_trials_wide if wide else 0)
    search_seconds = time.time() - search_started
    chosen = adoption(trials, min_relative_gain=cfg.tuning.min_relative_gain)
    settings = {**current, **chosen["settings"]}
    changes, reason, rank = dict(chosen["changes"]), chosen["reason"], {}
    if search_rank:
        rank_started = time.time()
        # what the model's search left of the budget (at least its share); the grid's first trial always runs
        left = max(budget - (rank_started - search_started), budget * RANK_SEARCH_SHARE)
        rank_trials = search_rank_weight(spark, data, cfg.with_settings(settings), holdout, seed=cfg.seed,
                                         budget_seconds=left)
        rank = {**adoption(rank_trials, min_relative_gain=cfg.tuning.min_relative_gain), "trials": rank_trials,
                "seconds": round(time.time() - rank_started, 1)}
        settings.update(rank["settings"])
        changes.update(rank["changes"])
        reason += f"; ranking weight: {rank['reason']}"
    adopted = bool(changes)
    seconds = round(time.time() - started, 1)
    record = {**base, "mode": mode, "settings": settings, "adopted": adopted, "changes": changes,
              "figures": chosen["figures"], "reason": reason, "seconds": seconds}
    data.tuning.write(run_date, {**record, "basis": basis, "trials": trials, "holdout": holdout.counts,
                                 "budget_seconds": budget, "search_seconds": round(search_seconds, 1),
                                 "space": {k: repr(v) for k, v in space.items()},
                                 "rank_weight": {k: rank[k] for k in ("figures", "reason", "trials", "seconds")}
                                 if rank else None})
    data.tuning_history.put(record)
    log.info("tune %s (%s, %d trials in %.0f s): %s", run_date, mode, len(trials), search_seconds, reason)
    return {"mode": mode, "adopted": adopted, "changes": changes, "settings": settings,
            "figures": chosen["figures"], "reason": reason, "trials": len(trials),
            "rank_weight_trials": len(rank.get("trials", [])), "test_persons": n_persons,
            "holdout": holdout.kind, "holdout_reason": holdout.reason, "budget_seconds": budget,
            "search_seconds": round(search_seconds, 1), "seconds": seconds}
