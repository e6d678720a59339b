"""Progress on long work: a live bar on an interactive terminal, one log line per step otherwise.

The one helper every long loop uses (shop generation, validation, training, retrieval batches, the export,
the night's stages): `track(iterable, what)` wraps a loop, `steps(what, total)` counts work driven by a
callback (ALS iterations). Where stderr is a terminal, a rich bar shows every running loop (nested loops
share one display); elsewhere (Airflow task logs, a redirected `recs run`, pytest's captured output) each
finished step is one INFO line on the `jobs.progress` logger and nothing else is written.
"""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def interactive() -> bool:
    """True when a person watches: stderr is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _console():
    from rich.console import Console

    return Console(stderr=True)


class _Display:
    """The one rich display shared by nested loops (rich allows one live display at a time)."""

    def __init__(self):
        self.progress = None
        self.open_tasks = 0

    def add(self, what: str, total: int | None):
        if self.progress is None:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                     console=_console())
            self.progress.start()
        self.open_tasks += 1
        return self.progress.add_task(what, total=total, note="")

    def remove(self, task_id) -> None:
        """A finished inner loop leaves the display; the last one stays on screen as it ended."""
        self.open_tasks -= 1
        if self.open_tasks == 0:
            self.progress.stop()
            self.progress = None
        else:
            self.progress.remove_task(task_id)


_display = _Display()


class Steps:
    """Counts finished steps of one piece of work; `advance` after each."""

    def __init__(self, what: str, total: int | None, unit: str, bar: bool):
        self.what, self.total, self.unit = what, total, unit
        self.done = 0
        self.started = time.monotonic()
        self._task = _display.add(what, total) if bar else None

    def advance(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self._task is not None:
            _display.progress.update(self._task, advance=n, note=note, refresh=True)
            return
        elapsed = time.monotonic() - self.started
        if self.total:
            left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            log.info("%s: %d/%d %s%s (%.0f%%), %.1fs elapsed, ~%.0fs left", self.what, self.done, self.total,
                     self.unit, f" {note}" if note else "", 100.0 * self.done / self.total, elapsed, left)
        else:
            log.info("%s: %d %s%s, %.1fs elapsed", self.what, self.done, self.unit, f" {note}" if note else "",
                     elapsed)

    def _close(self) -> None:
        if self._task is not None:
            _display.remove(self._task)
            self._task = None


@contextmanager
def steps(what: str, total: int | None = None, *, unit: str = "steps") -> Iterator[Steps]:
    """`with steps("train ALS", total=15, unit="iterations") as s: ... s.advance()`."""
    s = Steps(what, total, unit, bar=interactive())
    try:
        yield s
    finally:
        s._close()


def track(items: Iterable[T], what: str, *, total: int | None = None, unit: str = "steps",
          note: Callable[[T], str] | None = None) -> Iterator[T]:
    """Yields `items`, counting a step as each one's loop body finishes; `note(item)` labels the step."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with steps(what, total, unit=unit) as s:
        for item in items:
            yield item
            s.advance(note=note(item) if note else "")
