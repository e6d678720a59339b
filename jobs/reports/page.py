"""The night's page as one self-contained HTML document: `render_page(tonight, trend)`, a pure function.

Every value from the data is HTML-escaped (item ids, reasons, error messages, settings); plots are embedded as
PNG `data:` URIs (`jobs.reports.plots`), so the file can be mailed or opened from a bucket as it is. Links point
only at the night's own reports beside it (validation page, GX data docs, JSON).
"""
from __future__ import annotations

import html
import json

from jobs.reports import plots
from jobs.reports.figures import GATE_METRICS

# (heading, plot) in page order; the headings are what a reader (and the page's test) looks for
SECTIONS = (
    ("Stage times", plots.stage_times),
    ("Volumes by device type", plots.volumes_by_device),
    ("Volumes by event type", plots.volumes_by_event_type),
    ("Quarantine by reason", plots.quarantine),
    ("Identity: merges and cuts", plots.identity),
    ("Model gate", plots.gate),
    ("Tuning", plots.tuning),
    ("Coverage and exposure", plots.coverage),
)
STATUS_CLASS = {"published": "good", "completed": "good", "published_popularity_fallback": "warn",
                "failed": "bad", "incomplete": "bad"}
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em 2em;color:#212121;max-width:1100px}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.4em 0 .8em;font-size:.85em}td,th{border:1px solid #ddd;padding:2px 8px;
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f5f5f5}
img{display:block;max-width:100%;border:1px solid #eee;margin:.3em 0}
.good{color:#2e7d32}.warn{color:#ef6c00}.bad{color:#c62828}.muted{color:#757575}
pre{background:#fafafa;border:1px solid #eee;padding:.6em;overflow-x:auto;font-size:.8em;white-space:pre-wrap}
.tables{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return _e(value)


def _cell(value) -> str:
    if isinstance(value, (int, float)) or value is None:
        return f"<td class='n'>{_num(value)}</td>"
    if isinstance(value, (dict, list)):
        return f"<td>{_e(json.dumps(value, sort_keys=True, default=str))}</td>"
    return f"<td>{_e(value)}</td>"


def _table(headers: list[str], rows: list[list]) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs(d: dict | None, keys=None) -> list[list]:
    d = d or {}
    return [[k, d.get(k)] for k in (keys or d)]


def _missing(what: str) -> str:
    return f"<p class='muted'>{_e(what)}</p>"


def _list(items: list) -> str:
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>" if items else ""


# ------------------------------------------------------------------------------------------- section texts

def _stage_text(f: dict) -> str:
    return _table(["stage", "status", "seconds"], [[s["stage"], s["status"], s["seconds"]] for s in f["stages"]])


def _volume_text(f: dict, key: str) -> str:
    v = f.get("volumes")
    if not v:
        return _missing("no volume figures for this day (validation did not record them)")
    counts = v.get(key) or {}
    total = [["all events", v.get("rows")], ["good", v.get("good")], ["quarantined", v.get("quarantined")]]
    return ("<div class='tables'>" + _table(["", "events"], total)
            + _table([key.replace("_", " ").rstrip("s"), "events"], sorted(([k, n] for k, n in counts.items()),
                                                                              key=lambda r: -(r[1] or 0)))
            + "</div>")


def _quarantine_text(f: dict) -> str:
    q, val = f.get("quarantine"), f.get("validation")
    parts = []
    if q:
        rows = [[name, reason, n] for name, reasons in q["reasons"].items()
                for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
        shares = [[name, q["rows"].get(name), q["quarantined"].get(name)] for name in q["rows"]]
        parts.append("<div class='tables'>" + _table(["dataset", "rows", "quarantined"], shares)
                     + _table(["dataset", "reason", "rows"], rows) + "</div>")
    else:
        parts.append(_missing("no validation figures for this day"))
    if val:
        verdict = "<span class='good'>passed</span>" if val["passed"] else "<span class='bad'>FAILED</span>"
        parts.append(f"<p>Validation {verdict}: {val['pending_days']} day(s) validated tonight, "
                     f"{_num(val['skipped_days'])} already validated. "
                     "<a href='validation.html'>validation report</a> · "
                     "<a href='data_docs/index.html'>Great Expectations data docs</a></p>")
        if val["failures"]:
            parts.append("<p class='bad'>Failed checks:</p>" + _list(val["failures"]))
        if val["warnings"]:
            parts.append("<p class='warn'>Warnings:</p>" + _list(val["warnings"]))
        pending = [[name, reason, n] for name, reasons in sorted(val["quarantine_pending_days"].items())
                   for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
        if val["pending_days"] > 1 and pending:
            parts.append(f"<p>Quarantined over the {val['pending_days']} days validated tonight:</p>"
                         + _table(["dataset", "reason", "rows"], pending))
    return "".join(parts)


def _identity_text(f: dict) -> str:
    ident = f.get("identity")
    if not ident:
        return _missing("the stitch stage did not finish this night")
    inter = f.get("interactions") or {}
    rows = _pairs(ident) + ([["persons trained on", inter.get("persons")], ["items", inter.get("items")],
                             ["person × item pairs", inter.get("pairs")],
                             ["ids flagged as not a person", sum((inter.get("flagged_ids") or {}).values())
                              if isinstance(inter.get("flagged_ids"), dict) else inter.get("flagged_ids")]]
                            if inter else [])
    return ("<p>Merges: earlier persons joined into one tonight. Cuts: links the guards refused, a hub (an "
            "anonymous id on too many accounts), an email hub, a shared device (kept with one account).</p>"
            + _table(["figure", "value"], rows))


def _gate_text(f: dict) -> str:
    g = f.get("gate")
    if not g:
        return _missing("the gate did not run this night")
    css = {"pass": "good", "fallback": "warn", "fail": "bad"}.get(g.get("verdict"), "muted")
    parts = [f"<p>Verdict: <b class='{css}'>{_e(g.get('verdict'))}</b> (rule {_e(g.get('rule'))}). "
             f"<a href='gate.json'>gate.json</a></p>", _list(g.get("reasons") or []),
             _list([f"warning: {w}" for w in g.get("warnings") or []])]
    if g.get("note"):
        parts.append(f"<p>{_e(g['note'])}</p>")
    metrics = g.get("metrics") or {}
    if metrics:
        names = [m for m in GATE_METRICS if any(m in values for values in metrics.values())]
        recipes = sorted(metrics, key=lambda n: (n != "model", n))
        parts.append(_table(["recipe", *names], [[r, *[metrics[r].get(m) for m in names]] for r in recipes]))
    holdout = g.get("holdout") or {}
    if holdout:
        parts.append(_table(["holdout", "value"], _pairs(holdout)))
    return "".join(parts)


def _tuning_text(f: dict) -> str:
    t = f.get("tuning")
    if not t:
        return _missing("the tune stage did not finish this night")
    adopted = "<span class='good'>adopted</span>" if t.get("adopted") else "kept"
    figs = t.get("figures") or {}
    rows = [["mode", t.get("mode")], ["new settings", "adopted" if t.get("adopted") else "not adopted"],
            ["trials", len(t.get("trials") or [])], ["search seconds", t.get("search_seconds")],
            ["budget seconds", t.get("budget_seconds")],
            ["NDCG current settings", (figs.get("current") or {}).get("ndcg_at_k")],
            ["NDCG best trial", (figs.get("best") or {}).get("ndcg_at_k")],
            ["NDCG required to adopt", figs.get("required_ndcg_at_k")]]
    changes = [[k, before, after] for k, (before, after) in sorted((t.get("changes") or {}).items())]
    pinned = set(t.get("pinned") or [])
    settings = [[k, v, "pinned" if k in pinned else ""] for k, v in sorted((t.get("settings") or {}).items())]
    return (f"<p>Settings {adopted}: {_e(t.get('reason'))}</p><div class='tables'>"
            + _table(["figure", "value"], rows) + _table(["setting used tonight", "value", ""], settings)
            + (_table(["changed", "before", "after"], changes) if changes else "") + "</div>")


def _coverage_text(f: dict) -> str:
    c = f.get("coverage")
    if not c:
        return _missing("the publish stage did not finish this night: no lists were published")
    keys = ["lists_from", "kv_version", "lists", "person_lists", "segment_lists", "rows", "catalog_items", "available_items",
            "distinct_items", "catalog_coverage", "available_coverage", "exposure_gini", "top_item",
            "top_item_list_share"]
    shares = [[f"top {p:.0%} of items", s] for p, s in c.get("exposure_top_shares") or []]
    return ("<div class='tables'>" + _table(["published lists", "value"], _pairs(c, keys))
            + _table(["items (most shown first)", "share of person-list slots"], shares) + "</div>")


TEXTS = {"Stage times": _stage_text,
         "Volumes by device type": lambda f: _volume_text(f, "devices"),
         "Volumes by event type": lambda f: _volume_text(f, "event_types"),
         "Quarantine by reason": _quarantine_text,
         "Identity: merges and cuts": _identity_text,
         "Model gate": _gate_text,
         "Tuning": _tuning_text,
         "Coverage and exposure": _coverage_text}


# ------------------------------------------------------------------------------------------------- the page

def _failure(f: dict) -> str:
    fail = f.get("failure")
    if not fail:
        return ""
    return (f"<h2 id='failure' class='bad'>Failure</h2><p class='bad'>Stage <b>{_e(fail.get('stage'))}</b> failed"
            + (f" ({_e(fail.get('error_type'))})" if fail.get("error_type") else "") + ":</p>"
            f"<pre>{_e(fail.get('error'))}</pre>"
            + (f"<details><summary>traceback</summary><pre>{_e(fail.get('traceback'))}</pre></details>"
               if fail.get("traceback") else "")
            + "<p>Nothing of this night was published unless the publish stage shows ok; the lists live before "
              "stay live.</p>")


def _ab_link(tonight: dict) -> str:
    """A link to the night's A/B report (`reports/ab/E/dt=D/report.html`, beside `reports/dt=D/`), if one ran."""
    from urllib.parse import quote

    ab = tonight.get("ab_report")
    if not ab or not ab.get("experiment_id"):
        return ""
    href = f"../ab/{quote(str(ab['experiment_id']), safe='')}/dt={quote(tonight['run_date'], safe='')}/report.html"
    return (f" · <a href='{_e(href)}'>A/B report {_e(ab['experiment_id'])}: {_e(ab.get('verdict'))}"
            f"{' (final)' if ab.get('final') else ''}</a>")


def render_page(tonight: dict, trend: list[tuple[str, dict | None]]) -> str:
    """The page of night `tonight["run_date"]`; `trend` is (night, figures or None) for the last nights, oldest
    first, ending with tonight."""
    run_date, status = tonight["run_date"], tonight.get("status") or "unknown"
    gaps = sum(1 for _, f in trend if f is None)
    head = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>recs night {_e(run_date)}: {_e(status)}</title><style>{STYLE}</style></head><body>")
    intro = (f"<h1>Night {_e(run_date)}: <span class='{STATUS_CLASS.get(status, 'muted')}'>{_e(status)}</span></h1>"
             f"<p class='muted'>config {_e(tonight.get('config_fingerprint'))} · "
             f"{_num(tonight.get('wall_seconds'))} s in stages · trends over {len(trend)} nights "
             f"({_e(trend[0][0])} to {_e(trend[-1][0])}), {gaps} without reports (shaded) · "
             "<a href='run_summary.json'>run_summary.json</a>" + _ab_link(tonight) + "</p>")
    toc = "<p>" + " · ".join(f"<a href='#s{i}'>{_e(h)}</a>" for i, (h, _) in enumerate(SECTIONS)) + "</p>"
    body = [head, intro, toc, _failure(tonight)]
    for i, (heading, plot) in enumerate(SECTIONS):
        body.append(f"<h2 id='s{i}'>{_e(heading)}</h2>"
                    f"<img alt='{_e(heading)}: tonight and the last nights' src='{plot(tonight, trend)}'>"
                    + TEXTS[heading](tonight))
    body.append("</body></html>")
    return "".join(body)
