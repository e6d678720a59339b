"""Searching model settings: a seeded, time-budgeted search that any scorer can drive. No I/O here.

Settings are dicts of dotted config keys (`{"als.alpha": 3.0, "interactions.half_life_days": 14.0}`). A search
space maps each key to a `Choice` of values or a `LogUniform` range. `search` tries the current settings
first, then settings proposed by Optuna's TPE sampler (`method="tpe"`) or drawn at random from the same
space (`"random"`), both seeded, asking `score(settings)` for each until the budget would be exceeded; the
caller decides what a score means (`jobs.evaluation.tuning` scores on a night's holdout).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np
import yaml

from jobs.progress import steps

METHODS = ("tpe", "random")


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of a few values (factors, iterations, a half-life of the precomputed grid)."""
    values: tuple


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """A positive number drawn uniformly on a log scale: regularization and alpha span orders of magnitude."""
    low: float
    high: float


Space = dict[str, "Choice | LogUniform"]

# Wide enough for both real shops (regularization 0.05 .. 30, alpha 0.1 .. 10 with purchase weight 10):
# log scales, so each order of magnitude gets the same share of the trials.
WIDE_ALS_SPACE: Space = {
    "als.factors": Choice((32, 64, 128)),
    "als.iterations": Choice((10, 15, 25)),
    "als.regularization": LogUniform(1e-3, 300.0),
    "als.alpha": LogUniform(0.01, 50.0),
}
HALF_LIFE_KEY = "interactions.half_life_days"


def wide_space(half_lives: tuple[float, ...] = ()) -> Space:
    """The first night's space: `WIDE_ALS_SPACE`, plus the half-life among `half_lives` when given."""
    return {**WIDE_ALS_SPACE, **({HALF_LIFE_KEY: Choice(tuple(half_lives))} if half_lives else {})}


def warm_space(wide: Space, current: dict, *, log_span: float = 4.0) -> Space:
    """A later night's space around `current`: ranges within x/÷ `log_span` of the current value (inside the
    wide range), choices narrowed to the current value and its neighbours."""
    out: Space = {}
    for key, dim in wide.items():
        now = current.get(key)
        if now is None:
            out[key] = dim
        elif isinstance(dim, LogUniform):
            out[key] = LogUniform(max(dim.low, now / log_span), min(dim.high, now * log_span))
        else:
            values = sorted(set(dim.values) | {now})
            i = values.index(now)
            out[key] = Choice(tuple(values[max(i - 1, 0):i + 2]))
    return out


def fixed(space: Space, keys) -> Space:
    """`space` without `keys` (pinned settings are not searched)."""
    return {k: v for k, v in space.items() if k not in set(keys)}


def _round(value: float) -> float:
    """3 significant digits: a tuned alpha reads 3.17, not 3.1698734."""
    return float(f"{value:.3g}")


def _including(dim, value):
    """The dimension widened to hold `value`, so the current settings are always a point of the space."""
    if value is None:
        return dim
    if isinstance(dim, LogUniform):
        return LogUniform(min(dim.low, value), max(dim.high, value))
    return dim if value in dim.values else Choice(tuple(sorted({*dim.values, value})))


def _cost(settings: dict) -> float:
    """Relative fit cost: ALS work grows with iterations and, roughly, the square of the factors."""
    return max(settings.get("als.iterations", 1), 1) * settings.get("als.factors", 1) ** 2


class _RandomProposer:
    def __init__(self, space: Space, seed: int, current: dict):
        self.space, self.rng, self.first = space, np.random.default_rng(seed), dict(current)

    def ask(self) -> dict:
        if self.first is not None:  # trial 0: the current settings
            first, self.first = self.first, None
            return first
        out = {}
        for key, dim in self.space.items():
            if isinstance(dim, LogUniform):
                out[key] = _round(math.exp(self.rng.uniform(math.log(dim.low), math.log(dim.high))))
            else:
                out[key] = dim.values[int(self.rng.integers(len(dim.values)))]
        return out

    def tell(self, value: float | None) -> None:
        pass


class _TpeProposer:
    """Optuna's TPE (seeded, multivariate) through its ask-and-tell interface."""

    def __init__(self, space: Space, seed: int, current: dict):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.distributions = {
            key: (optuna.distributions.FloatDistribution(dim.low, dim.high, log=True) if isinstance(dim, LogUniform)
                  else optuna.distributions.CategoricalDistribution(list(dim.values)))
            for key, dim in space.items()}
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.study.enqueue_trial(current)
        self.trial = None

    def ask(self) -> dict:
        self.trial = self.study.ask(self.distributions)
        if self.trial.number == 0:  # the enqueued current settings, as they are
            return dict(self.trial.params)
        return {k: (_round(v) if isinstance(self.distributions[k], self.optuna.distributions.FloatDistribution)
                    else v) for k, v in self.trial.params.items()}

    def tell(self, value: float | None) -> None:
        if value is None:  # not run (over budget): TPE should not learn from it
            self.study.tell(self.trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(self.trial, value)


def search(score: Callable[[dict], dict], *, space: Space, current: dict, budget_seconds: float, seed: int,
           method: str = "tpe", max_trials: int | None = None, patience: int | None = None,
           min_trials: int = 0, metric: str = "ndcg_at_k") -> list[dict]:
    """Tries settings until the budget would be exceeded; returns the trials (trial 0 = `current`).

    `score(settings)` returns a dict of figures including `metric` and `seconds`. A trial is started only
    while its estimated time (the costliest trial so far, scaled by iterations x factors^2) fits in what is
    left; trial 0 always runs. Settings proposed twice are not scored twice. With `patience`, the search
    also stops once that many trials in a row have not improved on the best (a small shop's search settles
    long before a budget sized for a big one runs out). The first `min_trials` trials run whatever the budget
    says: on a busy host a search takes longer instead of stopping after a handful of trials.
    """
    if method not in METHODS:
        raise ValueError(f"unknown search method {method!r}; methods: {METHODS}")
    started = time.perf_counter()
    current = {k: current[k] for k in space if k in current}
    space = {k: _including(dim, current.get(k)) for k, dim in space.items()}
    proposer = _TpeProposer(space, seed, current) if method == "tpe" else _RandomProposer(space, seed, current)
    trials: list[dict] = []
    seen: dict[tuple, dict] = {}
    biggest = (0.0, 1.0)  # (seconds, cost) of the costliest trial so far
    cheapest = _cost({k: min(d.values) for k, d in space.items() if isinstance(d, Choice)})
    misses = 0  # proposals not run (repeats, over budget): a bound, as a small space can be exhausted
    best_at = 0  # index of the best trial so far
    with steps(f"tune: trials within {budget_seconds:.0f} s", total=max_trials, unit="trials") as done:
        while (max_trials is None or len(trials) < max_trials) and misses <= 50:
            if patience and trials and len(trials) - 1 - best_at >= patience:
                break
            settings = proposer.ask()
            key = tuple(sorted(settings.items()))
            if key in seen:
                proposer.tell(seen[key][metric])
                misses += 1
                continue
            left = budget_seconds - (time.perf_counter() - started)
            rate = biggest[0] / biggest[1]
            if len(trials) >= max(min_trials, 1) and rate * _cost(settings) > left:
                proposer.tell(None)
                if rate * cheapest > left:
                    break  # not even the cheapest setting fits any more
                misses += 1
                continue  # this one would overrun; a cheaper one may fit
            figures = score(settings)
            proposer.tell(figures[metric])
            seen[key] = figures
            trial = {"trial": len(trials), "settings": settings, **figures}
            trials.append(trial)
            if trial[metric] > trials[best_at][metric]:
                best_at = trial["trial"]
            if _cost(settings) >= biggest[1]:
                biggest = (figures["seconds"], _cost(settings))
            done.advance(note=f"#{trial['trial']} {metric} {trial[metric]:.4f} ({trial['seconds']:.2f} s) {settings}")
    return trials


def best_trial(trials: list[dict], metric: str = "ndcg_at_k") -> dict:
    """The best trial; ties go to the earlier one (the current settings first)."""
    return max(trials, key=lambda t: (t[metric], -t["trial"]))


def nested(settings: dict) -> dict:
    """Dotted keys -> the nested mapping of a config file."""
    out: dict = {}
    for dotted, value in sorted(settings.items()):
        *parents, leaf = dotted.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return out


def render_config(best: dict, trials: list[dict], *, run_date: str, k: int, persons: int, seconds: float,
                  seed: int, method: str) -> str:
    """The YAML config file: a comment header with every trial, then the best settings."""
    keys = sorted(best["settings"])

    def row(t: dict) -> str:
        mark = "*" if t["trial"] == best["trial"] else " "
        note = "  (current settings)" if t["trial"] == 0 else ""
        values = " ".join(f"{t['settings'][key]:>12g}" for key in keys)
        return (f"# {mark}{t['trial']:>4} {values} {t['ndcg_at_k']:>9.4f} {t['precision_at_k']:>9.4f} "
                f"{t['recall_at_k']:>9.4f} {t['seconds']:>8.2f}{note}")

    header = [
        f"# recs tune: settings for the holdout of {run_date}; NDCG@{k} over {persons} test persons,",
        f"# {len(trials)} trial(s) of a seeded {method} search (seed {seed}) in {seconds:.0f} s; * = the best,",
        "# written below. Use with: recs run --conf THIS_FILE  (or load_config(conf_file=THIS_FILE)).",
        "#",
        "#  trial " + " ".join(f"{key.split('.')[-1][:12]:>12}" for key in keys)
        + f"   ndcg@{k:<3} prec@{k:<3}  recall@{k:<3} seconds",
        *[row(t) for t in trials],
    ]
    body = yaml.safe_dump(nested(best["settings"]), sort_keys=False)
    return "\n".join(header) + "\n" + body
