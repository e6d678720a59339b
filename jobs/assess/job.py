"""`recs assess`: reads the raw inputs, computes the figures and verdicts, writes the report.

The report goes to `reports/dt=D/assessment.json` and `assessment.html` (D = `--date`, or the last raw events
day), both written atomically (`jobs.storage.io`); no other folder is touched and no model is trained.
"""
from __future__ import annotations

import datetime as dt
import logging
import time

from pyspark.sql import SparkSession

from jobs.assess import figures as fig
from jobs.assess.read import read_raw_inputs
from jobs.assess.report import render_html
from jobs.assess.verdicts import assess
from jobs.config import RecsConfig
from jobs.storage import io
from jobs.storage.datasets import Datasets
from jobs.storage.layout import Layout
from quality import raw

log = logging.getLogger(__name__)

REPORT_JSON, REPORT_HTML = "assessment.json", "assessment.html"


def compute_figures(inputs, cfg: RecsConfig) -> dict:
    """Every area's figures from the raw inputs: a handful of aggregations, each reading only its columns."""
    t = cfg.assess
    events = inputs.events
    daily = fig.daily_volume(events)
    prices = fig.purchase_price_figures(events, max_mode_share=t.max_price_mode_share)
    users = fig.user_figures(events, min_purchases=t.min_purchases_per_user)
    anonymous = fig.anonymous_figures(events)
    return {
        "history": fig.history_figures(daily),
        "people": fig.people_figures(users, anonymous, daily, min_purchases=t.min_purchases_per_user,
                                     purchases_are_orders=prices["are_orders"]),
        "identity": fig.identity_figures(users, anonymous),
        "catalog": fig.catalog_figures(inputs.catalogs, events, attributes=t.catalog_attributes,
                                       trend_days=t.catalog_trend_days),
        "event_collection": fig.collection_figures(
            events, daily, recent_days=t.recent_days, drop_ratio=t.drop_ratio,
            baseline_days=t.drop_baseline_days, min_history_days=t.drop_min_history_days,
            min_daily_events=t.drop_min_daily_events, min_platform_purchases=t.min_platform_purchases),
        "purchase_prices": prices,
    }


def run(spark: SparkSession, cfg: RecsConfig, date: str | None = None) -> dict:
    """Assesses the raw inputs under `cfg.data_root` up to `date` (all when None) and writes the report.

    Returns
    -------
    dict
        ``data_root``, ``date``, ``inputs`` (days and files read), ``figures`` (per area), ``assessment``
        (``verdicts`` per area, ``checks`` per area, ``fixes`` in order), ``thresholds``, ``reports`` (paths)
        and ``seconds``.
    """
    started = time.time()
    if date is not None:
        date = dt.date.fromisoformat(str(date)).isoformat()
    layout = Layout(cfg.data_root)
    nanos_before = spark.conf.get(raw.NANOS_AS_LONG, None)
    try:
        inputs = read_raw_inputs(spark, cfg.data_root, date, catalog_every_days=cfg.assess.catalog_every_days)
        if inputs.events is None:
            raise FileNotFoundError(f"no readable raw events under {layout.raw('events')}"
                                    + (f" up to {date}" if date else "") + "".join(
                                        f"; {e}" for e in inputs.unreadable_files[:3]))
        figures = compute_figures(inputs, cfg)
    finally:
        if nanos_before is None:
            spark.conf.unset(raw.NANOS_AS_LONG)
        else:
            spark.conf.set(raw.NANOS_AS_LONG, nanos_before)
    report_date = date or inputs.event_days[-1]
    reports = {"json": f"{layout.reports(report_date)}/{REPORT_JSON}",
               "html": f"{layout.reports(report_date)}/{REPORT_HTML}"}
    report = {"data_root": cfg.data_root, "date": report_date,
              "inputs": {"event_days": len(inputs.event_days), "catalog_snapshots_read": len(inputs.catalog_days),
                         "files": inputs.files, "unreadable_files": inputs.unreadable_files},
              "figures": figures, "assessment": assess(figures, cfg.assess),
              "thresholds": {k: list(v) if isinstance(v, tuple) else v
                             for k, v in vars(cfg.assess).items()},
              "reports": reports, "seconds": round(time.time() - started, 1)}
    html = render_html(report)
    Datasets(cfg.data_root).write_report(report_date, REPORT_JSON, report)
    io.write_text(reports["html"], html)
    return report
