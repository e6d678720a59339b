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
