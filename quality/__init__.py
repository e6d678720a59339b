"""Data quality for the pipeline: row rules, batch gates (Great Expectations) and output checks.

- `quality.rules`: row-level checks as Spark column expressions; each row gets a `reasons` array.
- `quality.raw`: finds the raw files of a day, inspects their schemas and reads them permissively.
- `quality.batch`: per-day metrics and the trailing-median baselines that the gates judge.
- `quality.suites`: the GX suites run on small metric frames and the catalog; data docs.
- `quality.report`: `validation.json` and `validation.html`.
- `quality.outputs`: checks on the recommendation lists before publish.

`QualityGateError` is what a stopped run raises; `.failures` keeps the structured findings.
"""
from __future__ import annotations


class QualityGateError(RuntimeError):
    """A batch-level check with severity `fail` did not pass; the run must not publish.

    Attributes
    ----------
    failures : list of dict
        One dict per failed check with the keys ``dataset``, ``check``, ``ds``, ``observed``,
        ``threshold``, ``comparison`` (``>=``, ``<=`` or ``==``), ``subject`` (e.g. a device
        type or a file, may be None) and ``message``.
    report : str or None
        Path of the run's ``validation.json``, when it was written.
    """

    def __init__(self, failures: list[dict], report: str | None = None):
        self.failures = list(failures)
        self.report = report
        lines = [f"{len(self.failures)} data quality check(s) failed:"]
        lines += [f"  - {f.get('message') or f}" for f in self.failures]
        if report:
            lines.append(f"report: {report}")
        super().__init__("\n".join(lines))


__all__ = ["QualityGateError"]
