"""`recs ab-report` end to end through Spark on a tiny hand-written validated-events table (stitched by the stitch
stage), the nightly task's skip, the night page's link, and the HTML report in headless Chromium."""
import json

import numpy as np
import pytest
from chromium import assert_rendered, chromium_binary  # noqa: F401  (a fixture)
from identity_events import events_df
from scipy import stats as sps

from jobs.storage.layout import Layout

pytestmark = pytest.mark.spark

EXP = "exp1"
START, END = "2026-01-20", "2026-03-06"
ARMS = "[{name: control, share: 0.5, serves: model}, {name: treatment, share: 0.5, serves: popularity}]"
SETTINGS = [f"experiment.id={EXP}", f"experiment.arms={ARMS}", "abtest.revenue_cap_percentile=1",
            "spark.master=local[1]", "spark.shuffle_partitions=1", "spark.driver_memory=1g"]


def e(user, kind, when, *, item=None, variant=None, experiment=EXP, order=None, price=None, qty=None):
    """One event of `user` (on their own device) at `when` ('YYYY-MM-DD HH:MM')."""
    import datetime as dt

    e.n += 1
    rec = kind in ("rec_impression", "rec_click")
    return {"event_id": f"e{e.n}", "event_time": dt.datetime.fromisoformat(when), "event_type": kind,
            "anonymous_id": f"a-{user}", "user_id": user, "session_id": f"s-{user}", "item_id": item,
            "experiment_id": experiment if rec else None, "variant": variant if rec else None,
            "order_id": order, "price": price, "quantity": qty if qty is not None else (1 if price else None)}


e.n = 0

EVENTS = [
    # control
    e("u1", "purchase", "2026-03-01 09:00", item="i0", order="o0", price=10.0),          # pre-period: 10
    e("u1", "rec_impression", "2026-03-03 10:00", item="i1", variant="control"),
    e("u1", "rec_click", "2026-03-03 10:01", item="i1", variant="control"),
    e("u1", "add_to_cart", "2026-03-03 10:02", item="i1", qty=2),
    e("u1", "purchase", "2026-03-04 10:00", item="i1", order="o1", price=20.0, qty=2),  # 40, attributed
    e("u1", "return", "2026-03-05 10:00", item="i1", order="o1", price=20.0, qty=1),    # net 20
    e("u2", "rec_impression", "2026-03-03 11:00", item="i1", variant="control"),
    e("u2", "rec_impression", "2026-03-04 11:00", item="i2", variant="control"),
    e("u2", "purchase", "2026-03-05 11:00", item="i9", order="o2", price=15.0),          # not clicked: 15
    e("u9", "rec_impression", "2026-01-20 09:00", item="i1", variant="control"),         # retention: eligible,
    e("u9", "product_view", "2026-02-25 09:00", item="i3"),                              # ... back too late
    # treatment
    e("u3", "rec_impression", "2026-03-04 12:00", item="i2", variant="treatment"),
    e("u3", "rec_click", "2026-03-04 12:01", item="i2", variant="treatment"),
    e("u3", "purchase", "2026-03-04 12:30", item="i2", order="o3", price=30.0),          # 30, attributed
    e("u4", "rec_impression", "2026-03-03 12:00", item="i2", variant="treatment"),
    e("u6", "purchase", "2026-03-01 13:00", item="i5", order="o6", price=50.0),          # pre-period: 50
    e("u6", "rec_impression", "2026-03-05 13:00", item="i2", variant="treatment"),
    e("u10", "rec_impression", "2026-01-20 10:00", item="i2", variant="treatment"),      # retention: eligible,
    e("u10", "product_view", "2026-02-05 10:00", item="i3"),                             # ... back in time
    # seen in both arms: dropped and counted
    e("u5", "rec_impression", "2026-03-03 14:00", item="i1", variant="control"),
    e("u5", "rec_impression", "2026-03-04 14:00", item="i2", variant="treatment"),
    e("u5", "purchase", "2026-03-04 15:00", item="i2", order="o5", price=99.0),
    # another experiment's list: not an exposure of this one
    e("u7", "rec_impression", "2026-03-03 15:00", item="i1", variant="control", experiment="exp0"),
]
PER_PERSON = {  # (revenue, converted, pre revenue, impressions, clicks, orders, added to cart, attributed)
    "control": {"u1": (20, 1, 10, 1, 1, 1, 1, 40), "u2": (15, 1, 0, 2, 0, 1, 0, 0), "u9": (0, 0, 0, 1, 0, 0, 0, 0)},
    "treatment": {"u3": (30, 1, 0, 1, 1, 1, 0, 30), "u4": (0, 0, 0, 1, 0, 0, 0, 0), "u6": (0, 0, 50, 1, 0, 0, 0, 0),
                  "u10": (0, 0, 0, 1, 0, 0, 0, 0)},
}


@pytest.fixture(scope="module")
def ab(spark, tmp_path_factory):
    """The events validated by hand, one folder per day, stitched, then `recs ab-report` in this process."""
    import contextlib
    import io as stdio

    from jobs.cli import main
    from jobs.config import load_config
    from jobs.stages import stitch

    root = tmp_path_factory.mktemp("ab") / "data"
    cfg = load_config(data_root=str(root), overrides=SETTINGS)
    days = sorted({ev["event_time"].date().isoformat() for ev in EVENTS})
    for day in days:
        rows = [ev for ev in EVENTS if ev["event_time"].date().isoformat() == day]
        events_df(spark, rows).coalesce(1).write.parquet(Layout(cfg.data_root).validated("events", day))
    stitch.run(spark, cfg, END)
    out = stdio.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["ab-report", "--data-root", str(root), "--experiment", EXP, "--from", START, "--to", END,
                     *sum((["--set", s] for s in SETTINGS), [])])
    assert code == 0
    report_dir = root / "reports" / "ab" / EXP / f"dt={END}"
    return {"cfg": cfg, "root": root, "stdout": out.getvalue(), "dir": report_dir,
            "report": json.loads((report_dir / "report.json").read_text())}


def _column(arm, i):
    return np.array([v[i] for v in PER_PERSON[arm].values()], dtype=float)


def test_people_in_two_arms_are_counted_and_dropped_and_other_experiments_ignored(ab):
    r = ab["report"]
    assert r["people"] == {"control": 3, "treatment": 4}
    assert r["health"]["two_arm_people"] == 1
    assert f"experiment {EXP} from {START} to {END}" in ab["stdout"] and "dropped in two arms 1" in ab["stdout"]


def test_per_arm_values_equal_the_hand_computed_per_person_sums(ab):
    arms = ab["report"]["arms"]
    for arm in PER_PERSON:
        rev, conv, pre, imp, clk, orders, atc, attr = (_column(arm, i) for i in range(8))
        assert arms[arm]["revenue_per_person_uncapped"] == pytest.approx(rev.mean())
        assert arms[arm]["conversion_rate"] == pytest.approx(conv.mean())
        assert arms[arm]["ctr"] == pytest.approx(clk.sum() / imp.sum())
        assert arms[arm]["aov"] == pytest.approx(rev.sum() / orders.sum())
        assert arms[arm]["add_to_cart_rate"] == pytest.approx(atc.mean())
        assert arms[arm]["attributed_revenue_per_person"] == pytest.approx(attr.mean())
    # retention counts only u9 (control, back too late) and u10 (treatment, back in time)
    assert (arms["control"]["retention"], arms["treatment"]["retention"]) == (0.0, 1.0)
    pre = ab["report"]["health"]["pre_period"]["treatment"]
    assert (pre["control"], pre["treatment"]) == pytest.approx((_column("control", 2).mean(),
                                                                _column("treatment", 2).mean()))


def test_comparisons_equal_scipy_on_the_same_people(ab):
    cmp = ab["report"]["comparisons"]["treatment"]["revenue_per_person_uncapped"]
    ref = sps.ttest_ind(_column("treatment", 0), _column("control", 0), equal_var=False)
    assert cmp["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert cmp["ci"] == pytest.approx(list(ref.confidence_interval(0.95)), rel=1e-9)
    srm = ab["report"]["health"]["srm"]
    assert srm["p_value"] == pytest.approx(sps.chisquare([3, 4], [3.5, 3.5]).pvalue)


def test_the_verdict_waits_without_a_planned_end_and_the_files_are_where_the_readme_says(ab):
    r = ab["report"]
    assert r["final"] is False and r["decisions"]["treatment"]["interval"] == "sequential"
    assert r["verdict"] in ("keep_running", "no_ship", "invalid")
    root = ab["root"]
    history = (root / "reports" / "ab" / EXP / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["run_date"] for line in history] == [END]
    pointer = json.loads((root / "reports" / f"dt={END}" / "ab_report.json").read_text())
    assert pointer["experiment_id"] == EXP and pointer["html"].endswith(f"reports/ab/{EXP}/dt={END}/report.html")


def test_revenue_cap_cuts_at_the_pooled_percentile(spark):
    from jobs.abtest import frames

    df = spark.createDataFrame([(float(v), 0.0) for v in [1, 2, 3, 4, 1000]], "revenue double, pre_revenue double")
    cap = frames.caps(df, 0.8)
    assert cap["revenue"] == 4.0
    assert sorted(r[0] for r in frames.with_caps(df, cap).select("revenue_capped").collect()) == [1, 2, 3, 4, 4]
    assert frames.caps(df, 1.0) == {"revenue": None, "pre_revenue": None}


def test_nightly_does_nothing_without_an_experiment(tmp_path):
    from jobs.abtest.job import nightly
    from jobs.config import load_config

    cfg = load_config(data_root=str(tmp_path / "data"))
    assert "no experiment configured" in nightly(None, cfg, END)["skipped"]
    assert not (tmp_path / "data").exists()


def test_the_night_page_links_the_ab_report():
    from jobs.reports.page import _ab_link

    link = _ab_link({"run_date": END, "ab_report": {"experiment_id": "x<y", "verdict": "ship", "final": True}})
    assert f"href='../ab/x%3Cy/dt={END}/report.html'" in link and "A/B report x&lt;y: ship (final)" in link
    assert _ab_link({"run_date": END, "ab_report": None}) == ""


def test_an_unsafe_experiment_id_is_refused(spark, tmp_path):
    from jobs.abtest.job import run
    from jobs.config import load_config

    with pytest.raises(ValueError, match="names a folder"):
        run(spark, load_config(data_root=str(tmp_path)), "../etc", end=END)


def test_the_html_report_renders_in_chromium_with_a_plot_per_metric(ab, chromium_binary, tmp_path):  # noqa: F811
    from jobs.abtest.readout import LABELS

    page = ab["dir"] / "report.html"
    headings = ["Decision", "Health", "Exposures", *LABELS.values()]
    dom = assert_rendered(chromium_binary, page, tmp_path / "ab.png", headings, ["Exposures", *LABELS.values()])
    assert "people seen in two arms" in dom.lower()
