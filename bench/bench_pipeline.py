"""End-to-end nightly run on a generated shop: time per stage, peak memory, and a baseline in the same
process (one plain Spark pass reading every event of the window), so figures compare as ratios.

    python bench/bench_pipeline.py                       # 100k users x 20k items x 90 days (~10M events)
    python bench/bench_pipeline.py --users 20000 --items 5000 --days 30
    python bench/bench_pipeline.py --nights 2            # the first night, then a steady-state night after it
The shop is generated once per size under --work (default /tmp/recs-bench) and reused; every run starts from
its raw data only. With --nights N the last N days run one after the other on the same DATA_ROOT, so the later
nights show what a night costs once validation, identity state and tuned settings carry over.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import PeakRSS, add_shop_args, append_results  # noqa: E402


DERIVED = ("validated", "quarantine", "state", "interactions", "persons", "segments", "models", "candidates",
           "staging", "recommendations", "identity", "exports", "reports", "holdout", "tuning", "flagged_ids")


def prepared_shop(args) -> tuple[Path, str, list[str], float | None]:
    """(DATA_ROOT, the last day, the nights to run in order, seconds spent generating or None): the shop of
    `args`' size generated once under --work, its derived outputs removed so a run starts from raw data only."""
    import datetime as dt

    from jobs.shop import generate_shop

    root = Path(args.work) / f"shop-{args.users}x{args.items}x{args.days}"
    run_date = (dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days - 1)).isoformat()
    nights = [(dt.date.fromisoformat(run_date) - dt.timedelta(days=n)).isoformat()
              for n in range(args.nights - 1, -1, -1)]
    gen_seconds = None
    if not (root / "raw" / "events" / f"dt={run_date}").exists():
        t = time.time()
        generate_shop(str(root), start=args.start, days=args.days, users=args.users, items=args.items, seed=1)
        gen_seconds = time.time() - t
    remove_derived(root)
    return root, run_date, nights, gen_seconds


def remove_derived(root: Path) -> None:
    import shutil

    for sub in DERIVED:
        shutil.rmtree(root / sub, ignore_errors=True)


def baseline_pass(spark, cfg, run_date: str) -> tuple[int, float]:
    """(events, seconds) of one plain Spark pass: read and hash every column of every event of the window."""
    from pyspark.sql import functions as F

    from jobs.storage.layout import Layout, window

    t = time.time()
    paths = [Layout(cfg.data_root).raw("events", d) for d in window(run_date, cfg.window_days)]
    events = spark.read.parquet(*[x for x in paths if Path(x).exists()])
    # decode every column (a bare count() reads only Parquet metadata)
    n_events = events.agg(F.count("*").alias("n"), F.max(F.xxhash64(*events.columns)).alias("h")).first()["n"]
    return n_events, time.time() - t


def timed_nights(spark, cfg, nights: list[str]) -> dict[str, dict[str, float]]:
    """{night: {stage: seconds}}: every stage of every night, in order, on one session."""
    from jobs.pipeline import STAGES, run_stage

    timings = {night: {} for night in nights}
    for night in nights:
        for stage in STAGES:
            t = time.time()
            run_stage(stage, cfg, night, spark=spark)
            timings[night][stage] = time.time() - t
    return timings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_shop_args(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--nights", type=int, default=1, help="run the last N days in order (first, then steady nights)")
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from jobs.config import load_config
    from jobs.pipeline import STAGES
    from jobs.spark import spark_session

    root, run_date, nights, gen_seconds = prepared_shop(args)
    cfg = load_config(data_root=str(root), overrides=args.set)
    with PeakRSS() as mem:
        t = time.time()
        spark = spark_session(cfg.spark, app_name="recs-bench")
        startup = time.time() - t
        n_events, baseline = baseline_pass(spark, cfg, run_date)
        timings = timed_nights(spark, cfg, nights)
    totals = {night: sum(t.values()) for night, t in timings.items()}
    header = " | ".join(f"{'first' if i == 0 else 'steady'} night {night}: s (x pass)"
                        for i, night in enumerate(nights))
    lines = [f"shop: {args.users:,} users x {args.items:,} items x {args.days} days = {n_events:,} events"
             + (f" (generated in {gen_seconds:.0f}s)" if gen_seconds else ""),
             f"config overrides: {args.set or 'none'}; spark {cfg.spark.master}",
             "", f"| stage | {header} |", "|---|" + "---|" * len(nights)]
    lines += [f"| {s} | " + " | ".join(f"{timings[n][s]:.1f} ({timings[n][s] / baseline:.1f})" for n in nights) + " |"
              for s in STAGES]
    lines += ["| **total** | " + " | ".join(f"**{totals[n]:.1f}** ({totals[n] / baseline:.1f})" for n in nights)
              + " |", "",
              f"baseline (one Spark pass: read and hash every column of every event): {baseline:.1f}s; "
              f"Spark start {startup:.1f}s; "
              f"peak RSS (Python + JVM) {mem.peak_gb:.2f} GB"]
    append_results("bench_pipeline: nightly run end to end", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
