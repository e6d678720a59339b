"""Stage 4b: the model quality gate. A model that does worse than popularity, or much worse than the
model that is live, is refused before anything is retrieved, ranked or published.

The gate measures the night's recipe, not the night's factors: it trains ALS with the same settings
(`cfg.als`, `cfg.seed`) on the temporal holdout's train part (everything before the cutoff, written by the
interactions stage), retrieves top-k with the same ScaNN retrieval the night uses (`jobs.stages.retrieve.retrieve`:
available items only, items bought before the cutoff excluded) for a seeded sample of test persons, and
scores what they then put in the cart or bought in the holdout days. The same persons get three popularity
baselines (all-time, recent, per segment), with the same exclusions. Metrics come from `jobs.evaluation`.

Verdict (`decide`): pass when

    NDCG@k(model) >= max NDCG@k(popularity baselines) * (1 + gate.min_lift_over_popularity)
    and NDCG@k(model) >= NDCG@k(previous published model) * (1 - gate.max_drop_vs_previous)

where the previous published model is the latest earlier date whose model folder holds a `PUBLISHED` marker
(`mark_published`, called by the publish stage), with the figures of its own night (`evaluation.json`).
Two rules let a model through without the checks, and the report names them: `too_little_data` (fewer than
`gate.min_test_persons` evaluable test persons, e.g. the first days of a shop) and `first_run` (no model was
ever published and `gate.allow_first_run`; a failed popularity check is then a warning).

Writes `models/dt=D/evaluation.json` (the figures) and `reports/dt=D/gate.json` (figures, thresholds,
checks, verdict, reasons); on a refusal raises `ModelGateError` after writing both.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import posixpath
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from jobs import evaluation as ev
from jobs.storage import io
from jobs.storage.layout import Layout

log = logging.getLogger(__name__)

MODEL = "model"
BASELINES = ("popularity_global", "popularity_recent", "popularity_segment")
PUBLISHED_MARKER = "PUBLISHED"
EVALUATION_FILE = "evaluation.json"
CATEGORY_SEPARATOR = " > "  # the catalog contract's category_path separator; the leaf is the last level


class ModelGateError(RuntimeError):
    """The model was refused by the quality gate; nothing of this run is published."""


class HoldoutMissingError(FileNotFoundError):
    """The temporal holdout for a date was not written (the interactions stage has not run with the gate on)."""


@dataclasses.dataclass(frozen=True)
class Holdout:
    """Everything the gate and `recs tune` evaluate on, read once per date.

    Attributes
    ----------
    run_date : str
        The night D.
    cutoff : pandas.Timestamp
        Start of day D - holdout_days + 1 (UTC): train is before it, test on or after it.
    recent_since : pandas.Timestamp
        Start of the recent-popularity window (cutoff - gate.recent_popularity_days).
    train : pandas.DataFrame
        Holdout train interactions: person_id, item_id, purchased, last_time.
    matrix : scipy.sparse.csr_matrix
        Holdout train confidences, persons x items, rows/columns indexed by `train_persons`/`train_items`.
    train_persons, train_items : numpy.ndarray
        Sorted unique ids (object arrays of str).
    persons : numpy.ndarray
        The evaluated test persons, sorted: a seeded sample of test persons that have train history.
    test : pandas.DataFrame
        Ground truth of the evaluated persons: person_id, item_id.
    bought : pandas.DataFrame
        (person_id, item_id) the evaluated persons bought before the cutoff: never recommended.
    available_items : numpy.ndarray
        Sorted ids of the items available in D's validated catalog.
    item_categories : pandas.DataFrame
        item_id, category_path = the leaf category, one row per catalog item.
    segments : pandas.DataFrame
        person_id, segment (e.g. ``country=DE/device_type=ios``; null when unknown) for every train person.
    counts : dict
        Sizes for the report.
    """

    run_date: str
    cutoff: pd.Timestamp
    recent_since: pd.Timestamp
    train: pd.DataFrame
    matrix: object
    train_persons: np.ndarray
    train_items: np.ndarray
    persons: np.ndarray
    test: pd.DataFrame
    bought: pd.DataFrame
    available_items: np.ndarray
    item_categories: pd.DataFrame
    segments: pd.DataFrame
    counts: dict


# ------------------------------------------------------------------------------------------------ reading

def _dataset(path: str, *, what: str):
    """Parquet folder as a pyarrow dataset (hidden and `_SUCCESS` files skipped); missing -> clear error."""
    import pyarrow.dataset as pads

    if not io.exists(path):
        raise FileNotFoundError(f"no {what} at {path}")
    fs, local = io.fs_for(path)
    return pads.dataset(local, filesystem=fs, format="parquet")


def _read(path: str, columns: list[str], *, what: str, schema: pa.Schema | None = None) -> pa.Table:
    """Parquet folder -> Arrow table of `columns`, with an error naming the dataset, path and fields.

    A folder without data files (an empty result written by Spark) reads as an empty table of `schema`.
    """
    dataset = _dataset(path, what=what)
    if schema is not None and not dataset.files:
        return schema.empty_table().select(columns)
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise ValueError(f"{what} at {path} has no field {missing[0]!r} (it has: {dataset.schema.names})")
    try:
        return dataset.to_table(columns=columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"{what} at {path} cannot be read with fields {columns}: {exc}") from exc


def _require_not_null(table: pa.Table, columns: list[str], *, what: str, path: str) -> None:
    for col in columns:
        n_null = table.column(col).null_count
        if n_null:
            raise ValueError(f"{what} at {path}: field {col!r} is null in {n_null} of {table.num_rows} rows")


def leaf_category(category_path: pd.Series) -> pd.Series:
    """`Women > Shoes > Sneakers` -> `Sneakers` (the rank stage's diversity category); null stays null."""
    return category_path.str.split(CATEGORY_SEPARATOR).str[-1].str.strip()


def segment_key(persons: pd.DataFrame, dimensions: tuple[str, ...]) -> pd.Series:
    """`country=DE/device_type=ios` from the person's known context (null parts left out; all null -> null)."""
    key = pd.Series(pd.NA, index=persons.index, dtype="str")
    for dim in dimensions:
        if dim not in persons.columns:
            continue
        part = dim + "=" + persons[dim].astype("str")  # a null context value stays null
        joined = (key + "/" + part).where(key.notna(), part)
        key = key.where(part.isna(), joined)
    return key


def cutoff_of(run_date: str, holdout_days: int) -> pd.Timestamp:
    """Start (UTC) of day D - holdout_days + 1, as the interactions stage splits the holdout."""
    day = dt.date.fromisoformat(run_date) - dt.timedelta(days=holdout_days - 1)
    return pd.Timestamp(day.isoformat(), tz="UTC")


def load_holdout(cfg, run_date: str) -> Holdout:
    """Reads D's temporal holdout, catalog and persons, and draws the seeded sample of test persons.

    Raises
    ------
    HoldoutMissingError
        When the interactions stage has not written the holdout for `run_date`.
    FileNotFoundError, ValueError
        When the catalog or persons of D are missing, or a file lacks a field or has nulls where it must not.
    """
    from jobs.stages.train import to_csr

    layout = Layout(cfg.data_root)
    train_path, test_path = layout.holdout(run_date, "train"), layout.holdout(run_date, "test")
    for path in (train_path, test_path):
        if not io.exists(path):
            raise HoldoutMissingError(
                f"no temporal holdout for {run_date} at {path}: the interactions stage writes it when "
                f"gate.enabled is true. Run the nightly run (`recs run --date {run_date}`) or its interactions "
                f"stage for that date first.")
    from schemas import load

    interactions = load("interactions").arrow()
    train_t = _read(train_path, interactions.names, what="holdout train", schema=interactions)
    _require_not_null(train_t, ["person_id", "item_id", "weight"], what="holdout train", path=train_path)
    test_t = _read(test_path, ["person_id", "item_id"], what="holdout test",
                   schema=pa.schema([("person_id", pa.string()), ("item_id", pa.string())]))
    _require_not_null(test_t, ["person_id", "item_id"], what="holdout test", path=test_path)

    catalog_path = layout.validated("catalog", run_date)
    catalog = _read(catalog_path, ["item_id", "is_available", "category_path"], what="validated catalog").to_pandas()
    catalog = catalog[catalog["item_id"].notna()].drop_duplicates("item_id", keep="last")
    available = np.sort(catalog.loc[catalog["is_available"].fillna(False).astype(bool), "item_id"]
                        .to_numpy(dtype=object))
    if len(available) == 0:
        raise ValueError(f"validated catalog at {catalog_path} has no available item: nothing can be recommended")
    item_categories = pd.DataFrame({"item_id": catalog["item_id"].to_numpy(),
                                    "category_path": leaf_category(catalog["category_path"]).to_numpy()})

    persons_path = layout.persons(run_date)
    persons_fields = _dataset(persons_path, what="persons").schema.names
    present = [d for d in cfg.segments.dimensions if d in persons_fields]  # segment dims the persons table has
    persons = _read(persons_path, ["person_id", *present], what="persons").to_pandas()
    persons = persons[persons["person_id"].notna()].drop_duplicates("person_id")

    matrix, train_persons, train_items = to_csr(train_t.column("person_id"), train_t.column("item_id"),
                                                train_t.column("weight").to_numpy(zero_copy_only=False))
    train = train_t.select(["person_id", "item_id", "purchased", "last_time"]).to_pandas()
    train["purchased"] = train["purchased"].fillna(False).astype(bool)
    test = test_t.to_pandas().drop_duplicates()

    test_persons = np.unique(test["person_id"].to_numpy(dtype=object))
    # Only persons with train history have factors; cold ones would count for the baselines alone.
    warm = test_persons[pd.Index(train_persons).get_indexer(test_persons) >= 0]
    n_cold = len(test_persons) - len(warm)
    if len(warm) > cfg.gate.max_test_persons:
        rng = np.random.default_rng(cfg.seed)
        warm = np.sort(rng.choice(warm, size=cfg.gate.max_test_persons, replace=False))
    sampled = pd.Index(warm)
    test = test[sampled.get_indexer(test["person_id"]) >= 0].reset_index(drop=True)
    bought = (train.loc[train["purchased"].to_numpy() & (sampled.get_indexer(train["person_id"]) >= 0),
                        ["person_id", "item_id"]].reset_index(drop=True))

    by_person = persons.set_index("person_id")
    segments = pd.DataFrame({"person_id": train_persons})
    segments["segment"] = segment_key(by_person.reindex(train_persons).reset_index(drop=True), tuple(present))

    cutoff = cutoff_of(run_date, cfg.gate.holdout_days)
    counts = {"train_pairs": int(train_t.num_rows), "train_persons": len(train_persons),
              "train_items": len(train_items), "test_pairs": int(test_t.num_rows),
              "test_persons": len(test_persons),
              "test_persons_without_history": n_cold,
              "evaluated_persons": len(warm), "evaluated_test_pairs": len(test),
              "catalog_items": len(catalog), "available_items": len(available)}
    return Holdout(run_date=run_date, cutoff=cutoff,
                   recent_since=cutoff - pd.Timedelta(days=cfg.gate.recent_popularity_days),
                   train=train, matrix=matrix, train_persons=train_persons, train_items=train_items,
                   persons=warm, test=test, bought=bought, available_items=available,
                   item_categories=item_categories, segments=segments, counts=counts)


# ------------------------------------------------------------------------------------------------ recommending

def model_recs(holdout: Holdout, *, factors: int, regularization: float, alpha: float, iterations: int,
               threads: int, seed: int, k: int, brute_force_below: int) -> pd.DataFrame:
    """ALS on the holdout train, then the night's retrieval for the evaluated persons.

    Returns
    -------
    pandas.DataFrame
        person_id, item_id, score, rank (1..k): only available items, none bought before the cutoff.
    """
    from jobs.stages.retrieve import retrieve
    from jobs.stages.train import train_als

    person_vecs, item_vecs = train_als(holdout.matrix, factors=factors, regularization=regularization,
                                       alpha=alpha, iterations=iterations, threads=threads, seed=seed)
    rows = pd.Index(holdout.train_persons).get_indexer(holdout.persons)
    in_index = np.flatnonzero(pd.Index(holdout.available_items).get_indexer(holdout.train_items) >= 0)
    index_ids = holdout.train_items[in_index]
    b_rows = pd.Index(holdout.persons).get_indexer(holdout.bought["person_id"])
    b_cols = pd.Index(index_ids).get_indexer(holdout.bought["item_id"])
    known = (b_rows >= 0) & (b_cols >= 0)  # a bought item that is no longer available is not in the index
    p, i, s = retrieve(person_vecs[rows], item_vecs[in_index], bought_rows=b_rows[known].astype(np.int64),
                       bought_cols=b_cols[known].astype(np.int64), n=k, brute_force_below=brute_force_below)
    recs = pd.DataFrame({"person_id": holdout.persons[p], "item_id": index_ids[i], "score": s.astype(np.float64)})
    recs["rank"] = recs.groupby("person_id", sort=False).cumcount() + 1  # retrieve sorts each person best first
    return recs


def baseline_recs(holdout: Holdout, *, k: int) -> dict[str, pd.DataFrame]:
    """The popularity baselines for the evaluated persons, with the model's exclusions.

    Popularity is counted on available items only (an item's count does not depend on the others, so this
    equals filtering the ranked list), as distinct persons per item in the holdout train.
    """
    train = holdout.train[pd.Index(holdout.available_items).get_indexer(holdout.train["item_id"]) >= 0]
    if len(train) == 0:
        log.warning("no holdout train interaction touches an available item: popularity baselines are empty")
        return {}
    pairs = train[["person_id", "item_id", "last_time"]]
    users = pd.Series(holdout.persons, dtype="object")
    out = {
        "popularity_global": ev.popularity_recs(pairs, users, k=k, exclude=holdout.bought),
        "popularity_recent": ev.popularity_recs(pairs, users, k=k, exclude=holdout.bought,
                                                since=holdout.recent_since, time_col="last_time"),
    }
    # Every train person's segment counts towards its segment's popularity, so all of them are passed and
    # the lists are then cut to the evaluated persons.
    segment = ev.segment_popularity_recs(pairs, holdout.segments, k=k, exclude=holdout.bought)
    out["popularity_segment"] = segment[pd.Index(holdout.persons).get_indexer(segment["person_id"]) >= 0]
    return out


def evaluate(holdout: Holdout, recs: pd.DataFrame, *, k: int, beyond_accuracy: bool = True) -> dict:
    """`jobs.evaluation.evaluate_all` on the holdout: ranking metrics, and with `beyond_accuracy` catalog
    coverage and Gini of exposure (over available items), novelty (vs the holdout train) and intra-list
    diversity (leaf categories)."""
    if not beyond_accuracy:
        return ev.evaluate_all(recs, holdout.test, k=k)
    return ev.evaluate_all(recs, holdout.test, k=k, train=holdout.train[["person_id", "item_id"]],
                           catalog=holdout.available_items, item_categories=holdout.item_categories)


def evaluate_settings(holdout: Holdout, *, als, seed: int, k: int, brute_force_below: int,
                      beyond_accuracy: bool = True) -> dict:
    """Train with ALS settings `als` (anything with factors, regularization, alpha, iterations, threads) and
    score them on the holdout. Shared by the gate and `recs tune`."""
    started = time.perf_counter()
    recs = model_recs(holdout, factors=als.factors, regularization=als.regularization, alpha=als.alpha,
                      iterations=als.iterations, threads=als.threads, seed=seed, k=k,
                      brute_force_below=brute_force_below)
    metrics = evaluate(holdout, recs, k=k, beyond_accuracy=beyond_accuracy)
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    return metrics


# ------------------------------------------------------------------------------------------------ history

def _model_dates(layout: Layout) -> list[str]:
    models_root = posixpath.dirname(layout.model("1970-01-01"))
    fs, local = io.fs_for(models_root)
    if not fs.exists(local):
        return []
    dates = []
    for entry in fs.ls(local, detail=False):
        name = posixpath.basename(entry.rstrip("/"))
        if name.startswith("dt="):
            try:
                dates.append(dt.date.fromisoformat(name[3:]).isoformat())
            except ValueError:
                continue
    return sorted(dates)


def find_previous(cfg, run_date: str) -> dict | None:
    """The last model published before `run_date` (latest earlier date with a PUBLISHED marker), or None.

    Returns
    -------
    dict or None
        ``run_date``, ``model_version``, ``path``, ``evaluation`` (its evaluation.json or None) and
        ``model`` (its model.json).
    """
    layout = Layout(cfg.data_root)
    for day in reversed([d for d in _model_dates(layout) if d < run_date]):
        path = layout.model(day)
        if io.exists(f"{path}/{PUBLISHED_MARKER}"):
            meta = io.read_json(f"{path}/model.json", {}) or {}
            return {"run_date": day, "model_version": meta.get("model_version"), "path": path,
                    "evaluation": io.read_json(f"{path}/{EVALUATION_FILE}"), "model": meta}
    return None


def mark_published(cfg, run_date: str) -> str:
    """Marks D's model as the live one (the publish stage calls this once the lists are switched on).

    The gate of a later night compares against the latest model so marked. Returns the marker's path.
    """
    path = Layout(cfg.data_root).model(run_date)
    meta = io.read_json(f"{path}/model.json")
    if meta is None:
        raise FileNotFoundError(f"cannot mark {run_date}'s model published: no model.json at {path}")
    marker = f"{path}/{PUBLISHED_MARKER}"
    io.write_json(marker, {"run_date": run_date, "model_version": meta.get("model_version")})
    return marker


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def config_changes(previous_config: dict | None, cfg) -> dict:
    """Settings that differ from the previous model's (from its model.json `config`): {key: [then, now]}."""
    if not previous_config:
        return {}
    from jobs.stages.train import stored_config

    now = _flatten(json_ready(stored_config(cfg)))
    then = _flatten(previous_config)
    return {k: [then.get(k), now.get(k)] for k in sorted(set(now) | set(then)) if then.get(k) != now.get(k)}


# ------------------------------------------------------------------------------------------------ verdict

def decide(*, model: dict | None, baselines: dict[str, dict], previous: dict | None, gate, k: int,
           evaluated_persons: int) -> dict:
    """The verdict from the figures. Pure.

    Parameters
    ----------
    model : dict or None
        The model's metrics (`evaluate_all` keys); None when nothing could be evaluated.
    baselines : dict
        Baseline name -> metrics.
    previous : dict or None
        `find_previous`'s answer.
    gate : GateConfig
        Thresholds and rules.
    k : int
        The cut-off the figures are at.
    evaluated_persons : int
        Test persons the figures average over.

    Returns
    -------
    dict
        ``verdict`` (``pass`` | ``fail``), ``rule`` (``checks``, ``first_run`` or ``too_little_data``),
        ``checks`` (each with value, threshold, passed), ``reasons`` (why the verdict) and ``warnings``.
    """
    checks: list[dict] = []
    warnings: list[str] = []
    if model is None or evaluated_persons < max(gate.min_test_persons, 1):
        return {"verdict": "pass", "rule": "too_little_data", "checks": checks, "warnings": warnings,
                "reasons": [(f"only {evaluated_persons} test person(s) with history could be evaluated "
                             f"(gate.min_test_persons = {gate.min_test_persons}): too little data to judge, "
                             "the model is allowed through by rule")]}
    ndcg = model["ndcg_at_k"]
    if baselines:
        best_name = max(baselines, key=lambda name: baselines[name]["ndcg_at_k"])
        best = baselines[best_name]["ndcg_at_k"]
        required = best * (1 + gate.min_lift_over_popularity)
        ok = ndcg >= required
        checks.append({"name": "lift_over_popularity", "metric": f"ndcg@{k}", "value": ndcg,
                       "baseline": best_name, "baseline_value": best,
                       "min_lift": gate.min_lift_over_popularity, "required": required, "passed": bool(ok),
                       "reason": f"NDCG@{k} {ndcg:.4f} {'>=' if ok else '<'} {required:.4f} required: the best "
                                 f"popularity baseline ({best_name}) has {best:.4f} and the model must beat it "
                                 f"by {gate.min_lift_over_popularity:.0%}"})
    else:
        warnings.append("no popularity baseline could be computed (no train interaction on an available item)")

    prev_eval = (previous or {}).get("evaluation") or {}
    prev_model = (prev_eval.get("metrics") or {}).get(MODEL) or {}
    if previous is not None and (prev_eval.get("k") != k or prev_model.get("ndcg_at_k") is None):
        warnings.append(f"the previous published model ({previous['run_date']}, {previous['model_version']}) "
                        f"has no NDCG@{k} in its evaluation.json: the drop-vs-previous check was not applied")
    elif previous is not None:
        prev_ndcg = float(prev_model["ndcg_at_k"])
        floor = prev_ndcg * (1 - gate.max_drop_vs_previous)
        ok = ndcg >= floor
        checks.append({"name": "drop_vs_previous", "metric": f"ndcg@{k}", "value": ndcg,
                       "previous_run_date": previous["run_date"], "previous_model_version": previous["model_version"],
                       "previous_value": prev_ndcg, "max_drop": gate.max_drop_vs_previous, "required": floor,
                       "passed": bool(ok),
                       "reason": f"NDCG@{k} {ndcg:.4f} {'>=' if ok else '<'} {floor:.4f} required: the previous "
                                 f"published model ({previous['run_date']}, {previous['model_version']}) had "
                                 f"{prev_ndcg:.4f} on its own holdout and the model may fall at most "
                                 f"{gate.max_drop_vs_previous:.0%} below it"})

    reasons = [c["reason"] for c in checks]
    failed = [c["reason"] for c in checks if not c["passed"]]
    if previous is None and gate.allow_first_run:
        if failed:
            warnings.append("FIRST RUN BELOW THE BAR, published anyway: " + "; ".join(failed))
        return {"verdict": "pass", "rule": "first_run", "checks": checks, "warnings": warnings,
                "reasons": ["no model was published before this one (gate.allow_first_run = true): allowed through "
                            "by rule" + (" although a check failed (see warnings)" if failed else ""), *reasons]}
    return {"verdict": "fail" if failed else "pass", "rule": "checks", "checks": checks, "warnings": warnings,
            "reasons": reasons}


def refusal_message(report: dict) -> str:
    """The loud, figure-carrying message of `ModelGateError`."""
    failed = [c["reason"] for c in report["checks"] if not c["passed"]]
    prev = report.get("previous")
    live = (f"the lists published on {prev['run_date']} (model {prev['model_version']}) stay live"
            if prev else "no model was published before; whatever lists were live stay live")
    return (f"MODEL GATE REFUSED model {report['model_version']} for {report['run_date']}: NOT PUBLISHED.\n"
            + "".join(f"  - {r}\n" for r in failed)
            + f"Nothing of this run reaches the storefront: {live}.\n"
            + f"All figures: {report['report_path']}")


def json_ready(obj):
    """NaN/inf -> None and numpy scalars -> Python, so the reports are strict JSON."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ------------------------------------------------------------------------------------------------ stage

def run(spark, cfg, run_date: str) -> dict:
    """Evaluates the night's ALS recipe on D's holdout, writes the figures and the verdict, refuses a bad model.

    `spark` is not used (the holdout is bounded and read with pyarrow); it keeps the stage interface.

    Raises
    ------
    ModelGateError
        When the model is refused; `reports/dt=D/gate.json` says why.
    """
    started = time.time()
    layout = Layout(cfg.data_root)
    report_path = f"{layout.reports(run_date)}/gate.json"
    if not cfg.gate.enabled:
        note = "gate.enabled is false: the model was not evaluated and is not held back"
        io.write_json(report_path, {"run_date": run_date, "verdict": "skipped", "note": note})
        log.warning("gate for %s skipped: %s", run_date, note)
        return {"verdict": "skipped", "note": note, "report": report_path}

    model_dir = layout.model(run_date)
    meta = io.read_json(f"{model_dir}/model.json")
    if meta is None:
        raise FileNotFoundError(f"no model at {model_dir}: the gate runs after the train stage for {run_date}")
    gate, k = cfg.gate, cfg.gate.k
    holdout = load_holdout(cfg, run_date)
    n_eval = len(holdout.persons)
    metrics: dict[str, dict] = {}
    if n_eval > 0 and holdout.matrix.nnz > 0:
        metrics[MODEL] = evaluate_settings(holdout, als=cfg.als, seed=cfg.seed, k=k,
                                           brute_force_below=cfg.candidates.scann_brute_force_below)
        for name, recs in baseline_recs(holdout, k=k).items():
            metrics[name] = evaluate(holdout, recs, k=k)
    previous = find_previous(cfg, run_date)
    decision = decide(model=metrics.get(MODEL), baselines={n: m for n, m in metrics.items() if n != MODEL},
                      previous=previous, gate=gate, k=k, evaluated_persons=n_eval if MODEL in metrics else 0)

    evaluation = json_ready({
        "run_date": run_date, "model_version": meta.get("model_version"), "k": k,
        "cutoff": holdout.cutoff.isoformat(), "recent_since": holdout.recent_since.isoformat(),
        "holdout": holdout.counts, "als": dataclasses.asdict(cfg.als), "seed": cfg.seed, "metrics": metrics})
    io.write_json(f"{model_dir}/{EVALUATION_FILE}", evaluation)
    report = json_ready({
        **evaluation,
        "verdict": decision["verdict"], "rule": decision["rule"], "reasons": decision["reasons"],
        "warnings": decision["warnings"], "checks": decision["checks"],
        "thresholds": dataclasses.asdict(gate),
        "previous": None if previous is None else {
            "run_date": previous["run_date"], "model_version": previous["model_version"],
            "path": previous["path"],
            "metrics": ((previous.get("evaluation") or {}).get("metrics") or {}).get(MODEL),
            "config_changes": config_changes(previous["model"].get("config"), cfg)},
        "report_path": report_path, "seconds": round(time.time() - started, 1)})
    io.write_json(report_path, report)
    for w in decision["warnings"]:
        log.warning("gate %s: %s", run_date, w)
    summary = {"verdict": decision["verdict"], "rule": decision["rule"], "report": report_path,
               "model_version": meta.get("model_version"), "evaluated_persons": n_eval,
               "ndcg_at_k": (metrics.get(MODEL) or {}).get("ndcg_at_k"),
               "best_baseline_ndcg_at_k": max((m["ndcg_at_k"] for n, m in metrics.items() if n != MODEL),
                                              default=None),
               "previous_run_date": previous["run_date"] if previous else None,
               "seconds": round(time.time() - started, 1)}
    if decision["verdict"] == "fail":
        message = refusal_message(report)
        log.error(message)
        raise ModelGateError(message)
    log.info("gate %s: %s by rule %s (NDCG@%d %s)", run_date, decision["verdict"], decision["rule"], k,
             summary["ndcg_at_k"])
    return json_ready(summary)
