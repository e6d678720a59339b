"""Scoring stitching against ground truth (the synthetic shop's `truth/identities`): pairwise precision/recall.

pandas only, no Spark: `bench/bench_stitch.py` and the tests call it on the identity map and the truth.
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd


def evaluate_stitching(identity_map_pdf: pd.DataFrame, truth_pdf: pd.DataFrame, *,
                       exclude_anonymous_ids: Iterable[str] = ()) -> dict:
    """Pairwise precision/recall of "these two ids are the same person" against ground truth.

    Counts pairs from the contingency table (n * (n - 1) / 2 per cell), never enumerating them.

    Parameters
    ----------
    identity_map_pdf : pandas.DataFrame
        id_type, id, person_id (the identity map).
    truth_pdf : pandas.DataFrame
        id_type, id, person (the generator's `truth/identities`).
    exclude_anonymous_ids : iterable of str
        anonymous_ids left out on both sides (shared devices, kiosks: they have no single true person).

    Returns
    -------
    dict
        precision and recall in [0, 1] (1.0 when there is no pair to judge), persons_found, true_persons,
        persons_ratio (found / true; 1.0 is perfect, above 1 means split persons), ids_evaluated and
        ids_missing (truth ids absent from the map: each counts as a person of its own).
    """
    for name, pdf, cols in (("identity map", identity_map_pdf, ("id_type", "id", "person_id")),
                            ("truth", truth_pdf, ("id_type", "id", "person"))):
        missing = [c for c in cols if c not in pdf.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing}; it has {list(pdf.columns)}")
    excluded = set(exclude_anonymous_ids)
    truth = truth_pdf[["id_type", "id", "person"]]
    truth = truth[~((truth["id_type"] == "anonymous_id") & truth["id"].isin(excluded))]
    merged = truth.merge(identity_map_pdf[["id_type", "id", "person_id"]], on=["id_type", "id"], how="left")
    ids_missing = int(merged["person_id"].isna().sum())
    # An id the map does not know is, for the storefront, a person of its own.
    merged["person_id"] = merged["person_id"].astype(object).where(
        merged["person_id"].notna(), "missing:" + merged["id_type"].astype(str) + ":" + merged["id"].astype(str))

    def pairs(sizes: pd.Series) -> int:
        n = sizes.to_numpy(dtype="int64")
        return int((n * (n - 1) // 2).sum())

    together = pairs(merged.groupby(["person_id", "person"]).size())
    predicted = pairs(merged.groupby("person_id").size())
    true_pairs = pairs(merged.groupby("person").size())
    found, true_persons = merged["person_id"].nunique(), merged["person"].nunique()
    return {"precision": together / predicted if predicted else 1.0,
            "recall": together / true_pairs if true_pairs else 1.0,
            "persons_found": int(found), "true_persons": int(true_persons),
            "persons_ratio": found / true_persons if true_persons else 1.0,
            "ids_evaluated": len(merged), "ids_missing": ids_missing}
