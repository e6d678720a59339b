"""The gate's holdout, read once per date, and how a model's settings score on it.

The interactions stage splits each night, temporally at `holdout_test_start` (train before it, test from it to D)
or, where few persons come back, per person (`jobs.evaluation.person_split`); this module reads that split, the
catalog and the persons, draws the seeded sample of test persons, and scores recommendation lists against what
they then put in the cart or bought. Shared by the gate stage, `recs tune`
and the benchmarks.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pandas as pd

from jobs.decay import weights_for
from jobs.evaluation.baselines import popularity_recs, segment_popularity_recs
from jobs.evaluation.metrics import evaluate_all
from jobs.evaluation.person_split import PER_PERSON, TEMPORAL
from jobs.evaluation.splits import holdout_test_start
from jobs.models.mf import InteractionMatrix, MFModel
from jobs.segments import known_context_keys
from jobs.storage.datasets import Datasets
from schemas.vocabulary import leaf_category_series

log = logging.getLogger(__name__)


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
        temporal: start (UTC) of `holdout_test_start(D, holdout_days)`: train is before it, test on or after it.
        per_person: the end of D (every train event is before it; each held-out person's own cut day is in the
        `holdout_cuts` dataset): "recent" popularity windows then end with D, as tonight's fallback lists would.
    train : pandas.DataFrame
        Holdout train interactions: person_id, item_id, purchased, last_time.
    matrix : InteractionMatrix
        Holdout train confidences, persons x items, with their sorted ids.
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
        person_id, segment (the key of the person's known context; null when unknown) for every train person.
    counts : dict
        Sizes for the report.
    half_life_days : float
        The half-life `matrix` is weighted with; `matrix_for` gives another (built once, then cached).
    pair_weights : pyarrow.Table
        The train pairs with `weight` and `weights` (every half-life of the grid), for `matrix_for`.
    kind : str
        `temporal` or `per_person` (`jobs.evaluation.person_split`); `reason` says why it was chosen.
    """

    run_date: str
    cutoff: pd.Timestamp
    train: pd.DataFrame
    matrix: InteractionMatrix
    persons: np.ndarray
    test: pd.DataFrame
    bought: pd.DataFrame
    available_items: np.ndarray
    item_categories: pd.DataFrame
    segments: pd.DataFrame
    counts: dict
    half_life_days: float = 0.0
    pair_weights: object = None
    matrices: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    kind: str = TEMPORAL
    reason: str = ""

    def matrix_for(self, half_life_days: float) -> InteractionMatrix:
        """The train confidences under `half_life_days` (`jobs.decay.weights_for`), built the first time a
        half-life is asked for and cached, so tuning trials that share a half-life share the matrix."""
        if float(half_life_days) == float(self.half_life_days) or self.pair_weights is None:
            return self.matrix
        if half_life_days not in self.matrices:
            t = self.pair_weights
            built = InteractionMatrix.from_pairs(t.column("person_id"), t.column("item_id"),
                                                 weights_for(t, half_life_days))
            built.matrix.eliminate_zeros()  # a pair all of whose events decayed to nothing is no preference
            self.matrices[half_life_days] = built
        return self.matrices[half_life_days]


def _require_not_null(table, columns: list[str], *, what: str) -> None:
    for col in columns:
        n_null = table.column(col).null_count
        if n_null:
            raise ValueError(f"{what}: field {col!r} is null in {n_null} of {table.num_rows} rows")


def load_holdout(data: Datasets, run_date: str, *, holdout_days: int, max_test_persons: int,
                 segment_dimensions: tuple[str, ...], seed: int, half_life_days: float) -> Holdout:
    """Reads D's holdout, catalog and persons, and draws the seeded sample of test persons.

    `matrix` is weighted with `half_life_days` (the night's `interactions.half_life_days`). Which holdout was cut
    (temporal or per_person) and why is in `holdout/dt=D/holdout.json`. `holdout_days` is the configured length;
    the length the interactions stage cut (it widens a holdout with too few test persons) wins when recorded.

    Raises
    ------
    HoldoutMissingError
        When the interactions stage has not written the holdout for `run_date`.
    FileNotFoundError, ValueError
        When the catalog or persons of D are missing, or a file lacks a field or has nulls where it must not.
    """
    for part in (data.holdout_train, data.holdout_test):
        if not part.exists(run_date):
            raise HoldoutMissingError(
                f"no temporal holdout for {run_date} at {part.path(run_date)}: the interactions stage writes it "
                f"when gate.enabled is true. Run the nightly run (`recs run --date {run_date}`) or its "
                f"interactions stage for that date first.")
    info = data.holdout_info.read(run_date) or {}
    kind, reason = info.get("holdout", TEMPORAL), info.get("holdout_reason", "")
    if kind == PER_PERSON:
        holdout_days = None
    elif info.get("holdout_days") is not None:
        holdout_days = int(info["holdout_days"])
    train_t = data.holdout_train.read_arrow(run_date)
    _require_not_null(train_t, ["person_id", "item_id", "weight"], what=f"holdout train of {run_date}")
    test_t = data.holdout_test.read_arrow(run_date, ["person_id", "item_id"])
    _require_not_null(test_t, ["person_id", "item_id"], what=f"holdout test of {run_date}")

    catalog = data.validated_catalog.read_arrow(run_date, ["item_id", "is_available", "category_path"]).to_pandas()
    catalog = catalog[catalog["item_id"].notna()].drop_duplicates("item_id", keep="last")
    available = np.sort(catalog.loc[catalog["is_available"].fillna(False).astype(bool), "item_id"]
                        .to_numpy(dtype=object))
    if len(available) == 0:
        raise ValueError(f"validated catalog at {data.validated_catalog.path(run_date)} has no available item: "
                         "nothing can be recommended")
    item_categories = pd.DataFrame({"item_id": catalog["item_id"].to_numpy(),
                                    "category_path": leaf_category_series(catalog["category_path"]).to_numpy()})

    persons = data.persons.read_arrow(run_date).to_pandas()
    present = tuple(d for d in segment_dimensions if d in persons.columns)
    persons = persons[persons["person_id"].notna()].drop_duplicates("person_id")

    matrix = InteractionMatrix.from_pairs(train_t.column("person_id"), train_t.column("item_id"),
                                          weights_for(train_t, half_life_days))
    matrix.matrix.eliminate_zeros()
    train = train_t.select(["person_id", "item_id", "purchased", "last_time"]).to_pandas()
    train["purchased"] = train["purchased"].fillna(False).astype(bool)
    test = test_t.to_pandas().drop_duplicates()

    test_persons = np.unique(test["person_id"].to_numpy(dtype=object))
    # Only persons with train history have factors; cold ones would count for the baselines alone.
    warm = test_persons[pd.Index(matrix.person_ids).get_indexer(test_persons) >= 0]
    n_cold = len(test_persons) - len(warm)
    if len(warm) > max_test_persons:
        warm = np.sort(np.random.default_rng(seed).choice(warm, size=max_test_persons, replace=False))
    sampled = pd.Index(warm)
    test = test[sampled.get_indexer(test["person_id"]) >= 0].reset_index(drop=True)
    bought = (train.loc[train["purchased"].to_numpy() & (sampled.get_indexer(train["person_id"]) >= 0),
                        ["person_id", "item_id"]].reset_index(drop=True))

    context = persons.set_index("person_id").reindex(matrix.person_ids).reset_index(drop=True)
    segments = pd.DataFrame({"person_id": matrix.person_ids, "segment": known_context_keys(context, present)})

    if kind == PER_PERSON:  # the end of D: every train event is before it
        cutoff = pd.Timestamp(run_date, tz="UTC") + pd.Timedelta(days=1)
    else:
        cutoff = pd.Timestamp(holdout_test_start(run_date, holdout_days).isoformat(), tz="UTC")
    counts = {"holdout": kind, "holdout_reason": reason, "holdout_days": holdout_days,
              "train_pairs": int(train_t.num_rows), "train_persons": len(matrix.person_ids),
              "train_items": len(matrix.item_ids), "test_pairs": int(test_t.num_rows),
              "test_persons": len(test_persons), "test_persons_without_history": n_cold,
              "evaluated_persons": len(warm), "evaluated_test_pairs": len(test),
              "catalog_items": len(catalog), "available_items": len(available)}
    weight_columns = [c for c in ("person_id", "item_id", "weight", "weights") if c in train_t.column_names]
    return Holdout(run_date=run_date, cutoff=cutoff, train=train, matrix=matrix, persons=warm, test=test,
                   bought=bought, available_items=available, item_categories=item_categories, segments=segments,
                   counts=counts, half_life_days=float(half_life_days), pair_weights=train_t.select(weight_columns),
                   kind=kind, reason=reason)


def model_recs(holdout: Holdout, settings, *, seed: int, k: int, index_settings=None,
               half_life_days: float | None = None, exact: bool = False, model: MFModel | None = None) -> pd.DataFrame:
    """ALS with `settings` on the holdout train (weighted with `half_life_days`, default the holdout's own),
    then the night's retrieval (the index `index_settings` picks, `jobs.config.IndexConfig`; `exact`: numpy
    top-k, no index) for the evaluated persons:
    person_id, item_id, score, rank (1..k); only available items, none bought before the cutoff.
    `model`: that fit already made (`jobs.evaluation.holdout_model`), not fitted again."""
    if model is None:
        matrix = holdout.matrix if half_life_days is None else holdout.matrix_for(half_life_days)
        model = MFModel.fit(matrix, settings, seed=seed)
    recs = model.recommend(holdout.persons, model.item_index(holdout.available_items),
                           exclude_persons=holdout.bought["person_id"].to_numpy(dtype=object),
                           exclude_items=holdout.bought["item_id"].to_numpy(dtype=object),
                           n=k, index_settings=index_settings, exact=exact)
    return recs.select(["person_id", "item_id", "score", "rank"]).to_pandas()


def baseline_recs(holdout: Holdout, *, k: int, windows_days: tuple[int, ...] = ()) -> dict[str, pd.DataFrame]:
    """The popularity baselines for the evaluated persons, with the model's exclusions: `popularity_global`,
    `popularity_recent_<N>d` for each N of `windows_days` (the N days before the cutoff: for a per-person holdout
    the last N days to D), `popularity_segment`.

    Popularity is counted on available items only (an item's count does not depend on the others, so this
    equals filtering the ranked list), as distinct persons per item in the holdout train.
    """
    train = holdout.train[pd.Index(holdout.available_items).get_indexer(holdout.train["item_id"]) >= 0]
    if len(train) == 0:
        log.warning("no holdout train interaction touches an available item: popularity baselines are empty")
        return {}
    pairs = train[["person_id", "item_id", "last_time"]]
    users = pd.Series(holdout.persons, dtype="object")
    out = {"popularity_global": popularity_recs(pairs, users, k=k, exclude=holdout.bought)}
    for days in windows_days:
        out[f"popularity_recent_{days}d"] = popularity_recs(pairs, users, k=k, exclude=holdout.bought,
                                                            since=holdout.cutoff - pd.Timedelta(days=days),
                                                            time_col="last_time")
    # Every train person's segment counts towards its segment's popularity, so all of them are passed and
    # the lists are then cut to the evaluated persons.
    segment = segment_popularity_recs(pairs, holdout.segments, k=k, exclude=holdout.bought)
    out["popularity_segment"] = segment[pd.Index(holdout.persons).get_indexer(segment["person_id"]) >= 0]
    return out


def evaluate(holdout: Holdout, recs: pd.DataFrame, *, k: int, beyond_accuracy: bool = True) -> dict:
    """`evaluate_all` on the holdout: ranking metrics, and with `beyond_accuracy` catalog coverage and Gini of
    exposure (over available items), novelty (vs the holdout train) and intra-list diversity (leaf categories)."""
    if not beyond_accuracy:
        return evaluate_all(recs, holdout.test, k=k)
    return evaluate_all(recs, holdout.test, k=k, train=holdout.train[["person_id", "item_id"]],
                        catalog=holdout.available_items, item_categories=holdout.item_categories)


def evaluate_settings(holdout: Holdout, settings, *, seed: int, k: int, index_settings=None,
                      beyond_accuracy: bool = True, half_life_days: float | None = None, exact: bool = False) -> dict:
    """Fit with ALS `settings` (factors, regularization, alpha, iterations, threads) on the train weighted with
    `half_life_days` (default the holdout's) and score on the holdout."""
    started = time.perf_counter()
    recs = model_recs(holdout, settings, seed=seed, k=k, index_settings=index_settings,
                      half_life_days=half_life_days, exact=exact)
    metrics = evaluate(holdout, recs, k=k, beyond_accuracy=beyond_accuracy)
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    return metrics
