"""Every dataset that one stage hands to the next, declared once: where it lives, its schema, how it is read
and written.

A stage never builds a path or knows another stage's module: it asks `Datasets(data_root)` for a dataset by
name and reads or writes one date of it (as Kedro's data catalog does for its nodes). Writes are atomic
(`jobs.storage.io`), reads use the declared schema, and a missing partition is an error that names the
dataset, the date and the path.

| dataset              | written by   | read by                         | schema (schemas/*.json) |
|----------------------|--------------|---------------------------------|-------------------------|
| validated events     | validate     | stitch, interactions, rank      | events                  |
| validated catalog    | validate     | retrieve, rank, publish, gate   | catalog                 |
| identity map         | stitch       | publish                         | identity                |
| interactions         | interactions | train, retrieve, rank, publish  | interactions            |
| persons              | interactions | rank, gate                      | persons                 |
| purchases            | interactions | retrieve, rank, publish (`jobs.exclusions`) | purchases   |
| flagged ids          | interactions | rank                            | flagged_ids             |
| holdout train / test | interactions | gate, tune, `recs tune`         | interactions / pairs    |
| holdout cuts         | interactions | gate, tune, `recs tune` (per_person) | holdout_cuts       |
| holdout info         | interactions | gate, tune, `recs tune`         | holdout_info (JSON)     |
| holdout model        | gate or rank (the first to need it) | the other             | factors + model.json    |
| model                | train        | gate, retrieve, rank            | factors + model.json    |
| item index (model/index) | retrieve | retrieve's executors            | ScaNN files + index.json |
| candidates           | retrieve     | rank                            | candidates              |
| previous candidates  | retrieve     | rank (an arm serving `previous`) | candidates             |
| ranked candidates    | rank (the ranker) | rank (the lists)           | candidates              |
| segment lists        | rank         | (reports)                       | segments                |
| staged lists         | rank         | publish                         | recommendations         |
| published lists      | publish      | serving export                  | recommendations         |
| tuning (settings.json) | tune       | every stage after tune (`jobs.pipeline.run_stage`) | tuning (JSON)  |
| tuning history       | tune         | tune (the next night's warm start) | tuning (JSON lines)  |
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from jobs.storage import io
from jobs.storage.layout import VALIDATED_MARKER, Layout, window

PUBLISHED_MARKER = "PUBLISHED"
WITHDRAWN_MARKER = "WITHDRAWN"  # a PUBLISHED marker taken back by a rollback, kept for the record
MODEL_META = "model.json"
INDEX_DIR = "index"
EVALUATION_FILE = "evaluation.json"


@dataclass(frozen=True)
class PartitionedDataset:
    """One dataset partitioned by date: `path(ds)` is its `dt=` folder."""

    name: str
    layout: Layout
    path_of: Callable[[Layout, str], str]
    schema: str | None

    def path(self, ds: str) -> str:
        return self.path_of(self.layout, ds)

    def exists(self, ds: str) -> bool:
        return io.exists(self.path(ds))

    def has_data(self, ds: str) -> bool:
        return io.has_data(self.path(ds))

    def _require(self, ds: str) -> str:
        path = self.path(ds)
        if not io.exists(path):
            raise FileNotFoundError(f"no {self.name} for {ds} at {path}: run the stage that writes it first")
        return path

    def read_spark(self, spark, ds: str, columns: list[str] | None = None):
        df = io.read_spark_parquet(spark, self._require(ds), self.schema)
        return df.select(*columns) if columns else df

    def read_arrow(self, ds: str, columns: list[str] | None = None) -> pa.Table:
        """The partition as an Arrow table; a folder without data files reads as an empty table."""
        return io.read_arrow_parquet(self._require(ds), columns, schema=self._arrow_schema(), what=self.name)

    def write_spark(self, df, ds: str) -> str:
        return io.write_spark_parquet(df, self.path(ds))

    def write_arrow(self, table: pa.Table, ds: str) -> str:
        return io.write_arrow_parquet(table, self.path(ds))

    def _arrow_schema(self) -> pa.Schema | None:
        if self.schema is None:
            return None
        from schemas import load

        return load(self.schema).arrow()


def _check_document(doc: dict, schema: str, what: str) -> dict:
    from schemas import load

    missing = [f for f in load(schema).required if f not in doc]
    if missing:
        raise ValueError(f"{what}: missing required field(s) {missing} (schema {schema!r})")
    return doc


@dataclass(frozen=True)
class JsonDocument:
    """One JSON document per date (`<folder>/dt=D/<file>`), checked against its schema's required fields."""

    name: str
    layout: Layout
    path_of: Callable[[Layout, str], str]
    schema: str

    def path(self, ds: str) -> str:
        return self.path_of(self.layout, ds)

    def exists(self, ds: str) -> bool:
        return io.exists(self.path(ds))

    def read(self, ds: str) -> dict | None:
        """The document of `ds`, or None when there is none."""
        doc = io.read_json(self.path(ds))
        return None if doc is None else _check_document(doc, self.schema, f"{self.name} at {self.path(ds)}")

    def write(self, ds: str, doc: dict) -> str:
        io.write_json(self.path(ds), _check_document(io.json_ready(doc), self.schema, self.name))
        return self.path(ds)


@dataclass(frozen=True)
class JsonLinesHistory:
    """A small history carried from night to night: one JSON line per `run_date`; writing a date again replaces
    its line (a re-run night does not count twice). The whole file is rewritten atomically."""

    name: str
    path: str
    schema: str

    def records(self) -> list[dict]:
        if not io.exists(self.path):
            return []
        fs, p = io.fs_for(self.path)
        with fs.open(p, "r") as f:
            return [json.loads(line) for line in f if line.strip()]

    def before(self, ds: str) -> list[dict]:
        """Records of nights before `ds`, oldest first."""
        return sorted((r for r in self.records() if r["run_date"] < ds), key=lambda r: r["run_date"])

    def put(self, record: dict) -> str:
        record = _check_document(io.json_ready(record), self.schema, self.name)
        kept = [r for r in self.records() if r["run_date"] != record["run_date"]]
        lines = sorted([*kept, record], key=lambda r: r["run_date"])
        io.write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in lines))
        return self.path


class ModelStore:
    """The night's model folder: factor tables with their ids, `model.json`, the gate's `evaluation.json`
    and the `PUBLISHED` marker of the model whose lists went live. `path_of` places another model of the
    same form (the holdout model beside the holdout)."""

    def __init__(self, layout: Layout, path_of: Callable[[Layout, str], str] | None = None):
        self.layout = layout
        self.path_of = path_of or Layout.model

    def path(self, ds: str) -> str:
        return self.path_of(self.layout, ds)

    def write(self, ds: str, tables: dict[str, pa.Table], meta: dict) -> str:
        """Writes `<name>.parquet` per table and `model.json`, all at once (the folder is replaced whole)."""
        import pyarrow.parquet as pq

        out = self.path(ds)
        with io.atomic_dir(out) as tmp:
            fs, p = io.fs_for(tmp)
            fs.makedirs(p, exist_ok=True)
            for name, table in tables.items():
                pq.write_table(table, f"{p}/{name}.parquet", filesystem=fs)
            io.write_json(f"{tmp}/{MODEL_META}", meta)
        return out

    def write_spark(self, ds: str, frames: dict, meta: dict) -> str:
        """`write` for factor tables that are Spark DataFrames: the executors write `<name>.parquet/` (a folder
        of part files, read the same way as the single file), then `model.json`; the folder is replaced whole."""
        out = self.path(ds)
        with io.atomic_dir(out) as tmp:
            for name, frame in frames.items():
                frame.write.parquet(f"{tmp}/{name}.parquet")
            io.write_json(f"{tmp}/{MODEL_META}", meta)
        return out

    def read(self, ds: str, names: tuple[str, ...]) -> tuple[dict[str, pa.Table], dict]:
        import pyarrow.parquet as pq

        meta = self.meta(ds)
        fs, p = io.fs_for(self.path(ds))
        return {name: pq.read_table(f"{p}/{name}.parquet", filesystem=fs) for name in names}, meta

    def meta(self, ds: str) -> dict:
        meta = io.read_json(f"{self.path(ds)}/{MODEL_META}")
        if meta is None:
            raise FileNotFoundError(f"no model for {ds} at {self.path(ds)}: run the train stage for that date first")
        return meta

    def factors_path(self, ds: str, name: str) -> str:
        """One factor table's Parquet file (`persons` or `items`), for readers that stream it (Spark)."""
        return f"{self.path(ds)}/{name}.parquet"

    def index_path(self, ds: str) -> str:
        """The night's saved item index (`jobs.models.ann.save_index`), beside the factors it was built from."""
        return f"{self.path(ds)}/{INDEX_DIR}"

    def write_index(self, ds: str, local_dir: str) -> str:
        """Moves an index built in `local_dir` beside D's model, replacing any earlier one whole. A retrain
        (`write`) replaces the model folder and so drops a stale index with it."""
        if not io.exists(f"{self.path(ds)}/{MODEL_META}"):
            raise FileNotFoundError(f"no model for {ds} at {self.path(ds)}: the index goes beside a trained model")
        return io.put_local_dir(local_dir, self.index_path(ds))

    def write_evaluation(self, ds: str, evaluation: dict) -> None:
        io.write_json(f"{self.path(ds)}/{EVALUATION_FILE}", evaluation)

    def mark_published(self, ds: str) -> str:
        """Marks D's model as the one whose lists are live; a later night's gate compares against it."""
        meta = self.meta(ds)
        marker = f"{self.path(ds)}/{PUBLISHED_MARKER}"
        io.write_json(marker, {"run_date": ds, "model_version": meta.get("model_version")})
        return marker

    def align_published(self, live_run_date: str, live_model_version: str | None, reason: str) -> dict:
        """After a rollback to the lists of `live_run_date`: the models published on later nights are no longer
        live, so their PUBLISHED markers become WITHDRAWN (the next gate then compares against the live model,
        not a withdrawn one); a model withdrawn earlier whose lists are live again (a roll forward) is marked
        published again. Returns the days withdrawn and restored."""
        root = posixpath.dirname(self.path("1970-01-01"))
        withdrawn, restored = [], []
        for day in io.partition_dates(root):
            path = self.path(day)
            fs, p = io.fs_for(path)
            if day > live_run_date and io.exists(f"{path}/{PUBLISHED_MARKER}"):
                marker = io.read_json(f"{path}/{PUBLISHED_MARKER}", {}) or {}
                io.write_json(f"{path}/{WITHDRAWN_MARKER}", {**marker, "reason": reason, "live_run_date": live_run_date})
                fs.rm(f"{p}/{PUBLISHED_MARKER}")  # after WITHDRAWN is written: a kill between leaves both, never neither
                withdrawn.append(day)
            elif (day == live_run_date and io.exists(f"{path}/{WITHDRAWN_MARKER}")
                  and (io.read_json(f"{path}/{MODEL_META}", {}) or {}).get("model_version") == live_model_version):
                self.mark_published(day)
                fs.rm(f"{p}/{WITHDRAWN_MARKER}")
                restored.append(day)
        return {"withdrawn": withdrawn, "restored": restored}

    def latest_published_before(self, ds: str) -> dict | None:
        """The last model published before `ds`: run_date, model_version, path, evaluation, model (its meta)."""
        root = posixpath.dirname(self.path("1970-01-01"))
        for day in reversed([d for d in io.partition_dates(root) if d < ds]):
            path = self.path(day)
            if io.exists(f"{path}/{PUBLISHED_MARKER}"):
                meta = io.read_json(f"{path}/{MODEL_META}", {}) or {}
                return {"run_date": day, "model_version": meta.get("model_version"), "path": path,
                        "evaluation": io.read_json(f"{path}/{EVALUATION_FILE}"), "model": meta}
        return None


class Datasets:
    """The datasets under one DATA_ROOT, by name. See the module docstring for who writes and reads each."""

    def __init__(self, data_root: str):
        layout = Layout(data_root)
        self.layout = layout

        def declare(name: str, path_of: Callable[[Layout, str], str], schema: str | None) -> PartitionedDataset:
            return PartitionedDataset(name, layout, path_of, schema)

        self.validated_events = declare("validated events", lambda lay, ds: lay.validated("events", ds), "events")
        self.validated_catalog = declare("validated catalog", lambda lay, ds: lay.validated("catalog", ds), "catalog")
        self.identity_map = declare("identity map", Layout.identity, "identity")
        self.interactions = declare("interactions", Layout.interactions, "interactions")
        self.persons = declare("persons", Layout.persons, "persons")
        self.purchases = declare("purchases", lambda lay, ds: lay.partition("purchases", ds), "purchases")
        self.flagged_ids = declare("flagged ids", lambda lay, ds: lay.partition("flagged_ids", ds), "flagged_ids")
        self.holdout_train = declare("holdout train", lambda lay, ds: lay.holdout(ds, "train"), "interactions")
        self.holdout_test = declare("holdout test", lambda lay, ds: lay.holdout(ds, "test"), "pairs")
        # a per-person holdout's cut per held-out person (jobs/evaluation/person_split.py)
        self.holdout_cuts = declare("holdout cuts", lambda lay, ds: lay.holdout(ds, "cuts"), "holdout_cuts")
        self.holdout_info = JsonDocument("holdout info", layout, lambda lay, ds: lay.holdout(ds, "holdout.json"),
                                         "holdout_info")
        self.candidates = declare("candidates", Layout.candidates, "candidates")
        # the last published model's candidates for the persons of an A/B arm that serves it (jobs/experiments.py)
        self.previous_candidates = declare("previous candidates",
                                           lambda lay, ds: lay.partition("candidates_previous", ds), "candidates")
        self.ranked_candidates = declare("ranked candidates", Layout.ranked_candidates, "candidates")
        self.segment_lists = declare("segment lists", Layout.segments, "segments")
        self.staged_lists = declare("staged lists", Layout.staged_recommendations, "recommendations")
        self.published_lists = declare("published lists", Layout.recommendations, "recommendations")
        self.models = ModelStore(layout)
        # ALS fitted on the holdout train with the night's settings (jobs/evaluation/holdout_model.py): fitted
        # once by whichever of gate and rank runs first, read by the other; model.json carries its key
        self.holdout_model = ModelStore(layout, lambda lay, ds: lay.holdout(ds, "model"))
        self.tuning = JsonDocument("tuning settings", layout,
                                   lambda lay, ds: f"{lay.partition('tuning', ds)}/settings.json", "tuning")
        self.tuning_history = JsonLinesHistory("tuning history", layout.tuning_history(),
                                               "tuning")

    def window_events(self, spark, run_date: str, window_days: int, columns: list[str] | None = None):
        """Validated events of the `window_days` days ending on `run_date` (days without data are skipped)."""
        days = [d for d in window(run_date, window_days) if self.validated_events.has_data(d)]
        if not days:
            raise FileNotFoundError(f"no validated events in the {window_days} days ending {run_date} "
                                    f"under {self.layout.validated('events')}")
        df = io.read_spark_parquet(spark, [self.validated_events.path(d) for d in days], "events")
        return df.select(*columns) if columns else df

    def profile_folders_until(self, run_date: str) -> list[str]:
        """The validated profile folders of every day up to `run_date` (a profile is delivered once, on the day
        it is created or changed, so the window does not bound them)."""
        folder = self.layout.validated("profiles")
        return [self.layout.validated("profiles", d) for d in io.partition_dates(folder) if d <= run_date]

    def profiles_until(self, spark, run_date: str):
        """Validated profiles of every day up to `run_date`, or None when there are none."""
        folders = self.profile_folders_until(run_date)
        return io.read_spark_parquet(spark, folders, "profiles") if folders else None

    def validated_marker(self, ds: str) -> dict | None:
        """The validate stage's marker of day `ds` (fingerprint, and `metrics` per dataset: rows, quarantine
        reasons, volume per device and event type), or None when the day is not validated."""
        return io.read_json(posixpath.join(self.layout.validated("events", ds), VALIDATED_MARKER))

    def read_report(self, ds: str, name: str) -> dict | None:
        return io.read_json(f"{self.layout.reports(ds)}/{name}")

    def gate_fallback(self, ds: str) -> dict | None:
        """The gate's `fallback` for night `ds`: which popularity lists to publish instead of the model's, or None."""
        report = self.read_report(ds, "gate.json") or {}
        return report.get("fallback") if report.get("verdict") == "fallback" else None

    def write_report(self, ds: str, name: str, report: dict) -> str:
        path = f"{self.layout.reports(ds)}/{name}"
        io.write_json(path, report)
        return path
