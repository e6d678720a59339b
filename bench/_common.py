"""Shared bits for benchmarks: machine description, peak-RSS sampling, appending to bench/RESULTS.md."""
from __future__ import annotations

import datetime as dt
import os
import platform
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {cpu}, Python {platform.python_version()}"


class PeakRSS:
    """Samples the resident memory of this process and all its children (the Spark JVM included)."""

    def __init__(self, every: float = 0.5):
        import psutil

        self._proc, self._every, self.peak, self._stop = psutil.Process(), every, 0, threading.Event()

    def _total(self) -> int:
        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:
                pass
        return total

    def __enter__(self):
        def loop():
            while not self._stop.is_set():
                self.peak = max(self.peak, self._total())
                time.sleep(self._every)

        self._t = threading.Thread(target=loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._total())

    @property
    def peak_gb(self) -> float:
        return self.peak / 1e9


def append_results(title: str, lines: list[str]) -> None:
    block = [f"\n## {title}", f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}", "", *lines, ""]
    with RESULTS.open("a") as f:
        f.write("\n".join(block) + "\n")
    print("\n".join(block))


def add_shop_args(parser) -> None:
    """The generated shop's size, shared by the benchmarks that run on it (same defaults, same cache folder)."""
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--start", default="2026-08-01")
    parser.add_argument("--work", default="/tmp/recs-bench")


def add_real_data_args(parser, *, source: str, source_help: str, conf: str, sweep_help: str) -> None:
    """Options shared by the real-data accuracy benchmarks (MovieLens, Online Retail)."""
    parser.add_argument("--source", default=source, help=source_help)
    parser.add_argument("--work", default="/tmp/recs-bench", help="work folder (the data root goes below it)")
    parser.add_argument("--conf", default=conf)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--sweep", action="store_true", help=sweep_help)
    parser.add_argument("--fresh", action="store_true", help="re-import and re-validate instead of reusing them")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 ALS iterations, no extra rows, no append")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to bench/RESULTS.md")


# Countries and devices of the synthetic lists' segments (as the shop generator's).
SEGMENT_COUNTRIES = ("GB", "DE", "FR", "US", "NL", "ES", "IT")


def synthetic_published_lists(spark, persons: int, per_list: int, *, catalog_items: int = 50_000,
                              run_date: str = "2026-11-30"):
    """Published lists in the contract's shape, built directly in Spark (no pipeline run): `persons` people
    `p<n>` with `per_list` ranked items each, plus `global`, per-country, per-device and country/device segment
    lists. Returns (lists, identity), identity mapping `u<n>` (user_id) and `a<n>` (anonymous_id) to `p<n>`."""
    from pyspark.sql import functions as F

    from jobs.segments import segment_key
    from schemas.vocabulary import DEVICE_TYPES

    segments = [segment_key([])] + [segment_key([("country", c)]) for c in SEGMENT_COUNTRIES] + \
        [segment_key([("device_type", d)]) for d in DEVICE_TYPES] + \
        [segment_key([("country", c), ("device_type", d)]) for c in SEGMENT_COUNTRIES for d in DEVICE_TYPES]
    subjects = (spark.range(persons).select(F.lit("person").alias("subject_type"),
                                            F.concat(F.lit("p"), F.col("id").cast("string")).alias("subject_id"))
                .unionByName(spark.createDataFrame([("segment", s) for s in segments],
                                                   "subject_type string, subject_id string")))
    ranked = subjects.select("*", F.explode(F.sequence(F.lit(1), F.lit(per_list))).alias("rank"))
    noise = (F.abs(F.xxhash64("subject_id", "rank")) % 1_000_000) / 1e7
    lists = ranked.select(
        "subject_type", "subject_id", F.col("rank").cast("int").alias("rank"),
        F.concat(F.lit("i"), (F.abs(F.xxhash64("subject_id", "rank", F.lit(7))) % catalog_items).cast("string"))
        .alias("item_id"),
        (F.lit(1.0) / F.col("rank") + noise).alias("score"), F.lit("mf").alias("source"),
        F.lit("control").alias("variant"), F.lit(f"bench-{run_date}").alias("model_version"),
        F.lit(f"bench-{run_date}").alias("run_id"))
    people = spark.range(persons).select(F.col("id").cast("string").alias("n"))
    identity = (people.select(F.lit("user_id").alias("id_type"), F.concat(F.lit("u"), "n").alias("id"),
                              F.concat(F.lit("p"), "n").alias("person_id"))
                .unionByName(people.select(F.lit("anonymous_id").alias("id_type"), F.concat(F.lit("a"), "n").alias("id"),
                                           F.concat(F.lit("p"), "n").alias("person_id"))))
    return lists, identity


def start_redis(workdir: Path):
    """A private redis-server on a free loopback port (no persistence); returns (process, url)."""
    import shutil
    import socket
    import subprocess

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    """p50 and p99 in milliseconds of a list of nanosecond durations."""
    ordered = sorted(samples_ns)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6  # noqa: E731
    return pick(0.50), pick(0.99)
