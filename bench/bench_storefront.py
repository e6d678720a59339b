"""The storefront simulator closing the loop: a generated shop, then weeks of simulated days whose home page shows
the PUBLISHED lists, with the nightly run retraining on those days' events, and an experiment of two arms that
differ by a planted amount: `popular` serves popularity lists, `model` the full pipeline. Prints the truth's
per-arm figures (expected rec revenue and rec conversion per exposed person, and what they actually bought from
their first exposure on) and the difference, and appends them to bench/RESULTS.md.

Protocol: `generate-shop` for --days days, one night on its last day, then --weeks x 7 simulated days; a night
runs after every --night-every simulated days (the storefront keeps the last published lists in between, as it
would after missed nights). A night of even a tiny shop takes 3-10 minutes on this 2-core host shared with six
other agents (load average 20-40), so by default a night runs every 14 days (two nights over four weeks, ~10-20
minutes in all); --night-every 1 gives the true nightly alternation on a quiet host.

    python bench/bench_storefront.py                                  # 1000 users x 300 items, 4 weeks
    python bench/bench_storefront.py --weeks 2 --night-every 7 --no-append
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import PeakRSS, append_results  # noqa: E402

EXPERIMENT = "bench-storefront"
ARMS_YAML = f"""experiment:
  id: {EXPERIMENT}
  arms:
    - {{name: popular, share: 0.5, serves: popularity}}
    - {{name: model, share: 0.5, serves: model}}
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--days", type=int, default=21, help="generated days before the simulation")
    p.add_argument("--start", default="2026-08-01")
    p.add_argument("--weeks", type=int, default=4)
    p.add_argument("--night-every", type=int, default=14, help="simulated days between nightly runs")
    p.add_argument("--quality-effect", type=float, default=0.6)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--work", default="/tmp/recs-bench-storefront")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = p.parse_args(argv)

    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from jobs.config import load_config
    from jobs.pipeline import run_all
    from jobs.shop import generate_shop
    from jobs.spark import spark_session
    from jobs.storefront import Behaviour, simulate_storefront
    from jobs.storefront.truth import arm_truth

    work = Path(args.work)
    root = work / "shop"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    conf = work / "arms.yaml"
    conf.write_text(ARMS_YAML)
    cfg = load_config(conf_file=conf, data_root=str(root),
                      overrides=["tuning.budget_seconds_wide=20", "tuning.budget_seconds_warm=10", *args.set])
    behaviour = Behaviour(quality_effect=args.quality_effect)
    t0 = time.perf_counter()
    night_seconds, sim_seconds, nights = [], [], []
    with PeakRSS() as rss:
        generate_shop(str(root), start=args.start, days=args.days, users=args.users, items=args.items, seed=args.seed)
        spark = spark_session(cfg.spark, app_name="bench-storefront")
        first_sim = dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days)

        def night(day: dt.date) -> None:
            t = time.perf_counter()
            summary = run_all(cfg, day.isoformat(), spark=spark)
            night_seconds.append(time.perf_counter() - t)
            nights.append((day.isoformat(), summary["status"]))
            print(f"night {day}: {summary['status']} in {night_seconds[-1]:.0f}s", flush=True)

        night(first_sim - dt.timedelta(days=1))
        sim_days = 7 * args.weeks
        for k in range(sim_days):
            day = first_sim + dt.timedelta(days=k)
            t = time.perf_counter()
            s = simulate_storefront(cfg, start=day.isoformat(), end=day.isoformat(), behaviour=behaviour)
            sim_seconds.append(time.perf_counter() - t)
            counts = {k2: v for k2, v in s[day.isoformat()].items() if k2 in ("exposures", "purchases", "events")}
            print(f"day {day}: {json.dumps(counts)}", flush=True)
            if (k + 1) % args.night_every == 0 and k + 1 < sim_days:
                night(day)
        spark.stop()
        arms = arm_truth(str(root), EXPERIMENT)
    total = time.perf_counter() - t0

    lines = [f"shop {args.users} users x {args.items} items, {args.days} generated days, then {sim_days} simulated "
             f"days with a night every {args.night_every} (nights: {', '.join(f'{d} {st}' for d, st in nights)}); "
             f"quality_effect {args.quality_effect}, seed {args.seed}; host shared with other agents (busy: timings "
             f"are loose)",
             "", "| arm | exposed persons | expected rec revenue / person | expected rec conversion | "
                 "revenue / person (realised) | conversion (realised) |", "|---|---|---|---|---|---|"]
    for arm, a in sorted(arms.items()):
        lines.append(f"| {arm} | {a['exposed_persons']} | {a['expected_revenue_per_person']:.2f} | "
                     f"{a['expected_rec_conversion']:.3f} | {a['revenue_per_person']:.2f} | {a['conversion']:.3f} |")
    if {"model", "popular"} <= set(arms):
        m, pop = arms["model"], arms["popular"]
        lines.append(f"| model - popular | | {m['expected_revenue_per_person'] - pop['expected_revenue_per_person']:+.2f} | "
                     f"{m['expected_rec_conversion'] - pop['expected_rec_conversion']:+.3f} | "
                     f"{m['revenue_per_person'] - pop['revenue_per_person']:+.2f} | "
                     f"{m['conversion'] - pop['conversion']:+.3f} |")
    lines += ["", f"wall {total:.0f}s: nights {sum(night_seconds):.0f}s ({len(night_seconds)}, median "
                  f"{sorted(night_seconds)[len(night_seconds) // 2]:.0f}s), simulated days {sum(sim_seconds):.0f}s "
                  f"(median {sorted(sim_seconds)[len(sim_seconds) // 2]:.2f}s a day); peak RSS {rss.peak_gb:.1f} GB"]
    if args.no_append:
        print("\n".join(lines))
    else:
        append_results("bench_storefront: the simulated storefront, popularity arm vs the full pipeline's arm", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
