"""jobs.reports.night: the page of a small real night (a generated shop, every stage, run by `recs run`), opened in
headless Chromium; its figures are the ones the stages wrote."""
import contextlib
import io
import json
import re

import pytest

from chromium import assert_rendered, chromium_binary  # noqa: F401  (a fixture)
from jobs.reports.page import SECTIONS
from jobs.stages import STAGES

pytestmark = pytest.mark.spark

START, DAYS, RUN_DATE = "2026-08-01", 12, "2026-08-12"
SETTINGS = ["spark.master=local[1]", "spark.shuffle_partitions=1", "tuning.budget_seconds_wide=3",
            "tuning.budget_seconds_warm=2", "gate.min_test_persons=5"]


@pytest.fixture(scope="module")
def night(spark, tmp_path_factory):
    """One night on a tiny shop through the command data engineers use; returns (root, exit code, stdout)."""
    from jobs import cli
    from jobs.shop import generate_shop

    root = tmp_path_factory.mktemp("night") / "shop"
    generate_shop(str(root), start=START, days=DAYS, users=200, items=60, seed=3, defect_rate=0.01)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["run", "--data-root", str(root), "--date", RUN_DATE,
                         *[a for s in SETTINGS for a in ("--set", s)]])
    return root, code, out.getvalue()


def _report(root, name):
    return json.loads((root / "reports" / f"dt={RUN_DATE}" / name).read_text())


def test_recs_run_prints_where_the_page_is(night):
    from jobs.cli import EXIT_POPULARITY_FALLBACK, EXIT_PUBLISHED

    root, code, stdout = night
    assert code in (EXIT_PUBLISHED, EXIT_POPULARITY_FALLBACK)
    page = root.resolve() / "reports" / f"dt={RUN_DATE}" / "index.html"
    assert f"night page: file://{page}" in stdout.splitlines()  # (tmp paths need no quoting)


def test_the_page_of_a_real_night_renders_in_chromium_with_the_stages_figures(night, chromium_binary,  # noqa: F811
                                                                              tmp_path):
    root, _, _ = night
    headings = [h for h, _ in SECTIONS]
    page = root / "reports" / f"dt={RUN_DATE}" / "index.html"
    dom = assert_rendered(chromium_binary, page, tmp_path / "night.png", headings, headings)
    summary = _report(root, "run_summary.json")
    assert f"Night {RUN_DATE}: " in dom and f">{summary['status']}</span></h1>" in dom
    for stage in STAGES:  # every stage ran and says so
        assert f"<tr><td>{stage}</td><td>ok</td>" in dom, stage
    events = _report(root, "validation.json")["days"][RUN_DATE]["events"]
    assert f'<td>all events</td><td class="n">{events["rows"]:,}</td>' in dom
    assert sum(events["event_types"].values()) == events["rows"] and events["event_types"]["product_view"] > 0
    for event_type, n in events["event_types"].items():
        if n:
            assert f'<td>{event_type}</td><td class="n">{n:,}</td>' in dom, event_type
    gate = _report(root, "gate.json")
    assert re.search(rf"Verdict: <b class=\"\w+\">{gate['verdict']}</b> \(rule {gate['rule']}\)", dom)
    coverage = _report(root, "stages/publish.json")["coverage"]
    assert f'<td>person_lists</td><td class="n">{coverage["person_lists"]:,}</td>' in dom
    assert coverage["exposure_gini"] is not None and len(coverage["exposure_top_shares"]) == 5
    stitch = _report(root, "stages/stitch.json")
    assert f'<td>merges</td><td class="n">{stitch["merges"]:,}</td>' in dom
