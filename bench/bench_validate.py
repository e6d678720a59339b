"""Validation of one day of ~1M events (row checks, quarantine, GX batch gates, reports), as a ratio to one
plain Spark pass over the same day in the same process; plus quarantine precision/recall against the
generator's planted defects (--defect-rate).

    python bench/bench_validate.py                  # ~1M events (170k users, 1 day), defect rate 0.02
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import PeakRSS, append_results  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--users", type=int, default=170_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--day", default="2026-10-01")
    p.add_argument("--defect-rate", type=float, default=0.02)
    p.add_argument("--work", default="/tmp/recs-bench")
    p.add_argument("--host-note", default="shared with six other agents' jobs (2 cores): compare ratios, not seconds")
    p.add_argument("--label", default="", help="appended to the results' title (e.g. before/after a change)")
    args = p.parse_args(argv)
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from jobs.storage.layout import Layout
    from jobs.spark import spark_session
    from jobs.config import load_config
    from jobs.shop import generate_shop
    from jobs.stages.validate import run as validate

    root = Path(args.work) / f"day-{args.users}x{args.items}-d{args.defect_rate}"
    if not (root / "raw" / "events" / f"dt={args.day}").exists():
        generate_shop(str(root), start=args.day, days=1, users=args.users, items=args.items, seed=1,
                      defect_rate=args.defect_rate)
    cfg = load_config(data_root=str(root), overrides=["window_days=1"])
    layout = Layout(cfg.data_root)
    spark = spark_session(cfg.spark, app_name="recs-bench-validate")
    raw = layout.raw("events", args.day)
    timings = {}
    with PeakRSS() as mem:
        for attempt in (1, 2):  # the first pair warms the JVM up; the second is reported
            for sub in ("validated", "quarantine", "reports"):
                shutil.rmtree(root / sub, ignore_errors=True)
            t = time.time()
            df = spark.read.parquet(raw)
            n = df.agg(F.count("*").alias("n"), F.max(F.xxhash64(*df.columns))).first()["n"]
            timings["pass"] = time.time() - t
            t = time.time()
            summary = validate(spark, cfg, args.day)
            timings["validate"] = time.time() - t
    quarantined = pq.read_table(layout.quarantine("events", args.day)).to_pandas()
    defects = pq.read_table(root / "truth" / "defects").to_pandas()
    planted = len(defects)
    # a planted duplicate shares its event_id with the good original: it is dropped (counted once, as the
    # contract says) rather than quarantined, so it is caught when the day's dropped count covers them all
    planted_dup = int((defects.defect == "duplicate_event_id").sum())
    dropped = int(summary["days"][args.day]["events"].get("duplicates_dropped", 0))
    caught_dup = min(planted_dup, dropped)
    caught_other = defects[defects.defect != "duplicate_event_id"].event_id.isin(quarantined.event_id).sum()
    caught = int(caught_dup + caught_other)
    good_quarantined = len(quarantined) - int(caught_other)
    good_rows = n - planted
    lines = [f"one day: {n:,} raw events ({planted:,} planted bad rows, rate {args.defect_rate}); spark {cfg.spark.master}",
             "", "| step | seconds | ratio |", "|---|---|---|",
             f"| one plain Spark pass (read + hash every column) | {timings['pass']:.1f} | 1.0 |",
             f"| validate (rows, quarantine, GX gates, reports) | {timings['validate']:.1f} | "
             f"{timings['validate'] / timings['pass']:.1f} |", "",
             f"quarantine: {len(quarantined):,} rows; planted bad rows caught {caught:,} / {planted:,} "
             f"({caught / max(planted, 1):.4%}); good rows quarantined {good_quarantined:,} / {good_rows:,} "
             f"({good_quarantined / max(good_rows, 1):.4%}); duplicates dropped {dropped:,} "
             f"(planted {planted_dup:,}); peak RSS {mem.peak_gb:.2f} GB",
             f"per-reason counts: {summary.get('quarantine', summary.get('quarantine_counts', ''))}",
             f"validate's own timings (s, cumulative where named so): {summary.get('timings')}",
             f"host: {args.host_note}"]
    append_results("bench_validate: one day of events" + (f" ({args.label})" if args.label else ""), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
