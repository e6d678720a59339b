"""The nightly run on a Spark standalone cluster against local mode, in one process: the same generated shop, the
same nights, per-stage time, peak memory and whether the published lists are the same.

    python bench/bench_cluster.py                               # 20k users x 5k items x 30 days, one night
    python bench/bench_cluster.py --users 100000 --items 20000 --days 90 --nights 2

Local mode runs first (`spark.master` local[2]), then a cluster of `--workers` workers (one core and
`--worker-memory` each) started on loopback from the installed pyspark (`jobs.spark.standalone_cluster`) runs the
same nights from the same raw data. Each mode has its own baseline pass (read and hash every event of the window)
on its own session, so each row reads as a ratio to what one pass costs there. On one 2-core machine the cluster
can only show its overhead (separate executor JVMs and Python workers, shuffles through the block manager, task
results over the network): the point is that the same code runs there and gives the same lists. The tuning is
fixed to a number of trials, not a time budget, so both modes choose the same settings.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import PeakRSS, add_shop_args, append_results  # noqa: E402
from bench.bench_pipeline import baseline_pass, prepared_shop, remove_derived, timed_nights  # noqa: E402

# the same settings whatever the speed of the mode: a fixed number of tuning trials
DETERMINISTIC = ["als.threads=1", "tuning.max_trials=8", "tuning.budget_seconds_wide=3600",
                 "tuning.budget_seconds_warm=3600"]


def published(root: Path, run_date: str) -> list[tuple]:
    import pyarrow.dataset as pads

    table = pads.dataset(str(root / "recommendations" / f"dt={run_date}"), format="parquet").to_table(
        columns=["subject_type", "subject_id", "rank", "item_id"])
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names)))


def one_mode(root: Path, nights: list[str], overrides: list[str]) -> dict:
    """Every night on a fresh session of `overrides`' master: timings, baseline, peak RSS, the last lists."""
    from jobs.config import load_config
    from jobs.spark import spark_session

    remove_derived(root)
    cfg = load_config(data_root=str(root), overrides=overrides)
    with PeakRSS() as mem:
        t = time.time()
        spark = spark_session(cfg.spark, app_name="recs-bench-cluster")
        startup = time.time() - t
        n_events, baseline = baseline_pass(spark, cfg, nights[-1])
        timings = timed_nights(spark, cfg, nights)
        spark.stop()
    return {"master": cfg.spark.master, "timings": timings, "baseline": baseline, "startup": startup,
            "events": n_events, "peak_gb": mem.peak_gb, "lists": published(root, nights[-1])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shop_args(p)
    p.set_defaults(users=20_000, items=5_000, days=30)
    p.add_argument("--nights", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--worker-memory", default="4g")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from jobs.pipeline import STAGES
    from jobs.spark import standalone_cluster

    root, run_date, nights, gen_seconds = prepared_shop(args)
    overrides = [*DETERMINISTIC, *args.set]
    local = one_mode(root, nights, overrides)
    with tempfile.TemporaryDirectory(prefix="recs-cluster-") as work, \
            standalone_cluster(Path(work), workers=args.workers, cores=1, memory=args.worker_memory) as (url, _):
        cluster = one_mode(root, nights, [*overrides, f"spark.master={url}"])
    same = cluster["lists"] == local["lists"]

    lines = [f"shop: {args.users:,} users x {args.items:,} items x {args.days} days = {local['events']:,} events"
             + (f" (generated in {gen_seconds:.0f}s)" if gen_seconds else "")
             + f"; nights {', '.join(nights)}; overrides {overrides}",
             f"cluster: {args.workers} workers x 1 core x {args.worker_memory} on loopback, driver on the same host",
             "", "| stage | local[2]: s (x its pass) | cluster: s (x its pass) | cluster / local |", "|---|---|---|---|"]
    for night in nights:
        for stage in STAGES:
            lt, ct = local["timings"][night][stage], cluster["timings"][night][stage]
            lines.append(f"| {night} {stage} | {lt:.1f} ({lt / local['baseline']:.1f}) | "
                         f"{ct:.1f} ({ct / cluster['baseline']:.1f}) | {ct / lt:.2f} |")
        lt, ct = sum(local["timings"][night].values()), sum(cluster["timings"][night].values())
        lines.append(f"| **{night} total** | **{lt:.1f}** | **{ct:.1f}** | **{ct / lt:.2f}** |")
    lines += ["", f"baseline pass: local {local['baseline']:.1f}s, cluster {cluster['baseline']:.1f}s; "
              f"Spark start: local {local['startup']:.1f}s, cluster {cluster['startup']:.1f}s; peak RSS (driver, "
              f"and for the cluster its daemons and executors): local {local['peak_gb']:.2f} GB, "
              f"cluster {cluster['peak_gb']:.2f} GB",
              f"published lists of {nights[-1]}: {len(local['lists']):,} rows; "
              + ("the same in both modes" if same else "DIFFERENT between the modes")]
    append_results("bench_cluster: standalone cluster against local mode", lines)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
