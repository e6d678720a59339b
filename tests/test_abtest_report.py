"""The A/B report's HTML (`jobs.abtest.report.render_html`), a pure function: text from the data is escaped, and
the history's nights are what the plots over time draw."""
import re

import numpy as np

from jobs.abtest.job import history_record
from jobs.abtest.readout import LABELS, overall_verdict, readout
from jobs.abtest.report import render_html
from jobs.abtest.stats import Moments
from jobs.abtest.frames import METRICS
from jobs.config import load_config

EVIL = "<script>alert(1)</script>"


def _report(arms, run_date="2026-03-06"):
    rng = np.random.default_rng(0)
    moments = {a: {m: Moments.of(rng.random(50), rng.random(50) + 0.5) for m in METRICS} for a in arms}
    out = readout(moments, arms=arms, shares={a: 1 / len(arms) for a in arms}, alpha=0.05, srm_p=0.001,
                  imbalance_p=0.001, tuning_n=5000, final=False, two_arm_people=3)
    return {"experiment_id": EVIL, "run_date": run_date, "start": "2026-03-01", "end": run_date, "planned_end": None,
            "final": False, "verdict": overall_verdict(out["decisions"]), **out, "notes": [EVIL],
            "daily_exposures": [{"arm": a, "day": "2026-03-01", "people": 50} for a in arms],
            "settings": vars(load_config().abtest)}


def test_text_from_the_data_is_escaped():
    report = _report(["control", EVIL])
    page = render_html(report, [history_record(report)])
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_one_plot_per_metric_plus_exposures_in_decision_order():
    nights = []
    for day in ("2026-03-04", "2026-03-05", "2026-03-06"):
        nights.append(history_record(_report(["control", "treatment"], day)))
    page = render_html(_report(["control", "treatment"]), nights)
    alts = re.findall(r"<img alt='([^']*)' src='data:image/png;base64,", page)
    assert [a.split(":")[0] for a in alts] == ["Exposures", *LABELS.values()]
