"""`recs ab-report` on the synthetic shop's own home-page experiment (`exp-home-1`: control shows best sellers,
treatment the person's tastes, an arm drawn per device): time against one Spark pass over the same validated events,
and the report's CTR per arm against the generator's truth (a click on a shown block with probability
`REC_CLICK_P[arm]`, spread over `REC_SLOTS` impression events, so CTR per impression = REC_CLICK_P / REC_SLOTS).

    python bench/bench_abreport.py                       # 20,000 users x 45 days, its own folder
    python bench/bench_abreport.py --users 5000 --days 30

Arms are drawn per device, so people with several devices are seen in two arms: the report drops and counts them.
This is not the issue's simulator benchmark (item 4: arms that differ by a planted amount, served from the
pipeline's lists), which needs the storefront simulator.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import PeakRSS, add_shop_args, append_results  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_shop_args(p)
    p.set_defaults(users=20_000, items=5_000, days=45)
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from pyspark.sql import functions as F

    from jobs.abtest.job import run
    from jobs.config import load_config
    from jobs.pipeline import run_stage
    from jobs.shop import generate_shop
    from jobs.shop.day import EXPERIMENT_ID, VARIANTS
    from jobs.shop.knobs import REC_CLICK_P, REC_SLOTS
    from jobs.spark import spark_session
    from jobs.storage.layout import Layout, window

    root = Path(args.work) / f"ab-{args.users}x{args.items}x{args.days}"
    end = (dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days - 1)).isoformat()
    if not (root / "raw" / "events" / f"dt={end}").exists():
        generate_shop(str(root), start=args.start, days=args.days, users=args.users, items=args.items, seed=1)
    arms = ", ".join(f"{{name: {v}, share: 0.5, serves: model}}" for v in VARIANTS)
    cfg = load_config(data_root=str(root), overrides=[f"experiment.id={EXPERIMENT_ID}",
                                                      f"experiment.arms=[{arms}]"])
    spark = spark_session(cfg.spark, app_name="recs-bench-abreport")
    layout = Layout(cfg.data_root)
    if not all((root / "validated" / "events" / f"dt={d}").exists() for d in window(end, args.days)):
        run_stage("validate", cfg, end, spark=spark)
    if not (root / "state" / "identity" / f"dt={end}").exists():
        run_stage("stitch", cfg, end, spark=spark)
    paths = [layout.validated("events", d) for d in window(end, args.days)]
    with PeakRSS() as mem:
        t = time.time()
        events = spark.read.parquet(*paths)
        n_events = events.agg(F.count("*").alias("n"), F.max(F.xxhash64(*events.columns))).first()["n"]
        baseline = time.time() - t
        t = time.time()
        report = run(spark, cfg, EXPERIMENT_ID, start=args.start, end=end)
        seconds = time.time() - t
    h = report["health"]
    ctr = report["arms"]
    truth = {v: REC_CLICK_P[v] / REC_SLOTS for v in VARIANTS}
    c = report["comparisons"]["treatment"]
    lines = [f"shop: {args.users:,} users x {args.days} days; {n_events:,} validated events; spark {cfg.spark.master}",
             "", "| run | seconds | x one Spark pass over the validated events |", "|---|---|---|",
             f"| ab-report {EXPERIMENT_ID}, {args.start} to {end} | {seconds:.1f} | {seconds / baseline:.1f} |", "",
             f"baseline pass {baseline:.1f}s; peak RSS (Python + JVM) {mem.peak_gb:.2f} GB; host shared with other "
             "agents (busy)",
             f"people per arm {report['people']}, dropped in two arms {h['two_arm_people']:,} (arms are drawn per "
             f"device), SRM p {h['srm']['p_value']:.3g}; verdict {report['verdict']}",
             "CTR per impression, report vs generator truth: " + ", ".join(
                 f"{v} {ctr[v]['ctr']:.4f} vs {truth[v]:.4f}" for v in VARIANTS)
             + f"; difference {c['ctr']['diff']:.4f}, 95% [{c['ctr']['ci'][0]:.4f}, {c['ctr']['ci'][1]:.4f}] "
               f"(truth {truth['treatment'] - truth['control']:.4f})",
             f"revenue per person (capped, CUPED): difference {c['revenue_per_person']['diff']:.3f}, 95% "
             f"[{c['revenue_per_person']['ci'][0]:.3f}, {c['revenue_per_person']['ci'][1]:.3f}], variance reduction "
             f"{(c['revenue_per_person']['variance_reduction'] or 0):.1%}; conversion difference "
             f"{c['conversion_rate']['diff']:.4f}, 95% [{c['conversion_rate']['ci'][0]:.4f}, "
             f"{c['conversion_rate']['ci'][1]:.4f}]"]
    append_results("bench_abreport: A/B readout of the synthetic shop's experiment", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
