"""Where every dataset lives under DATA_ROOT: the contract's folders plus the pipeline's own.

All paths are strings so that a URI (`s3a://bucket/recs`) works the same as a local folder.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


# Written by the validate stage into each `validated/<dataset>/dt=D/`: the raw files and rules it was validated
# from (`fingerprint`) and the day's metrics. Stitching reads it to notice a day validated again.
VALIDATED_MARKER = "_recs_validated.json"


def day(value: str | dt.date) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def window(run_date: str | dt.date, days: int) -> list[str]:
    """The `days` ISO dates ending on `run_date`, oldest first."""
    end = day(run_date)
    return [(end - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]


@dataclass(frozen=True)
class Layout:
    root: str

    def _p(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    # contract inputs
    def raw(self, dataset: str, ds: str | None = None) -> str:
        return self._p("raw", dataset) if ds is None else self._p("raw", dataset, f"dt={ds}")

    # pipeline-internal, one folder per dataset partitioned by dt
    def validated(self, dataset: str, ds: str | None = None) -> str:
        return self._p("validated", dataset) if ds is None else self._p("validated", dataset, f"dt={ds}")

    def quarantine(self, dataset: str, ds: str | None = None) -> str:
        return self._p("quarantine", dataset) if ds is None else self._p("quarantine", dataset, f"dt={ds}")

    def tuning_history(self) -> str:
        """Self-tuning's settings history, one JSON line per night: what the next night warm-starts from."""
        return self._p("state", "tuning", "history.jsonl")

    def identity_state(self, ds: str) -> str:
        return self._p("state", "identity", f"dt={ds}")

    def partition(self, dataset: str, ds: str) -> str:
        """A dataset partitioned by date at the root: `<dataset>/dt=<ds>`."""
        return self._p(dataset, f"dt={ds}")

    def interactions(self, ds: str) -> str:
        return self.partition("interactions", ds)

    def persons(self, ds: str) -> str:
        """Persons active in the window with their latest context (country, device_type)."""
        return self.partition("persons", ds)

    def segments(self, ds: str) -> str:
        """Popular-item lists per segment, longer than top_n: the fallback candidates."""
        return self.partition("segments", ds)

    def staged_recommendations(self, ds: str) -> str:
        """Ranked lists waiting for the output checks and the model gate before publish."""
        return self._p("staging", "recommendations", f"dt={ds}")

    def ranked_candidates(self, ds: str) -> str:
        """Candidates re-scored by the learned ranker, written once so the list building reads them, not the
        ranker's whole plan again for every branch that uses them."""
        return self._p("staging", "ranked_candidates", f"dt={ds}")

    def holdout(self, ds: str, part: str) -> str:
        """Temporal holdout for the model gate: part `train` (interactions before the cutoff) or `test`."""
        return self._p("holdout", f"dt={ds}", part)

    def model(self, ds: str) -> str:
        return self.partition("models", ds)

    def candidates(self, ds: str) -> str:
        return self.partition("candidates", ds)

    # contract outputs
    def recommendations(self, ds: str) -> str:
        return self.partition("recommendations", ds)

    def identity(self, ds: str) -> str:
        return self.partition("identity", ds)

    def run_lock(self) -> str:
        """The lock a run holds on this DATA_ROOT (`jobs.storage.lock`)."""
        return self._p(".recs-run.lock")

    def kv(self) -> str:
        return self._p("exports", "kv")

    def reports(self, ds: str) -> str:
        return self._p("reports", f"dt={ds}")

    def truth(self, name: str) -> str:
        return self._p("truth", name)
