"""The run's validation report as a page: `render_html` (the validate stage writes it, with the JSON and the
GX data docs, through the storage layer)."""
from __future__ import annotations

import html

STATUS_ORDER = {"failed": 0, "warned": 1, "skipped": 2, "passed": 3}


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(summary: dict) -> str:
    """A small self-contained page: verdict, per-check results, quarantine counts, link to the data docs."""
    verdict = "PASSED" if summary.get("passed") else "FAILED"
    checks = sorted(summary.get("checks", []), key=lambda c: (STATUS_ORDER.get(c["status"], 9), c["ds"], c["check"]))
    check_rows = [[c["status"], c["ds"], c["dataset"], c["check"], c.get("subject"), c.get("observed"),
                   f"{c.get('comparison') or ''} {'' if c.get('threshold') is None else c['threshold']}".strip(),
                   c["severity"]] for c in checks]
    q_rows = [[dataset, reason, n] for dataset, reasons in sorted(summary.get("quarantine", {}).items())
              for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    day_rows = []
    for ds, per in sorted(summary.get("days", {}).items()):
        for dataset, m in sorted(per.items()):
            day_rows.append([ds, dataset, m.get("rows"), m.get("good"), m.get("quarantined")])
    docs = summary.get("reports", {}).get("data_docs_relative", "data_docs/index.html")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.FAILED{color:#b00}.PASSED{color:#070}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>validation {html.escape(summary['run_date'])}"
             f"</title><style>{style}</style></head><body>",
             f"<h1>Validation dt={html.escape(summary['run_date'])}: <span class='{verdict}'>{verdict}</span></h1>",
             f"<p>Pending days validated: {len(summary.get('pending_days', []))}; skipped (already validated): "
             f"{summary.get('skipped_days', 0)}; {summary.get('seconds', 0):.1f} s. "
             f"<a href='{html.escape(docs)}'>Great Expectations data docs</a></p>",
             "<h2>Checks</h2>",
             _table(["status", "day", "dataset", "check", "subject", "observed", "threshold", "severity"], check_rows),
             "<h2>Quarantine (rows per reason, pending days)</h2>",
             _table(["dataset", "reason", "rows"], q_rows),
             "<h2>Rows per day</h2>",
             _table(["day", "dataset", "rows", "good", "quarantined"], day_rows),
             "</body></html>"]
    return "".join(parts)
