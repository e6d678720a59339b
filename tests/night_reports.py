"""Hand-written nights' reports, shaped as the stages write them, for the night page's tests (not a test module).

`write_night(root, ds, ...)` writes what a whole night leaves under `reports/dt=D/` (stage records, run summary,
validation report, gate report), `tuning/dt=D/settings.json` and day D's validated marker, with figures that
grow with `scale` so that trends have a shape. `fail_at` makes that stage the one that raised.
"""
from __future__ import annotations

import datetime as dt
import posixpath

from jobs.stages import STAGES
from jobs.storage import io
from jobs.storage.layout import VALIDATED_MARKER, Layout

EVIL = "<script>alert('x')</script>"  # what an input could carry into a report: the page must show it as text


def _events_metrics(scale: float, evil: bool) -> dict:
    reasons = {"bad_price": int(4 * scale), "unknown_item": int(9 * scale)}
    if evil:
        reasons[f"null_required:{EVIL}"] = 1
    return {"rows": int(1000 * scale), "good": int(1000 * scale) - sum(reasons.values()),
            "quarantined": sum(reasons.values()), "reasons": reasons,
            "devices": {"ios": int(300 * scale), "android": int(250 * scale), "desktop": int(400 * scale),
                        "mobile_web": int(40 * scale), "other": int(10 * scale)},
            "event_types": {"product_view": int(700 * scale), "add_to_cart": int(150 * scale),
                            "purchase": int(60 * scale), "login": int(90 * scale), "other": 0}}


def write_night(root: str, ds: str, *, scale: float = 1.0, fail_at: str | None = None, evil: bool = False,
                adopted: bool = False) -> None:
    reports = Layout(root).reports(ds)
    started = dt.datetime.fromisoformat(f"{ds}T02:00:00+00:00")
    status = {}
    for i, stage in enumerate(STAGES):
        at = (started + dt.timedelta(minutes=i)).isoformat(timespec="milliseconds")
        head = {"stage": stage, "run_date": ds, "started_at": at, "finished_at": at, "config_fingerprint": "abc"}
        if fail_at is not None and STAGES.index(stage) > STAGES.index(fail_at):
            status[stage] = "not run"
            continue
        if stage == fail_at:
            io.write_json(f"{reports}/stages/{stage}.json", {
                **head, "status": "failed", "error_type": "QualityGateError", "wall_seconds": 3.0,
                "error": f"events dt={ds}: volume_vs_median_7d FAILED: observed 0.1 {EVIL if evil else ''}",
                "traceback": "Traceback (most recent call last):\n  ...\nQualityGateError: volume"})
            status[stage] = "failed"
            continue
        figures = {"validate": {"passed": True},
                   "stitch": {"persons": int(500 * scale), "new_persons": int(20 * scale), "merges": int(3 * scale),
                              "hubs": 1, "email_hubs": 0, "shared_devices": int(4 * scale),
                              "persons_with_several_ids": 200, "share_attributed": 0.98},
                   "interactions": {"persons": int(480 * scale), "items": 120, "pairs": int(4000 * scale),
                                    "flagged_ids": {"anonymous_id": 1}},
                   "publish": {"lists": "model", "kv_version": f"{ds}-0001", "coverage": {
                       "lists": 520, "person_lists": 500, "segment_lists": 20, "rows": 10400, "distinct_items": 100,
                       "catalog_items": 120, "available_items": 110, "catalog_coverage": 100 / 120,
                       "available_coverage": 100 / 110, "top_item": EVIL if evil else "i001",
                       "top_item_list_share": 0.4 * scale, "exposure_gini": 0.5 + 0.01 * scale,
                       "exposure_top_shares": [[0.01, 0.08], [0.05, 0.25], [0.1, 0.4], [0.2, 0.6], [0.5, 0.9]]}},
                   "gate": {"verdict": "pass", "rule": "checks"}}.get(stage, {})
        io.write_json(f"{reports}/stages/{stage}.json", {**head, "status": "ok", "wall_seconds": 10.0 * (i + 1) * scale,
                                                        **figures})
        status[stage] = "ok"
    summary = {"run_date": ds, "config_fingerprint": "abc", "stage_status": status,
               "wall_seconds": 450.0 * scale, "status": "failed" if fail_at else "published"}
    if fail_at:
        summary.update(failed_stage=fail_at, error="see the stage record")
    io.write_json(f"{reports}/run_summary.json", summary)

    metrics = {"events": _events_metrics(scale, evil),
               "catalog": {"rows": 120, "good": 119, "quarantined": 1, "reasons": {"duplicate_item_id": 1}}}
    io.write_json(f"{reports}/validation.json", {
        "run_date": ds, "passed": fail_at != "validate", "pending_days": [ds], "skipped_days": 89,
        "days": {ds: metrics}, "quarantine": {n: m["reasons"] for n, m in metrics.items()},
        "failures": [{"check": "volume_vs_median_7d", "message": f"events dt={ds}: volume FAILED {EVIL}"}]
        if fail_at == "validate" else [],
        "warnings": [{"check": "schema_extra_column", "message": f"extra column {EVIL if evil else 'x'}"}]})
    if fail_at != "validate":
        marker = posixpath.join(Layout(root).validated("events", ds), VALIDATED_MARKER)
        io.write_json(marker, {"ds": ds, "metrics": metrics})
    if fail_at is None or STAGES.index(fail_at) > STAGES.index("gate"):
        io.write_json(f"{reports}/gate.json", {
            "run_date": ds, "verdict": "pass", "rule": "checks", "k": 10, "reasons": [f"NDCG@10 ok {EVIL}"],
            "warnings": [], "holdout": {"test_persons": 120, "evaluated_persons": 100},
            "metrics": {"model": {"ndcg_at_k": 0.20 + 0.01 * scale, "map_at_k": 0.1, "recall_at_k": 0.3},
                        "popularity_global": {"ndcg_at_k": 0.08, "map_at_k": 0.03, "recall_at_k": 0.1},
                        "popularity_recent_7d": {"ndcg_at_k": 0.09, "map_at_k": 0.04, "recall_at_k": 0.12}}})
    if fail_at is None or STAGES.index(fail_at) > STAGES.index("tune"):
        trials = [{"trial": i, "ndcg_at_k": 0.15 + 0.01 * (i % 5), "seconds": 0.5, "settings": {}} for i in range(12)]
        current = {"ndcg_at_k": 0.15, "map_at_k": 0.05, "recall_at_k": 0.2}
        best = {"ndcg_at_k": 0.19, "map_at_k": 0.07, "recall_at_k": 0.25}
        io.write_json(f"{Layout(root).partition('tuning', ds)}/settings.json", {
            "run_date": ds, "mode": "warm", "settings": {"als.factors": 64, "als.alpha": 3.0}, "adopted": adopted,
            "changes": {"als.alpha": [10.0, 3.0]} if adopted else {}, "pinned": [],
            "figures": {"current": current, "best": best, "best_trial": 4, "required_ndcg_at_k": 0.153},
            "reason": f"best trial NDCG@k 0.19 vs current 0.15 {EVIL if evil else ''}", "trials": trials,
            "search_seconds": 6.0, "budget_seconds": 20})
