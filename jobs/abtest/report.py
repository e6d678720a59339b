"""The A/B report as one self-contained HTML page: `render_html(report, nights)`, a pure function.

Every value from the data (experiment and arm names, reasons) is HTML-escaped and drawn with mathtext off; plots are
PNG `data:` URIs drawn with the night page's matplotlib helpers (`jobs.reports.plots`), so the file stands alone.
One plot per metric: each arm's value over the nights read (left), and each treatment's difference from the
control with its sequential interval as a band and the fixed-horizon interval as bars (right).
"""
from __future__ import annotations

import math

import numpy as np

from jobs.abtest.frames import METRICS
from jobs.reports import plots
from jobs.reports.page import STYLE, _e, _num, _table

ARM_COLORS = ("#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828", "#00838f")
VERDICT_CLASS = {"ship": "good", "keep_running": "warn", "no_ship": "bad", "invalid": "bad"}
VERDICT_TEXT = {"ship": "ship", "no_ship": "don't ship", "keep_running": "keep running",
                "invalid": "invalid: fix the experiment first", "no_arms": "no arms"}


def _v(x) -> float:
    return math.nan if x is None else float(x)


def metric_plot(metric: str, label: str, arms: list[str], nights: list[dict]) -> str:
    """The metric's PNG: arm values over the nights (left), treatment minus control with intervals (right)."""
    def build():
        fig, (left, right) = plots._figure(2, (1, 1))
        days = [n["run_date"] for n in nights]
        x = np.arange(len(days))
        for i, arm in enumerate(arms):
            y = [_v(((n.get("arms") or {}).get(arm) or {}).get(metric)) for n in nights]
            left.plot(x, y, marker="o", markersize=7, linewidth=2.2, color=ARM_COLORS[i % len(ARM_COLORS)],
                      label=arm)
        left.set_title(f"{label}: per arm")
        left.legend(loc="best", fontsize=7)
        for i, arm in enumerate(arms[1:], start=1):
            color = ARM_COLORS[i % len(ARM_COLORS)]
            cmp = [((n.get("comparisons") or {}).get(arm) or {}).get(metric) or {} for n in nights]
            diff = np.array([_v(c.get("diff")) for c in cmp])
            seq = np.array([[_v(v) for v in (c.get("seq_ci") or [None, None])] for c in cmp])
            fixed = np.array([[_v(v) for v in (c.get("ci") or [None, None])] for c in cmp])
            if len(x) > 1:
                right.fill_between(x, seq[:, 0], seq[:, 1], color=color, alpha=0.18,
                                   label=f"{arm}: sequential interval")
            else:  # one night: the band is a wide translucent bar
                right.errorbar(x, diff, yerr=[diff - seq[:, 0], seq[:, 1] - diff], fmt="none", color=color,
                               alpha=0.25, elinewidth=14, label=f"{arm}: sequential interval")
            right.errorbar(x, diff, yerr=[diff - fixed[:, 0], fixed[:, 1] - diff], fmt="o",
                           color=color, capsize=3, label=f"{arm} - {arms[0]}: fixed-horizon interval")
        right.axhline(0.0, color="#616161", linewidth=0.8)
        right.set_title(f"{label}: difference from {arms[0]}")
        right.legend(loc="best", fontsize=7)
        for ax in (left, right):
            ax.set_xticks(x, [d[5:] for d in days], rotation=45 if len(days) > 8 else 0)
        return fig

    return plots._draw(build)


def exposure_plot(report: dict) -> str:
    """New exposed people per arm by day of first exposure (bars), and the running totals (lines, right axis)."""
    def build():
        fig, (ax,) = plots._figure(1, (1,))
        days = sorted({r["day"] for r in report["daily_exposures"]})
        x = np.arange(len(days))
        arms = list(report["people"])
        width = 0.8 / max(len(arms), 1)
        totals = ax.twinx()
        for i, arm in enumerate(arms):
            per_day = {r["day"]: r["people"] for r in report["daily_exposures"] if r["arm"] == arm}
            counts = np.array([per_day.get(d, 0) for d in days])
            color = ARM_COLORS[i % len(ARM_COLORS)]
            ax.bar(x - 0.4 + width * (i + 0.5), counts, width=width, color=color, label=f"{arm}: new")
            totals.plot(x, np.cumsum(counts), marker="o", color=color, linewidth=1.2, linestyle="--",
                        label=f"{arm}: total")
        ax.set_title("Exposed people per arm by day of first exposure (bars: new; dashed: running total)")
        ax.set_xticks(x, [d[5:] for d in days], rotation=45 if len(days) > 8 else 0)
        ax.legend(loc="upper left", fontsize=7)
        totals.legend(loc="upper right", fontsize=7)
        return fig

    return plots._draw(build)


def _interval(v) -> str:
    if not v or v[0] is None or v[1] is None:
        return "–"
    return f"[{_num(float(v[0]))}, {_num(float(v[1]))}]"


def _in_order(metrics: dict) -> list[tuple[str, dict]]:
    """The metrics in `METRICS` order (success, guardrail, diagnostics), also from a key-sorted JSON report."""
    return [(m, metrics[m]) for m in METRICS if m in metrics]


def _comparison_rows(report: dict, arm: str) -> list[list]:
    rows = []
    for metric, meta in _in_order(report["metrics"]):
        c = report["comparisons"][arm][metric]
        rows.append([meta["label"], meta["role"], c.get("control"), c.get("treatment"), c.get("diff"),
                     c.get("relative"), _interval(c.get("ci")), c.get("p_value"), _interval(c.get("seq_ci"))])
    return rows


def _health(report: dict) -> str:
    h = report["health"]
    srm = h["srm"]
    srm_text = (f"<p class='{'bad' if srm['flagged'] else 'good'}'>Sample ratio: chi-square p = {_num(srm['p_value'])}"
                f" ({'flagged' if srm['flagged'] else 'ok'}; flagged below {_num(report['settings']['srm_p'])}).</p>")
    srm_table = _table(["arm", "people", "expected"],
                       [[a, o, e] for a, o, e in zip(srm["arms"], srm["observed"], srm["expected"])])
    pre = _table(["arm", "pre-period revenue (control)", "(arm)", "p", "flagged"],
                 [[a, p["control"], p["treatment"], p["p_value"], p["flagged"]] for a, p in h["pre_period"].items()])
    return (srm_text + srm_table + "<p>Pre-period balance (revenue in the "
            f"{_num(report['settings']['pre_period_days'])} days before first exposure):</p>" + pre
            + f"<p>People seen in two arms, dropped: <b>{_num(h['two_arm_people'])}</b> · impressions of no known "
              f"person: {_num(h.get('unattributed_impressions'))}</p>")


def render_html(report: dict, nights: list[dict]) -> str:
    """The page of `report` (`jobs.abtest.job.compute` plus ``paths``); `nights` are the history's records up to
    and including this one, oldest first."""
    arms = list(report["people"])
    verdict = report["verdict"]
    title = f"A/B report {report['experiment_id']} up to {report['run_date']}"
    head = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>")
    phase = ("final readout (fixed-horizon intervals decide)" if report["final"] else
             "sequential readout (the always-valid intervals decide; final readout at "
             f"{report.get('planned_end') or 'the planned end, not set'})")
    intro = (f"<h1>{_e(title)}: <span class='{VERDICT_CLASS.get(verdict, 'muted')}'>"
             f"{_e(VERDICT_TEXT.get(verdict, verdict))}</span></h1>"
             f"<p class='muted'>exposures from {_e(report['start'])} to {_e(report['end'])} · {_e(phase)} · "
             f"control {_e(report['control'])} · <a href='report.json'>report.json</a></p>"
             + "".join(f"<p class='warn'>{_e(n)}</p>" for n in report.get("notes") or []))
    body = [head, intro, "<h2>Decision</h2>"]
    for arm, d in report["decisions"].items():
        body.append(f"<p><b>{_e(arm)}</b> vs {_e(report['control'])}: <span class='{VERDICT_CLASS.get(d['verdict'], '')}'>"
                    f"{_e(VERDICT_TEXT.get(d['verdict'], d['verdict']))}</span> ({_e(d['interval'])} intervals)</p>"
                    "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in d["reasons"]) + "</ul>")
    body.append("<p class='muted'>Ship only if a success metric wins (its interval above 0) and no guardrail is "
                "worse; diagnostics are reported, never decisive.</p>")
    body.append("<h2>Health</h2>" + _health(report))
    body.append("<h2>Exposures</h2>"
                f"<img alt='Exposures: people per arm' src='{exposure_plot(report)}'>")
    headers = ["metric", "role", report["control"], "arm", "difference", "relative", "95% interval" if
               abs(report["settings"]["alpha"] - 0.05) < 1e-12 else "interval", "p", "sequential interval"]
    for arm in arms[1:]:
        body.append(f"<h2>{_e(arm)} vs {_e(report['control'])}</h2>" + _table(headers, _comparison_rows(report, arm)))
    for metric, meta in _in_order(report["metrics"]):
        body.append(f"<h2>{_e(meta['label'])}</h2>"
                    f"<img alt='{_e(meta['label'])}: per arm over the nights' "
                    f"src='{metric_plot(metric, meta['label'], arms, nights)}'>")
    body.append("</body></html>")
    return "".join(body)
