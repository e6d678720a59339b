"""Which search finds better settings per second on a night's holdout: Optuna's TPE or the seeded random search?

Both search the tune stage's wide space (`jobs.evaluation.tuning.search_space("wide", ...)`: factors,
iterations, log-scale regularization and alpha, the half-life grid) from the default settings, scored by the
tune stage's own scorer (`holdout_scorer`: ALS on the holdout matrix of the trial's half-life, exact top-k for
at most `tuning.max_test_persons` test persons). For each data root, method and seed, the best NDCG@k found
within 25%, 50% and 100% of the budget (time summed over trials). The holdouts are the ones the benchmarks'
self-tuned runs leave (run bench_movielens.py and bench_online_retail.py first, same --work).

    python bench/bench_tuning_search.py --work /tmp/recs-bench --budget 60 --seeds 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import append_results  # noqa: E402

ROOTS = ("movielens-100k", "online-retail")


def latest_holdout_date(root: Path) -> str | None:
    days = sorted(p.name[3:] for p in (root / "holdout").glob("dt=*"))
    return days[-1] if days else None


def best_within(trials: list[dict], seconds: float) -> float:
    spent, best = 0.0, 0.0
    for t in trials:
        spent += t["seconds"]
        if spent > seconds:
            break
        best = max(best, t["ndcg_at_k"])
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/recs-bench")
    p.add_argument("--budget", type=float, default=60.0, help="seconds per search")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    from jobs.config import load_config
    from jobs.evaluation.holdout import load_holdout
    from jobs.evaluation.tuning import holdout_scorer, search_space, settings_of
    from jobs.models.tuning import search
    from jobs.storage.datasets import Datasets

    lines = [f"TPE vs seeded random search on the tune stage's wide space, default settings as trial 0; "
             f"budget {args.budget:g}s per search, seeds 0..{args.seeds - 1}; best NDCG@k found within 25/50/100% "
             "of the budget (mean over seeds), trials run.", "",
             "| holdout | test persons | method | 25% | 50% | 100% | trials | trial 0 NDCG |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ROOTS:
        root = Path(args.work) / name
        run_date = latest_holdout_date(root)
        if run_date is None:
            print(f"{root}: no holdout (run the benchmark's self-tuned row first); skipped")
            continue
        cfg = load_config(data_root=str(root))
        holdout = load_holdout(Datasets(str(root)), run_date, holdout_days=cfg.gate.holdout_days,
                               max_test_persons=cfg.tuning.max_test_persons,
                               segment_dimensions=cfg.segments.dimensions, seed=cfg.seed,
                               half_life_days=cfg.interactions.half_life_days)
        current = settings_of(cfg)
        space = search_space("wide", current, ())
        score = holdout_scorer(holdout, cfg, k=cfg.gate.k)
        for method in ("tpe", "random"):
            results = []
            for seed in range(args.seeds):
                started = time.perf_counter()
                trials = search(score, space=space, current={k: current[k] for k in space},
                                budget_seconds=args.budget, seed=seed, method=method)
                results.append(trials)
                print(f"{name} {method} seed {seed}: {len(trials)} trials in {time.perf_counter() - started:.0f}s, "
                      f"best {max(t['ndcg_at_k'] for t in trials):.4f}", flush=True)
            cells = [sum(best_within(t, args.budget * share) for t in results) / len(results)
                     for share in (0.25, 0.5, 1.0)]
            lines.append(f"| {name} {run_date} | {len(holdout.persons)} | {method} | "
                         + " | ".join(f"{c:.4f}" for c in cells)
                         + f" | {sum(len(t) for t in results) / len(results):.0f} | {results[0][0]['ndcg_at_k']:.4f} |")
    print("\n".join(lines))
    if not args.no_append:
        append_results("bench_tuning_search: TPE vs random search per unit of time", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
