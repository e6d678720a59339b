"""Output checks before publish (quality/outputs.py) on hand-made lists whose answers are worked out below."""
from __future__ import annotations

import pytest

import schemas

pytestmark = pytest.mark.spark

TOP_N = 3


def _recs(spark, lists: dict[tuple[str, str], list[tuple[int, str, float]]]):
    rows = [(stype, sid, rank, item, score, "mf", "control", "m1", "r1")
            for (stype, sid), entries in lists.items() for rank, item, score in entries]
    return spark.createDataFrame(rows, schema=schemas.load("recommendations").spark())


@pytest.fixture
def catalog(spark):
    # i6 is listed but out of stock
    rows = [(f"i{i}", f"Item {i}", "A > B", 10.0, i != 6) for i in range(1, 7)]
    return spark.createDataFrame(rows, "item_id string, title string, category_path string, price double, "
                                       "is_available boolean")


@pytest.fixture
def purchases(spark):
    return spark.createDataFrame([("p1", "i4")], "person_id string, item_id string")


GOOD = {
    ("person", "p1"): [(1, "i1", 0.9), (2, "i2", 0.8), (3, "i3", 0.7)],
    ("person", "p2"): [(1, "i2", 0.5), (2, "i3", 0.5), (3, "i5", 0.1)],  # a tie is not a violation
    ("segment", "global"): [(1, "i1", 3.0), (2, "i2", 2.0), (3, "i3", 1.0)],
    ("segment", "country=DE"): [(1, "i1", 2.0), (2, "i2", 1.0)],  # a segment list may be shorter
}


def test_check_recommendations__good_lists_pass(spark, catalog, purchases):
    from quality.outputs import check_recommendations

    assert check_recommendations(_recs(spark, GOOD), catalog=catalog, purchases=purchases, top_n=TOP_N) == []


def test_check_recommendations__each_violation_is_named(spark, catalog, purchases):
    from quality import QualityGateError
    from quality.outputs import check_recommendations

    bad = {
        ("person", "p1"): [(1, "i1", 0.9), (2, "i2", 0.8), (3, "i3", 0.7), (4, "i4", 0.6)],  # 4 items, one bought
        ("person", "p2"): [(1, "i2", 0.9), (2, "i2", 0.8), (3, "i5", 0.7)],  # an item twice
        ("person", "p3"): [(1, "i1", 0.9), (2, "i2", 0.8), (4, "i3", 0.7)],  # ranks 1, 2, 4
        ("person", "p4"): [(1, "i1", 0.1), (2, "i2", 0.5), (3, "i3", 0.9)],  # scores rise with rank
        ("person", "p5"): [(1, "i1", 0.9), (2, "zz", 0.8), (3, "i3", 0.7)],  # not in the catalog
        ("person", "p6"): [(1, "i1", 0.9), (2, "i6", 0.8), (3, "i3", 0.7)],  # out of stock
        ("segment", "country=DE"): [(1, "i1", 2.0), (2, "i2", 1.0)],  # but no `global` list
    }
    failures = check_recommendations(_recs(spark, bad), catalog=catalog, purchases=purchases, top_n=TOP_N)
    by_check = {f["check"]: f for f in failures}
    assert set(by_check) == {"person_list_size", "ranks", "score_order", "items_in_catalog", "items_available",
                             "already_bought", "global_segment"}
    assert by_check["person_list_size"]["observed"] == 2  # p1 (4 rows) and p2 (a repeated item)
    assert (by_check["ranks"]["observed"], by_check["ranks"]["subject"]) == (1, "person:p3")  # p1's 1..4 is 1..n
    assert (by_check["score_order"]["observed"], by_check["score_order"]["subject"]) == (1, "person:p4")
    assert (by_check["items_in_catalog"]["observed"], by_check["items_in_catalog"]["subject"]) == (1, "zz")
    assert (by_check["items_available"]["observed"], by_check["items_available"]["subject"]) == (1, "i6")
    assert (by_check["already_bought"]["observed"], by_check["already_bought"]["subject"]) == (1, "p1:i4")
    assert all(f["dataset"] == "recommendations" and f["message"].startswith("recommendations: ") for f in failures)
    # publish raises the failures as they are
    err = QualityGateError(failures)
    assert err.failures == failures and "global_segment" in str(err)


def test_coverage_figures(spark, catalog):
    from quality.outputs import coverage_figures

    got = coverage_figures(_recs(spark, GOOD), catalog)
    assert got == {"lists": 4, "person_lists": 2, "segment_lists": 2, "rows": 11, "distinct_items": 4,
                   "catalog_items": 6, "available_items": 5, "catalog_coverage": pytest.approx(4 / 6),
                   "available_coverage": pytest.approx(4 / 5), "top_item": "i3", "top_item_list_share": 1.0,
                   # person rows on the 5 available items: i1 1, i2 2, i3 2, i4 0, i5 1 (6 rows); sorted 0 1 1 2 2
                   # gini = (-4*0 - 2*1 + 0*1 + 2*2 + 4*2) / (5 * 6) = 1/3; the top item holds 2 of 6 rows,
                   # the top 3 (50% of 5, rounded up) hold 5 of 6
                   "exposure_gini": pytest.approx(1 / 3),
                   "exposure_top_shares": [[0.01, pytest.approx(2 / 6)], [0.05, pytest.approx(2 / 6)],
                                           [0.1, pytest.approx(2 / 6)], [0.2, pytest.approx(2 / 6)],
                                           [0.5, pytest.approx(5 / 6)]]}
