"""The assessment as one stand-alone HTML page (plots embedded as PNG data URIs) and as a console summary.

Rendering only: the report dict comes in, text goes out; `jobs.assess.job` writes it through `storage.io`.
Every value from the inputs (platform names, event types, attribute names, days) is HTML-escaped.
"""
from __future__ import annotations

import base64
import html
import io as _io

from jobs.assess.verdicts import AREAS, CAVEATS, NOT_READY, READY

COLOURS = {READY: "#1b7e3c", CAVEATS: "#b26a00", NOT_READY: "#b3261e"}
TITLES = {"history": "History", "people": "People", "identity": "Identity fragmentation",
          "catalog": "Catalog attribute coverage", "event_collection": "Event collection"}


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _num(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _plots(report: dict) -> dict[str, list[str]]:
    """One or two small plots per area (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = report["figures"]
    out: dict[str, list[str]] = {a: [] for a in AREAS}
    per_day = f["history"]["events_per_day"]
    if per_day:
        import pandas as pd

        fig, ax = plt.subplots(figsize=(8, 2.6))
        s = pd.Series(per_day)
        s.index = pd.to_datetime(s.index)
        s = s.reindex(pd.date_range(s.index.min(), s.index.max()), fill_value=0)
        ax.plot(s.index, s.to_numpy(), lw=0.8)
        ax.set_title("events per day (days without events at 0)")
        out["history"].append(_png(fig))
    for area, key, title in (("people", ("people", "orders_per_user"), "users by number of orders"),
                             ("identity", ("identity", "devices_per_user", "histogram"),
                              "users by number of anonymous ids")):
        hist = f
        for k in key:
            hist = hist.get(k) or {}
        if hist:
            fig, ax = plt.subplots(figsize=(4.5, 2.6))
            ax.bar(list(hist), list(hist.values()))
            ax.set_title(title)
            out[area].append(_png(fig))
    by_day = f["catalog"].get("coverage_by_day") or {}
    if by_day:
        fig, ax = plt.subplots(figsize=(8, 2.6))
        days = sorted(by_day)
        import pandas as pd

        x = pd.to_datetime(days)
        for attr in f["catalog"]["coverage"]:
            ax.plot(x, [by_day[d][attr] or 0.0 for d in days], label=attr, marker="." if len(days) < 60 else None)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title("share of catalog items with each attribute, per snapshot")
        ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.12))
        out["catalog"].append(_png(fig))
    platforms = f["event_collection"].get("platforms") or {}
    if platforms:
        types = f["event_collection"]["event_types"]
        fig, ax = plt.subplots(figsize=(8, 2.8))
        names = sorted(platforms)
        bottom = [0.0] * len(names)
        for t in types:
            vals = [platforms[p]["event_types"].get(t, 0) / max(platforms[p]["events"], 1) for p in names]
            ax.bar(names, vals, bottom=bottom, label=t)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_title("event types per platform (share of the platform's events)")
        ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.12))
        out["event_collection"].append(_png(fig))
    return out


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _verdict(v: str) -> str:
    return f'<b style="color:{COLOURS.get(v, "#444")}">{_e(v)}</b>'


def _area_details(area: str, f: dict) -> str:
    """A few figures of each area beyond its checks."""
    if area == "history":
        h = f["history"]
        gaps = ", ".join(f"{_e(g['from'])}..{_e(g['to'])} ({g['days']} d)" for g in h["gaps"][:5]) or "none"
        return (f"<p>{_num(h['events'])} events, {_e(h['first_day'])} to {_e(h['last_day'])}: {h['span_days']} days, "
                f"{h['days_with_events']} with events. Longest gaps: {gaps}.</p>")
    if area == "people":
        p = f["people"]
        return (f"<p>{_num(p['users'])} users (user_ids), {_num(p['anonymous_ids'])} anonymous ids, "
                f"{_num(p['buyers'])} users with an order.</p>")
    if area == "identity":
        i = f["identity"]
        d = i["devices_per_user"]
        return (f"<p>{_num(i['anonymous_ids'])} anonymous ids, {_num(i['anonymous_ids_logged_in'])} of them seen "
                f"logged in, {_num(i['one_off_anonymous_ids'])} one-off (one day, never logged in). Anonymous ids "
                f"per user: mean {_num(d['mean'])}, median {_num(d['median'])}, p90 {_num(d['p90'])}, max "
                f"{_num(d['max'])}. {_num(i['untied_purchases'])} of {_num(i['purchases'])} purchases untied.</p>")
    if area == "catalog":
        c = f["catalog"]
        if not c["snapshots"]:
            return "<p>No catalog snapshot.</p>"
        rows = [[_e(a), _num(c["coverage"][a]), f"{_num(tr['from'])} ({_e(tr['from_day'])})", _num(tr["change"])]
                for a, tr in c["trend"].items()]
        return (f"<p>Latest snapshot {_e(c['latest_day'])}: {_num(c['items'])} items, "
                f"{_num(c['items_without_interactions'])} never touched by an event.</p>"
                + _table(["attribute", "coverage", "earlier", "change"], rows))
    e = f["event_collection"]
    rows = []
    for name, p in sorted((e.get("platforms") or {}).items()):
        r = p["recent"]
        types = ", ".join(f"{_e(t)} {_num(n)}" for t, n in sorted(p["event_types"].items()))
        rows.append([_e(name), _e(p["family"]), types, _num(r["views_per_purchase"]), _num(r["searches_per_session"])])
    stopped = "".join(f"<li>{_e(s['platform'])} {_e(s['event_type'])}: none since {_e(s['last_day'])}</li>"
                      for s in e.get("stopped") or [])
    drops = "".join(f"<li>{_e(d['day'])} {_e(d['platform'])} {_e(d['event_type'])}: {d['events']} events, "
                    f"{_num(d['share'])} of that type's (usual {_num(d['usual_share'])})</li>"
                    for d in (e.get("drops") or [])[:10])
    return (_table(["platform", "family", "event types (all days)", f"views / purchase (from {e.get('recent_from')})",
                    "searches / session"], rows)
            + (f"<p>Stopped:</p><ul>{stopped}</ul>" if stopped else "")
            + (f"<p>Drops (first 10):</p><ul>{drops}</ul>" if drops else ""))


def render_html(report: dict) -> str:
    plots = _plots(report)
    a = report["assessment"]
    summary = _table(["area", "verdict"], [[_e(TITLES[x]), _verdict(a["verdicts"][x])] for x in AREAS])
    fixes = "".join(f"<li>{_verdict(fx['verdict'])} <i>{_e(TITLES[fx['area']])}</i>: {_e(fx['fix'])}</li>"
                    for fx in a["fixes"]) or "<li>nothing to fix</li>"
    sections = []
    for area in AREAS:
        rows = [[_e(c["check"]) + (f" ({_e(c['subject'])})" if c["subject"] else ""), _num(c["value"]),
                 _e(c["ready"]), _e(c["usable"]), _verdict(c["verdict"])] for c in a["checks"][area]]
        sections.append(f"<h2>{_e(TITLES[area])}: {_verdict(a['verdicts'][area])}</h2>"
                        + _table(["check", "value", "ready", "usable", "verdict"], rows)
                        + _area_details(area, report["figures"]) + "".join(plots[area]))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>recs data readiness: {_e(report['data_root'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:1em auto}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:90%;text-align:left}}img{{display:block;margin:.5em 0}}</style>
</head><body>
<h1>Is this shop's data ready for personalization?</h1>
<p>{_e(report['data_root'])}, raw inputs up to {_e(report['date'])}; computed in {report['seconds']} s.
Thresholds: config section <code>assess:</code> (README "Data readiness").</p>
{summary}
<h2>Fixes, most important first</h2><ol>{fixes}</ol>
{''.join(sections)}
</body></html>
"""


def console_summary(report: dict, *, max_fixes: int = 5) -> str:
    a = report["assessment"]
    lines = [f"data readiness of {report['data_root']} (raw inputs up to {report['date']}, {report['seconds']} s)"]
    for area in AREAS:
        lines.append(f"  {TITLES[area]:<28} {a['verdicts'][area]}")
    if a["fixes"]:
        lines.append("top fixes:")
        for n, fx in enumerate(a["fixes"][:max_fixes], 1):
            lines.append(f"  {n}. [{fx['verdict']}] {fx['fix']}")
        if len(a["fixes"]) > max_fixes:
            lines.append(f"  ... {len(a['fixes']) - max_fixes} more in the report")
    lines.append(f"report: {report['reports']['json']}")
    lines.append(f"        {report['reports']['html']}")
    return "\n".join(lines)
