"""jobs.progress: one log line per finished step off a terminal, a live bar on one, nothing else either way."""
import io
import logging

import pytest

from jobs import progress


def test_off_a_terminal_each_step_is_one_log_line_and_nothing_is_printed(caplog, capsys):
    caplog.set_level(logging.INFO, logger="jobs.progress")
    seen = list(progress.track(["2026-08-01", "2026-08-02", "2026-08-03"], "generate-shop", unit="days",
                               note=lambda d: d))
    assert seen == ["2026-08-01", "2026-08-02", "2026-08-03"]
    lines = [r.getMessage() for r in caplog.records if r.name == "jobs.progress"]
    assert len(lines) == 3
    assert lines[0].startswith("generate-shop: 1/3 days 2026-08-01 (33%)")
    assert lines[2].startswith("generate-shop: 3/3 days 2026-08-03 (100%)") and "~0s left" in lines[2]
    assert capsys.readouterr() == ("", "")  # pytest's stderr is not a terminal: no bar


def test_steps_without_a_total_count_what_was_done(caplog):
    caplog.set_level(logging.INFO, logger="jobs.progress")
    with progress.steps("export: lists", unit="rows") as done:
        done.advance(20_000)
        done.advance(512)
    lines = [r.getMessage() for r in caplog.records if r.name == "jobs.progress"]
    assert [line.split(",")[0] for line in lines] == ["export: lists: 20000 rows", "export: lists: 20512 rows"]


def test_a_loop_left_early_closes_its_step_counter(caplog):
    caplog.set_level(logging.INFO, logger="jobs.progress")
    for day in progress.track(range(10), "validate: publish days", unit="days"):
        if day == 1:
            break
    lines = [r.getMessage() for r in caplog.records if r.name == "jobs.progress"]
    assert len(lines) == 1 and lines[0].startswith("validate: publish days: 1/10 days")


@pytest.fixture
def terminal(monkeypatch):
    """A terminal stand-in: rich writes its live display into a buffer forced to behave as a terminal."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    monkeypatch.setattr(progress, "interactive", lambda: True)
    monkeypatch.setattr(progress, "_console", lambda: console)
    return buffer


def test_on_a_terminal_nested_loops_share_one_live_bar_and_log_nothing(terminal, caplog):
    caplog.set_level(logging.INFO, logger="jobs.progress")
    for stage in progress.track(["validate", "train"], "night 2026-08-14", unit="stages", note=str):
        with progress.steps("train ALS", total=3, unit="iterations") as done:
            for _ in range(3):
                done.advance()
        if stage == "validate":  # the inner bar is gone once done; the outer one stays until its loop ends
            assert progress._display.open_tasks == 1
    assert progress._display.progress is None and progress._display.open_tasks == 0
    shown = terminal.getvalue()
    assert "train ALS" in shown and "3/3" in shown and "night 2026-08-14" in shown and "2/2" in shown
    assert not [r for r in caplog.records if r.name == "jobs.progress"]
