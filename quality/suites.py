"""The batch-level gates as Great Expectations 1.x suites, run with the pandas engine on small frames.

Three suites, each validated once per run on one small frame:

- `raw_schema`: one row per (raw file, column) of the pending days with a `status`; a required column
  missing or of another type, or an unreadable file, fails; an unknown extra column warns.
- `events_days`: one row per pending day (`quality.batch.events_day_frame`): the run day's partition is
  present, quarantine / unknown-item / no-identity shares, volume against the trailing 7- and 28-day
  medians, overall and per device type.
- `catalog_days`: one row per pending day with a catalog (`quality.batch.catalog_day_frame`): the run
  day's snapshot is present, the shares of items with a category and a price (required: absolute
  minimums), and each optional attribute's coverage against its own trailing median.

Every expectation carries `meta` (check name, dataset, severity, threshold) so that a GX result turns
into a finding dict. Only the run's own day gates; a failed check on an older pending day is a warning.
"""
from __future__ import annotations

import html
import logging
import math
import os
import tempfile
from dataclasses import dataclass

from quality import batch, rules

log = logging.getLogger(__name__)

SCHEMA_FAIL_STATUSES = ("missing_required", "wrong_type")
SCHEMA_WARN_STATUSES = ("extra_column",)
SCHEMA_INDEX = ["ds", "dataset", "file", "column", "expected", "observed"]


@dataclass(frozen=True)
class Check:
    """One gate: which frame column it reads and what bounds it holds to."""

    dataset: str
    check: str
    column: str | None
    min_value: float | None = None
    max_value: float | None = None
    severity: str = "fail"
    subject: str | None = None
    kind: str = "between"  # between | not_in_set | row_count | non_null_share
    value_set: tuple[str, ...] = ()

    def meta(self) -> dict:
        return {"dataset": self.dataset, "check": self.check, "severity": self.severity, "subject": self.subject,
                "min_value": self.min_value, "max_value": self.max_value}

    def expectation(self):
        import great_expectations.expectations as gxe

        if self.kind == "between":
            return gxe.ExpectColumnValuesToBeBetween(column=self.column, min_value=self.min_value,
                                                     max_value=self.max_value, meta=self.meta())
        if self.kind == "not_in_set":
            return gxe.ExpectColumnValuesToNotBeInSet(column=self.column, value_set=list(self.value_set),
                                                      meta=self.meta())
        if self.kind == "row_count":
            return gxe.ExpectTableRowCountToBeBetween(min_value=int(self.min_value), meta=self.meta())
        if self.kind == "non_null_share":
            return gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(column=self.column, min_value=self.min_value,
                                                                        meta=self.meta())
        raise ValueError(f"unknown check kind {self.kind!r}")


def schema_checks(q) -> list[Check]:
    """Checks of the `raw_schema` frame; `q` is `cfg.quality`."""
    return [Check("*", "schema_drift", "status", kind="not_in_set", value_set=SCHEMA_FAIL_STATUSES,
                  severity=q.on_schema_drift),
            Check("*", "unreadable_file", "status", kind="not_in_set", value_set=(rules.UNREADABLE_FILE,),
                  severity=q.on_schema_drift),
            Check("*", "schema_extra_column", "status", kind="not_in_set", value_set=SCHEMA_WARN_STATUSES,
                  severity="warn")]


def events_day_checks(q) -> list[Check]:
    """Checks of the `events_days` frame."""
    out = [Check("events", "events_partition_present", "rows_run_day", min_value=1, severity=q.on_missing_partition),
           Check("events", "quarantine_share", "quarantine_share", max_value=q.max_quarantine_share,
                 severity=q.on_quarantine_share),
           Check("events", "content_duplicates", "content_twin_share", max_value=q.content_duplicate_max_share,
                 severity=q.on_content_duplicates),
           Check("events", "unknown_item_share", "unknown_item_share", max_value=q.max_unknown_item_share,
                 severity=q.on_unknown_items),
           Check("events", "no_identity_share", "no_identity_share", max_value=q.max_no_identity_share,
                 severity=q.on_missing_identity)]
    for n in batch.BASELINE_DAYS:
        out.append(Check("events", f"volume_vs_median_{n}d", f"volume_ratio_{n}d", min_value=q.volume_min_ratio,
                         max_value=q.volume_max_ratio, severity=q.on_volume_anomaly))
        for dev in rules.DEVICE_TYPES:
            out.append(Check("events", f"device_volume_vs_median_{n}d", batch.device_column(n, dev),
                             min_value=q.device_min_ratio, severity=q.on_volume_anomaly, subject=dev))
    return out


def catalog_day_checks(q) -> list[Check]:
    """Checks of the `catalog_days` frame (`quality.batch.catalog_day_frame`)."""
    out = [Check("catalog", "catalog_present", "items_run_day", min_value=1, severity=q.on_missing_partition),
           Check("catalog", "catalog_category_coverage", "category_coverage", min_value=q.min_catalog_category_coverage,
                 severity=q.on_catalog_coverage),
           Check("catalog", "catalog_price_coverage", "price_coverage", min_value=q.min_catalog_price_coverage,
                 severity=q.on_catalog_coverage)]
    out += [Check("catalog", "catalog_attribute_coverage_vs_trailing", batch.coverage_column(a),
                  min_value=q.catalog_attribute_min_ratio, severity=q.on_catalog_coverage, subject=a)
            for a in q.catalog_attributes]
    return out


def _plain(v):
    """numpy scalars and NaN to plain JSON-able values."""
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def finding(*, dataset: str, check: str, ds: str, run_date: str, severity: str, passed: bool | None,
            observed=None, threshold=None, comparison: str | None = None, subject: str | None = None,
            detail: str = "") -> dict:
    """A check result as a plain dict; `status` is passed | failed | warned | skipped.

    Only the run's own day can fail; a failing check on an older pending day is a warning.
    """
    effective = severity if ds == run_date else "warn"
    status = "skipped" if passed is None else "passed" if passed else ("failed" if effective == "fail" else "warned")
    what = f"{check}" + (f" [{subject}]" if subject else "")
    if passed is None:
        msg = f"{dataset} dt={ds}: {what} skipped ({detail or 'not enough data'})"
    else:
        verdict = "ok" if passed else ("FAILED" if status == "failed" else "warning")
        msg = (f"{dataset} dt={ds}: {what} {verdict}: observed {_fmt(observed)}, "
               f"threshold {comparison} {_fmt(threshold)}" + (f" ({detail})" if detail else ""))
    return {"dataset": dataset, "check": check, "ds": ds, "subject": subject, "observed": _plain(observed),
            "threshold": _plain(threshold), "comparison": comparison, "severity": effective, "status": status,
            "message": msg}


class GateRunner:
    """An ephemeral GX context that validates the run's frames and renders data docs into `docs_dir`."""

    def __init__(self, docs_dir: str, run_name: str):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self.run_name = run_name
        self.docs_dir = docs_dir
        self.ctx = gx.get_context(mode="ephemeral")
        self.ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.ctx.add_data_docs_site(site_name="recs", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}})
        self.source = self.ctx.data_sources.add_or_update_pandas(name="recs_quality")

    def validate(self, name: str, frame, checks: list[Check], index_columns: list[str] | None = None):
        """Runs suite `name` (one expectation per check) on a pandas frame; returns the GX results."""
        from great_expectations.core.run_identifier import RunIdentifier

        gx = self._gx
        batch_def = self.source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("run")
        suite = self.ctx.suites.add(gx.ExpectationSuite(name=name))
        for c in checks:
            suite.add_expectation(c.expectation())
        vd = self.ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_def, suite=suite))
        result_format = {"result_format": "COMPLETE"}
        if index_columns:
            result_format["unexpected_index_column_names"] = index_columns
        return vd.run(batch_parameters={"dataframe": frame}, result_format=result_format,
                      run_id=RunIdentifier(run_name=self.run_name))

    def build_docs(self) -> str:
        """Renders the data docs site; returns the folder holding `index.html`."""
        self.ctx.build_data_docs(site_names=["recs"])
        return self.docs_dir


def _safe(v):
    """Input-derived text as GX may render it in the data docs: HTML-escaped before GX sees it (we do not
    rely on GX's renderers to escape), so a file or column name can never inject markup."""
    return None if v is None else html.escape(str(v))


def schema_frame(rows: list[dict]):
    """The `raw_schema` frame: one row per schema finding (`quality.raw.inspect_files`).

    Names and types come from the inputs, so they are passed to GX HTML-escaped; `row` points back to
    the original finding in `rows` (what `schema_findings` reports).
    """
    import pandas as pd

    records = [{**{k: _safe(r.get(k)) for k in SCHEMA_INDEX}, "status": r["status"], "row": i}
               for i, r in enumerate(rows)]
    frame = pd.DataFrame.from_records(records, columns=SCHEMA_INDEX + ["status", "row"])
    return frame.astype("object").where(frame.notna(), None)


def _by_meta(result) -> list[tuple[dict, object]]:
    return [(r.expectation_config.meta or {}, r) for r in result.results]


def _bounds(meta: dict, observed) -> tuple[float | None, str | None]:
    lo, hi = meta.get("min_value"), meta.get("max_value")
    if observed is not None and lo is not None and observed < lo:
        return lo, ">="
    if observed is not None and hi is not None and observed > hi:
        return hi, "<="
    if lo is not None and hi is not None:
        return lo, ">="  # passed: report the lower bound (the one that usually matters)
    return (lo, ">=") if lo is not None else (hi, "<=")


def day_findings(result, frame, run_date: str) -> list[dict]:
    """Findings of a per-day suite (`events_days`, `catalog_days`).

    Every check of the run day, and the non-passing ones of older days.
    """
    out = []
    for meta, r in _by_meta(result):
        column = r.expectation_config.kwargs.get("column")
        bad_days = {str(u["ds"]) for u in (r.result.get("unexpected_index_list") or [])}
        for rec in frame.to_dict("records"):
            ds = str(rec["ds"])
            observed = _plain(rec.get(column))
            passed = None if observed is None else ds not in bad_days
            if passed and ds != run_date:
                continue
            if passed is None and ds != run_date:
                continue
            threshold, comparison = _bounds(meta, observed)
            detail = ""
            if "_vs_median_" in meta["check"]:
                n = meta["check"].rsplit("_", 1)[1].rstrip("d")
                median = _plain(rec.get(f"median_{n}d"))
                if meta.get("subject"):
                    detail = f"the device type's day volume / its trailing {n}-day median"
                else:
                    detail = f"day volume / trailing {n}-day median" + (f" of {_fmt(median)} events" if median else "")
                if passed is None:
                    detail = "too few trailing days with events, or a device type below device_min_share"
            elif meta["check"] == "catalog_attribute_coverage_vs_trailing":
                detail = ("the day's share of items with the attribute / its trailing median" if passed is not None else
                          "a new shop (too few trailing catalog days) or an attribute the shop does not send")
            elif passed is None:
                detail = "no rows"
            out.append(finding(dataset=meta["dataset"], check=meta["check"], ds=ds, run_date=run_date,
                               severity=meta["severity"], passed=passed, observed=observed, threshold=threshold,
                               comparison=comparison, subject=meta.get("subject"), detail=detail))
    return out


def schema_findings(result, run_date: str, days_datasets: list[tuple[str, str]], rows: list[dict]) -> list[dict]:
    """Findings of the `raw_schema` suite: one per problem row, and one passed per (dataset, run day).

    `rows` are the findings `schema_frame` was made from (the findings carry their original text).
    """
    out, flagged = [], set()
    for meta, r in _by_meta(result):
        for hit in r.result.get("unexpected_index_list") or []:
            u = rows[int(hit["row"])]
            ds, dataset = str(u["ds"]), str(u["dataset"])
            flagged.add((ds, dataset))
            status = u.get("status")
            file, column = _plain(u.get("file")), _plain(u.get("column"))
            subject = ", ".join(p for p in (f"file {file}" if file else "", f"column {column}" if column else "") if p)
            if status == rules.UNREADABLE_FILE:
                detail = f"not a readable file: {u.get('observed')}"
                observed, threshold = "unreadable", u.get("expected")
            elif status == "missing_required":
                detail = "required column missing"
                observed, threshold = u.get("observed") or "missing", u.get("expected")
            elif status == "wrong_type":
                detail = "column of another type than the contract's"
                observed, threshold = u.get("observed"), u.get("expected")
            else:
                detail = "column not in the contract"
                observed, threshold = u.get("observed"), "absent"
            out.append(finding(dataset=dataset, check=meta["check"], ds=ds, run_date=run_date,
                               severity=meta["severity"], passed=False, observed=_plain(observed),
                               threshold=_plain(threshold), comparison="==", subject=subject, detail=detail))
    for ds, dataset in days_datasets:
        if ds == run_date and (ds, dataset) not in flagged:
            out.append(finding(dataset=dataset, check="schema_drift", ds=ds, run_date=run_date, severity="fail",
                               passed=True, observed="contract schema", threshold="contract schema", comparison="=="))
    return out


def new_docs_dir() -> str:
    """A local temporary folder for the data docs before they are copied under `reports/`."""
    return tempfile.mkdtemp(prefix="recs-data-docs-")
