"""The key-value export of a big night: `--persons` (1M) people x `--per-list` (50) items, built directly as published
lists in the contract's shape (no pipeline run), then exported by the real code: `kvstore.build_version` (the
embedded SQLite store) and `redis_store.build_version` (a private redis-server). Prints time, peak resident memory
(this process, the Spark JVM and its Python workers; redis-server's own memory is its `used_memory`), the store's
size on disk, and a same-process baseline: one Spark pass writing the same lists as Parquet (what publish writes
anyway), so the ratio says what the export costs on top of it.

    python bench/bench_export.py                 # 1M x 50, both stores
    python bench/bench_export.py --no-redis      # the embedded store only
    python bench/bench_export.py --quick         # 50k x 50, no append
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import PeakRSS, append_results, start_redis, synthetic_published_lists  # noqa: E402


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--persons", type=int, default=1_000_000)
    p.add_argument("--per-list", type=int, default=50)
    p.add_argument("--work", default="/tmp/recs-bench")
    p.add_argument("--no-redis", action="store_true", help="skip the Redis export")
    p.add_argument("--quick", action="store_true", help="50k persons, no append")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.persons, args.no_append = 50_000, True
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from jobs.config import load_config
    from jobs.serving import kvstore, redis_store
    from jobs.spark import spark_session

    work = Path(args.work) / f"export-{args.persons}x{args.per_list}"
    shutil.rmtree(work, ignore_errors=True)
    cfg = load_config(data_root=str(work))
    spark = spark_session(cfg.spark, app_name="recs-bench-export")
    lists, identity = synthetic_published_lists(spark, args.persons, args.per_list)
    lists_path, identity_path = work / "lists", work / "identity"
    with PeakRSS() as base_mem:  # the baseline: one Spark pass writing the lists (and identity) as Parquet
        t = time.time()
        lists.write.parquet(str(lists_path))
        identity.write.parquet(str(identity_path))
        baseline = time.time() - t
    published, ids = spark.read.parquet(str(lists_path)), spark.read.parquet(str(identity_path))
    n_rows, n_lists = published.count(), published.select("subject_type", "subject_id").distinct().count()
    meta = {"run_date": "2026-11-30", "model_version": "bench", "top_n": args.per_list,
            "segment_dimensions": ["country", "device_type"]}
    kv = work / "exports" / "kv"
    with PeakRSS() as kv_mem:
        t = time.time()
        version = kvstore.build_version(spark, published, ids, str(kv), meta=meta)
        kvstore.switch_current(str(kv), version)
        kv_seconds = time.time() - t
    kv_bytes = folder_size(kv / "versions" / version)
    reader = kvstore.KVReader(str(kv))
    assert reader.lookup(f"u{args.persons - 1}")["source"] == "person"  # the last person made it
    assert len(reader.lookup("nobody", country="DE", device_type="ios")["items"]) == args.per_list
    redis_line = "Redis: skipped (--no-redis)"
    if not args.no_redis:
        redis_proc, url = start_redis(work / "redis")
        try:
            with PeakRSS() as redis_mem:
                t = time.time()
                redis_store.build_version(published, ids, url, version=version, meta=meta)
                redis_store.switch_current(url, version)
                redis_seconds = time.time() - t
            import redis

            used = redis.Redis.from_url(url).info("memory")["used_memory"]
            assert redis_store.RedisReader(url).lookup(f"u{args.persons - 1}")["source"] == "person"
            redis_line = (f"Redis (executors write with pipelines): {redis_seconds:.0f} s = "
                          f"{redis_seconds / baseline:.1f}x the Parquet pass; peak RSS {redis_mem.peak_gb:.1f} GB "
                          f"(redis-server included); redis used_memory {used / 1e9:.2f} GB")
        finally:
            redis_proc.terminate()
            redis_proc.wait(30)
    spark.stop()
    lines = [f"{args.persons:,} persons x {args.per_list} items = {n_rows:,} list rows, {n_lists:,} lists; "
             f"{2 * args.persons:,} ids; Spark {cfg.spark.master}, driver "
             f"{cfg.spark.driver_memory}; HOST SHARED with other agents' jobs (load average "
             f"{os.getloadavg()[0]:.1f} at the end).", "",
             f"- Baseline, one Spark pass writing the lists and ids as Parquet: {baseline:.0f} s, "
             f"peak RSS {base_mem.peak_gb:.1f} GB",
             f"- Embedded store (SQLite, streamed to the driver partition by partition): {kv_seconds:.0f} s = "
             f"{kv_seconds / baseline:.1f}x the Parquet pass; peak RSS {kv_mem.peak_gb:.1f} GB; "
             f"store {kv_bytes / 1e9:.2f} GB on disk ({kv_bytes / n_lists:.0f} bytes a list)",
             f"- {redis_line}"]
    if args.no_append:
        print("\n".join(lines))
    else:
        append_results("bench_export: key-value export of a big night", lines)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
