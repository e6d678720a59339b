"""Pairwise precision/recall of stitching against ground truth (`jobs.identity.scoring`): pandas only."""
import pandas as pd
import pytest

from jobs.identity.scoring import evaluate_stitching


def test_evaluate_stitching__pair_counts_from_contingency_table():
    truth = pd.DataFrame({"id_type": ["user_id", "anonymous_id", "anonymous_id", "user_id", "anonymous_id",
                                      "anonymous_id"],
                          "id": ["a", "b", "c", "d", "e", "shared"], "person": ["X", "X", "X", "Y", "Y", "X"]})
    predicted = pd.DataFrame({"id_type": ["user_id", "anonymous_id", "anonymous_id", "user_id", "anonymous_id"],
                              "id": ["a", "b", "c", "d", "shared"], "person_id": ["p1", "p1", "p2", "p1", "p9"]})
    m = evaluate_stitching(predicted, truth, exclude_anonymous_ids=["shared"])
    # cells (p1,X)=2 (p2,X)=1 (p1,Y)=1 (missing e,Y)=1 -> together 1; predicted pairs: p1 has 3 -> 3;
    # true pairs: X has 3 -> 3, Y has 2 -> 1.
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 4)
    assert (m["persons_found"], m["true_persons"], m["ids_missing"], m["ids_evaluated"]) == (3, 2, 1, 5)
    perfect = evaluate_stitching(truth.rename(columns={"person": "person_id"}), truth)
    assert perfect["precision"] == perfect["recall"] == perfect["persons_ratio"] == 1.0
