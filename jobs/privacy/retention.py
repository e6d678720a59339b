"""Retention: delete `dt=` partitions of personal data older than the run date minus `privacy.retention_days`.

Covered: every `dt=YYYY-MM-DD` folder under DATA_ROOT that the pipeline writes (quarantine/, validated/, state/identity/,
interactions/, persons/, holdout/, candidates/, segments/, staging/, recommendations/, identity/, models/, reports/ and
any dataset added later), found by walking the tree rather than from a list. Not covered: `raw/` (the shop's inputs;
`raw/events` and `raw/profiles` only with `privacy.purge_raw`), `truth/` (a generated shop's test ground truth),
`exports/` (the key-value versions prune themselves to `export.keep_versions`) and `privacy/` (the erasure log).

Never deleted, however old: the latest model folder with a PUBLISHED marker (the gate compares against it), the
`identity/` and `recommendations/` partitions of the live key-value version's date, and the latest identity state
(the next night's stitching starts from it). Each partition is removed by one rename to a hidden sibling (readers
see it whole or gone), then deleted.
"""
from __future__ import annotations

import datetime as dt
import logging
import posixpath
import re
import uuid
from dataclasses import dataclass

from jobs.config import RecsConfig
from jobs.storage import io
from jobs.storage.layout import Layout, day

log = logging.getLogger(__name__)

NEVER = ("truth", "exports", "privacy")  # top-level folders retention leaves alone
RAW_PERSONAL = ("events", "profiles")  # raw datasets with personal data (purged only with purge_raw)
PURGING_PREFIX = ".purge-"
MAX_DEPTH = 4  # dt= folders sit at most this deep (staging/recommendations/dt=D, quarantine/<dataset>/dt=D)


@dataclass(frozen=True)
class Partition:
    dataset: str  # folder relative to DATA_ROOT, e.g. "quarantine/events"
    ds: str
    path: str


def cutoff_date(run_date: str, retention_days: int) -> str:
    """Partitions dated before this day are purged (the run date minus `retention_days`)."""
    if retention_days < 1:
        raise ValueError(f"privacy.retention_days must be >= 1, got {retention_days}")
    return (day(run_date) - dt.timedelta(days=retention_days)).isoformat()


def find_partitions(root: str, *, include_raw: bool) -> list[Partition]:
    """Every `dt=` folder under `root` that retention covers (see the module docstring), sorted."""
    fs, base = io.fs_for(root)
    base = base.rstrip("/")
    prefix = root[: len(root) - len(base)] if root.rstrip("/").endswith(base) else ""
    found: list[Partition] = []

    def walk(folder: str, rel: tuple[str, ...]) -> None:
        if len(rel) > MAX_DEPTH:
            return
        for entry in fs.ls(folder, detail=True):
            if entry["type"] != "directory":
                continue
            name = posixpath.basename(entry["name"].rstrip("/"))
            if name.startswith((".", "_")):
                continue
            if not rel and name in NEVER:
                continue
            if rel == ("raw",) and (not include_raw or name not in RAW_PERSONAL):
                continue
            ds = io.partition_date(name)
            if ds:
                if rel:
                    found.append(Partition("/".join(rel), ds, prefix + entry["name"].rstrip("/")))
                continue  # never look inside a partition
            walk(entry["name"], (*rel, name))

    if fs.exists(base):
        walk(base, ())
    return sorted(found, key=lambda p: (p.dataset, p.ds))


def protected_paths(root: str) -> dict[str, str]:
    """{partition path: why} of what the live lists and the next night need, whatever its age."""
    layout = Layout(root)
    keep: dict[str, str] = {}
    pointer = io.read_json(f"{layout.kv()}/CURRENT") or {}
    live = str(pointer.get("version") or "")
    if re.match(r"^\d{4}-\d{2}-\d{2}", live):
        keep[layout.identity(live[:10])] = f"identity map of the live key-value version {live}"
        keep[layout.recommendations(live[:10])] = f"lists of the live key-value version {live}"
    models = posixpath.dirname(layout.model("1970-01-01"))
    published = [d for d in io.partition_dates(models) if io.exists(f"{layout.model(d)}/PUBLISHED")]
    if published:
        keep[layout.model(published[-1])] = "the last published model (the gate compares against it)"
    states = io.partition_dates(posixpath.dirname(layout.identity_state("1970-01-01")))
    if states:
        keep[layout.identity_state(states[-1])] = "the latest identity state (the next stitch starts from it)"
    return keep


def plan_purge(partitions: list[Partition], cutoff: str, protected: dict[str, str]) -> tuple[list, list]:
    """(to delete, kept although old): partitions dated before `cutoff`, minus the protected ones. Pure."""
    old = [p for p in partitions if p.ds < cutoff]
    return ([p for p in old if p.path not in protected], [p for p in old if p.path in protected])


def _size(path: str) -> tuple[int, int]:
    fs, p = io.fs_for(path)
    files = [f for f, info in fs.find(p, detail=True).items() if info.get("type") == "file"]
    return len(files), sum(int(fs.info(f).get("size") or 0) for f in files)


def remove_partition(path: str) -> None:
    """One rename makes the partition disappear for readers; the hidden copy is then deleted."""
    fs, p = io.fs_for(path)
    parent, name = posixpath.split(p.rstrip("/"))
    hidden = posixpath.join(parent, f"{PURGING_PREFIX}{name}-{uuid.uuid4().hex[:8]}")
    fs.mv(p, hidden, recursive=True)
    fs.rm(hidden, recursive=True)


def _sweep_leftovers(partitions: list[Partition]) -> int:
    """Deletes hidden `.purge-*` folders an interrupted purge left next to the datasets' partitions."""
    n = 0
    for folder in sorted({posixpath.dirname(p.path) for p in partitions}):
        fs, f = io.fs_for(folder)
        for entry in fs.ls(f, detail=False) if fs.exists(f) else []:
            if posixpath.basename(entry.rstrip("/")).startswith(PURGING_PREFIX):
                fs.rm(entry, recursive=True)
                n += 1
    return n


def purge(root: str, run_date: str, *, retention_days: int, purge_raw: bool = False, dry_run: bool = False,
          window_days: int | None = None) -> dict:
    """Deletes (or with `dry_run` only lists) the partitions older than the retention. Returns a summary:
    `cutoff`, `dry_run`, `removed` {dataset: {partitions, files, bytes, dates}}, `partitions`, `files`, `bytes`,
    `kept_protected` [{path, why}], `warnings`."""
    cutoff = cutoff_date(run_date, retention_days)
    partitions = find_partitions(root, include_raw=purge_raw)
    protected = protected_paths(root)
    doomed, kept = plan_purge(partitions, cutoff, protected)
    warnings = []
    if window_days and retention_days < window_days:
        warnings.append(f"privacy.retention_days={retention_days} < window_days={window_days}: the next runs will "
                        "re-validate (or miss) the purged days of their window")
    removed: dict[str, dict] = {}
    for p in doomed:
        files, size = _size(p.path)
        entry = removed.setdefault(p.dataset, {"partitions": 0, "files": 0, "bytes": 0, "dates": []})
        entry["partitions"] += 1
        entry["files"] += files
        entry["bytes"] += size
        entry["dates"].append(p.ds)
        if not dry_run:
            remove_partition(p.path)
            log.info("purged %s", p.path)
    leftovers = 0 if dry_run else _sweep_leftovers(partitions)
    return {"run_date": run_date, "cutoff": cutoff, "retention_days": retention_days, "purge_raw": purge_raw,
            "dry_run": dry_run, "removed": removed, "partitions": len(doomed),
            "files": sum(e["files"] for e in removed.values()), "bytes": sum(e["bytes"] for e in removed.values()),
            "kept_protected": [{"path": p.path, "why": protected[p.path]} for p in kept],
            "leftovers_swept": leftovers, "warnings": warnings}


def purge_for_config(cfg: RecsConfig, run_date: str, *, dry_run: bool = False) -> dict:
    """`purge` with the settings of a `RecsConfig` (what `recs purge` and the DAG's purge task call)."""
    return purge(cfg.data_root, run_date, retention_days=cfg.privacy.retention_days, purge_raw=cfg.privacy.purge_raw,
                 dry_run=dry_run, window_days=cfg.window_days)
