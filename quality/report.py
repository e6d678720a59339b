"""The run's validation report: `reports/dt=D/validation.json`, `validation.html` and the GX data docs."""
from __future__ import annotations

import html
import json
import posixpath
import uuid

import fsspec

STATUS_ORDER = {"failed": 0, "warned": 1, "skipped": 2, "passed": 3}


def publish_docs(local_dir: str, reports_dir: str) -> str:
    """Copies a locally built data docs site to `<reports_dir>/data_docs/` (replaced whole); returns its index.

    `reports_dir` is a local path or any fsspec URI; the site is uploaded to a hidden sibling first and
    swapped in, so a reader never sees half a site.
    """
    final = posixpath.join(reports_dir, "data_docs")
    fs, final_p = fsspec.core.url_to_fs(final)
    tmp = f"{final_p}.tmp-{uuid.uuid4().hex[:8]}"
    fs.makedirs(posixpath.dirname(final_p), exist_ok=True)
    fs.put(local_dir.rstrip("/") + "/", tmp, recursive=True)
    if fs.exists(final_p):
        old = f"{final_p}.old-{uuid.uuid4().hex[:8]}"
        fs.mv(final_p, old, recursive=True)
        fs.mv(tmp, final_p, recursive=True)
        fs.rm(old, recursive=True)
    else:
        fs.mv(tmp, final_p, recursive=True)
    return posixpath.join(final, "index.html")


def _write_text(path: str, text: str) -> None:
    """Writes a small file via a temporary sibling, so a reader sees the old or the new version."""
    fs, p = fsspec.core.url_to_fs(path)
    fs.makedirs(posixpath.dirname(p), exist_ok=True)
    tmp = f"{p}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "w") as f:
        f.write(text)
    fs.mv(tmp, p)


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


def write_reports(summary: dict, reports_dir: str) -> dict:
    """Writes `validation.json` and `validation.html` into `reports_dir`; returns their paths."""
    json_path = posixpath.join(reports_dir, "validation.json")
    html_path = posixpath.join(reports_dir, "validation.html")
    _write_text(json_path, json.dumps(summary, indent=1, sort_keys=True, default=str))
    _write_text(html_path, render_html(summary))
    return {"json": json_path, "html": html_path}
