"""Identity stitching: time for 90 days of the 100k-user synthetic shop from scratch, then one more night,
with pairwise precision/recall against the generator's truth, and a same-process baseline (one Spark pass
over the identity columns of every validated event).

    python bench/bench_stitch.py            # reuses the shop and validated days of bench_pipeline.py
    python bench/bench_stitch.py --users 20000 --items 5000 --days 30
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import PeakRSS, add_shop_args, append_results  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    add_shop_args(p)
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import pandas as pd
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from jobs.storage.layout import Layout, window
    from jobs.spark import spark_session
    from jobs.config import load_config
    from jobs.shop import generate_shop
    from jobs.pipeline import run_stage
    from jobs.identity.scoring import evaluate_stitching

    root = Path(args.work) / f"shop-{args.users}x{args.items}x{args.days}"
    last = dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days - 1)
    run_date, next_date = (last - dt.timedelta(days=1)).isoformat(), last.isoformat()
    if not (root / "raw" / "events" / f"dt={next_date}").exists():
        generate_shop(str(root), start=args.start, days=args.days, users=args.users, items=args.items, seed=1)
    cfg = load_config(data_root=str(root))
    layout = Layout(cfg.data_root)
    spark = spark_session(cfg.spark, app_name="recs-bench-stitch")
    if not all((root / "validated" / "events" / f"dt={d}").exists() for d in window(next_date, cfg.window_days)):
        run_stage("validate", cfg, next_date, spark=spark)
    shutil.rmtree(root / "state" / "identity", ignore_errors=True)
    paths = [layout.validated("events", d) for d in window(next_date, cfg.window_days)]
    with PeakRSS() as mem:
        t = time.time()
        ids = spark.read.parquet(*paths).select("anonymous_id", "user_id", "email_hash", "session_id", "event_time")
        n_events = ids.agg(F.count("*").alias("n"), F.max(F.xxhash64(*ids.columns))).first()["n"]
        baseline = time.time() - t
        t = time.time()
        first = run_stage("stitch", cfg, run_date, spark=spark)
        full = time.time() - t
        t = time.time()
        run_stage("stitch", cfg, next_date, spark=spark)
        nightly = time.time() - t
    identity = pq.read_table(layout.identity(next_date)).to_pandas()
    truth = pq.read_table(root / "truth" / "identities").to_pandas()
    shared = pq.read_table(root / "truth" / "shared_devices").to_pandas()
    quality = evaluate_stitching(identity, truth, exclude_anonymous_ids=shared["anonymous_id"])
    lines = [f"shop: {args.users:,} users x {args.days} days; {n_events:,} validated events; spark {cfg.spark.master}",
             "", "| run | seconds | x one Spark pass over the identity columns |", "|---|---|---|",
             f"| from scratch, {args.days - 1} days (to {run_date}) | {full:.1f} | {full / baseline:.1f} |",
             f"| one more night ({next_date}) | {nightly:.1f} | {nightly / baseline:.1f} |", "",
             f"baseline pass {baseline:.1f}s; peak RSS {mem.peak_gb:.2f} GB; persons {first.get('persons'):,}",
             f"against truth (shared devices and kiosks excluded): pairwise precision {quality['precision']:.4f}, "
             f"recall {quality['recall']:.4f}, persons found / true persons {quality['persons_ratio']:.4f} "
             f"({quality['persons_found']:,} / {quality['true_persons']:,}); ids missing {quality['ids_missing']}"]
    append_results("bench_stitch: identity stitching", lines)
    return 0 if pd.notna(quality["precision"]) else 1


if __name__ == "__main__":
    sys.exit(main())
