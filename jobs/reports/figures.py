"""A night's figures, gathered from what its stages wrote: one plain dict per night, for the page and its trends.

Sources (all small JSON documents, read through `jobs.storage.datasets`):

| section     | from                                                                              |
|-------------|-----------------------------------------------------------------------------------|
| run, stages | `reports/dt=D/run_summary.json` (`stage_status`), `reports/dt=D/stages/<stage>.json` |
| volumes     | day D's metrics: `validation.json` `days[D]` over the validated day's marker       |
| quarantine  | the same metrics' `reasons` per dataset; `validation.json` for the pending days    |
| identity    | the stitch stage's summary (merges, new persons, the guards' cuts)                 |
| gate        | `reports/dt=D/gate.json`                                                          |
| tuning      | `tuning/dt=D/settings.json`                                                       |
| coverage    | the publish stage's summary (`coverage`, from `quality.outputs.coverage_figures`)  |

A section whose stage did not run in the night's latest attempt is left out (None), so a figure left behind by
an earlier attempt never passes for tonight's.
"""
from __future__ import annotations

import logging

from jobs.stages import STAGES
from jobs.storage.datasets import Datasets
from jobs.storage.layout import window

log = logging.getLogger(__name__)

OK, FAILED, NOT_RUN = "ok", "failed", "not run"
IDENTITY_KEYS = ("persons", "new_persons", "merges", "persons_with_several_ids", "hubs", "email_hubs",
                 "shared_devices", "user_ids", "anonymous_ids", "linked_anonymous_ids", "events", "share_attributed",
                 "days_read")
# what the identity guards cut: links a hub, an email hub or a shared device would otherwise have made
IDENTITY_CUTS = ("hubs", "email_hubs", "shared_devices")
GATE_METRICS = ("ndcg_at_k", "map_at_k", "recall_at_k", "precision_at_k", "hit_rate_at_k", "catalog_coverage",
                "gini_exposure", "novelty", "intra_list_diversity")


def _stage_status(summary: dict, records: dict[str, dict | None], stages) -> dict[str, str]:
    if "stage_status" in summary:  # written by jobs.pipeline.finish_night
        return {name: summary["stage_status"].get(name, NOT_RUN) for name in stages}
    if summary:  # a run summary of the older format: `stages` holds the stages that finished
        done, failed = summary.get("stages") or {}, summary.get("failed_stage")
        return {name: OK if name in done else FAILED if name == failed else NOT_RUN for name in stages}
    return {name: (records[name] or {}).get("status", OK) if records[name] else NOT_RUN for name in stages}


def _day_metrics(data: Datasets, run_date: str, validation: dict | None) -> dict[str, dict]:
    """Day D's metrics per dataset: the marker of the validated day, overlaid with tonight's validation of D
    (the only source when D failed, since its validated folder is then removed)."""
    marker = data.validated_marker(run_date) or {}
    metrics = {name: dict(m) for name, m in (marker.get("metrics") or {}).items()}
    for name, m in ((validation or {}).get("days") or {}).get(run_date, {}).items():
        metrics[name] = {**metrics.get(name, {}), **m}
    return metrics


def night_figures(data: Datasets, run_date: str, stages=STAGES) -> dict | None:
    """The figures of night `run_date`, or None when nothing of that night is on disk (a gap in the trends)."""
    summary = data.read_report(run_date, "run_summary.json") or {}
    records = {name: data.read_report(run_date, f"stages/{name}.json") for name in stages}
    validation = data.read_report(run_date, "validation.json")
    if not summary and not any(records.values()) and validation is None:
        return None
    status = _stage_status(summary, records, stages)
    if status.get("validate") not in (OK, FAILED):
        validation = None  # left by an earlier attempt

    def ran(name: str) -> dict | None:
        """The stage's summary when it finished in the night's latest attempt."""
        return records.get(name) if status.get(name) == OK else None

    failed = next((n for n in stages if status[n] == FAILED), None)
    failure = None
    if failed or summary.get("status") in ("failed", "incomplete"):
        rec = records.get(failed) or {}
        failure = {"stage": failed or summary.get("failed_stage"),
                   "error": rec.get("error") or summary.get("error") or "",
                   "error_type": rec.get("error_type"),
                   "traceback": rec.get("traceback") or summary.get("traceback") or ""}
    figures = {
        "run_date": run_date,
        "status": summary.get("status") or (FAILED if failed else "unknown"),
        "config_fingerprint": summary.get("config_fingerprint"),
        "wall_seconds": summary.get("wall_seconds"),
        "failure": failure,
        "stages": [{"stage": n, "status": status[n],
                    "seconds": (records[n] or {}).get("wall_seconds") if status[n] != NOT_RUN else None}
                   for n in stages],
    }

    metrics = _day_metrics(data, run_date, validation) if status.get("validate") in (OK, FAILED) else {}
    events = metrics.get("events") or {}
    figures["volumes"] = None if not events else {
        "rows": events.get("rows"), "good": events.get("good"), "quarantined": events.get("quarantined"),
        "devices": events.get("devices"), "event_types": events.get("event_types")}
    figures["quarantine"] = None if not metrics else {
        "reasons": {name: m.get("reasons") or {} for name, m in sorted(metrics.items())},
        "rows": {name: m.get("rows") for name, m in sorted(metrics.items())},
        "quarantined": {name: m.get("quarantined") for name, m in sorted(metrics.items())}}
    figures["validation"] = None if validation is None else {
        "passed": validation.get("passed"), "pending_days": len(validation.get("pending_days") or []),
        "skipped_days": validation.get("skipped_days"),
        "failures": [f.get("message") or f.get("check") for f in validation.get("failures") or []],
        "warnings": [f.get("message") or f.get("check") for f in validation.get("warnings") or []],
        "quarantine_pending_days": validation.get("quarantine") or {}}

    stitch = ran("stitch")
    figures["identity"] = None if stitch is None else {k: stitch.get(k) for k in IDENTITY_KEYS}
    interactions = ran("interactions")
    figures["interactions"] = None if interactions is None else {
        k: interactions.get(k) for k in ("persons", "items", "pairs", "purchased_pairs", "flagged_ids",
                                         "holdout_days")}

    gate = data.read_report(run_date, "gate.json") if status.get("gate") in (OK, FAILED) else None
    figures["gate"] = None if gate is None else {
        "verdict": gate.get("verdict"), "rule": gate.get("rule"), "k": gate.get("k"),
        "reasons": gate.get("reasons") or [], "warnings": gate.get("warnings") or [],
        "note": gate.get("note"), "holdout": gate.get("holdout") or {},
        "fallback": gate.get("fallback"),
        "previous_run_date": (gate.get("previous") or {}).get("run_date"),
        "metrics": {name: {m: v for m, v in (values or {}).items() if m in GATE_METRICS}
                    for name, values in (gate.get("metrics") or {}).items()}}

    tuning = data.tuning.read(run_date) if status.get("tune") == OK else None
    figures["tuning"] = None if tuning is None else {
        "mode": tuning.get("mode"), "adopted": tuning.get("adopted"), "reason": tuning.get("reason"),
        "settings": tuning.get("settings") or {}, "changes": tuning.get("changes") or {},
        "figures": tuning.get("figures") or {}, "pinned": tuning.get("pinned") or [],
        "search_seconds": tuning.get("search_seconds"), "budget_seconds": tuning.get("budget_seconds"),
        "trials": [{"trial": t.get("trial"), "ndcg_at_k": t.get("ndcg_at_k"), "seconds": t.get("seconds")}
                   for t in tuning.get("trials") or []]}

    publish = ran("publish")
    figures["coverage"] = None if publish is None else {
        **(publish.get("coverage") or {}), "lists_from": publish.get("lists"), "kv_version": publish.get("kv_version")}

    ab = data.read_report(run_date, "ab_report.json")  # the A/B readout's pointer (jobs/abtest/job.py), if one ran
    figures["ab_report"] = None if ab is None else {k: ab.get(k) for k in ("experiment_id", "verdict", "final")}
    return figures


def trend_figures(data: Datasets, tonight: dict, nights: int, stages=STAGES) -> list[tuple[str, dict | None]]:
    """(night, figures) for the `nights` nights ending on tonight's, oldest first, tonight's as given; None for a
    night without reports, or whose reports cannot be read (logged): a gap in the trends, never an error."""
    run_date = tonight["run_date"]
    out = []
    for ds in window(run_date, nights)[:-1]:
        try:
            out.append((ds, night_figures(data, ds, stages)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("night page %s: the reports of %s cannot be read (%s); shown as a gap", run_date, ds, exc)
            out.append((ds, None))
    return [*out, (run_date, tonight)]
