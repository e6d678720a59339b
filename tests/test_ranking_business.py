import numpy as np
import pytest

from jobs.config import BusinessConfig
from jobs.ranking.business import adjusted, adjustment

TERMS = BusinessConfig(margin_weight=0.5, stock_weight=0.2, low_stock_qty=4, max_adjustment=0.1)


def test_adjustments_are_bounded_and_missing_columns_add_nothing():
    got = adjustment([0.9, np.nan, 0.0, 0.1], [100, np.nan, 0, 2], TERMS)
    assert got[0] == pytest.approx(0.1)          # 0.45 clipped to the bound
    assert got[1] == 0.0                          # neither margin nor stock known
    assert got[2] == pytest.approx(-0.1)          # out of stock: -0.2 clipped
    assert got[3] == pytest.approx(0.05 - 0.1)    # half the low-stock level
    assert np.all(np.abs(got) <= TERMS.max_adjustment)


def test_margin_reorders_only_near_ties():
    rel = adjusted([1.0, 0.97, 0.5], [0.0, 0.2, 1.0], [np.nan] * 3, TERMS)
    assert list(np.argsort(-rel)) == [1, 0, 2]   # a 0.03 gap is crossed, a 0.5 gap is not
