"""Offline evaluation: ranking and beyond-accuracy metrics at K, splits, popularity baselines.

Engine-light on purpose (numpy + pandas, no Spark) and vectorized over integer codes: no Python loop per
user. Frames are pandas DataFrames with the columns named below; every public function takes `user_col=` /
`item_col=` overrides, and a missing column raises `ValueError` naming the frame and the column.

This face only re-exports; the code lives in `metrics` (ranking and beyond-accuracy metrics, `evaluate_all`),
`splits` (train/test splits, the gate's holdout cutoff) and `baselines` (popularity recommenders).
"""
from ._common import CATEGORY_COL, ITEM_COL, RANK_COL, SCORE_COL, SEGMENT_COL, TIME_COL, USER_COL
from .baselines import popularity_recs, segment_popularity_recs
from .metrics import (MapDenominator, RankedHits, catalog_coverage, evaluate_all, gini_exposure, hit_rate_at_k,
                      intra_list_diversity, map_at_k, mrr_at_k, ndcg_at_k, novelty, precision_at_k, ranked_hits,
                      recall_at_k, top_k)
from .splits import (StratifiedMethod, holdout_test_start, python_stratified_split, random_split_per_user,
                     temporal_holdout)

__all__ = [
    "CATEGORY_COL", "ITEM_COL", "RANK_COL", "SCORE_COL", "SEGMENT_COL", "TIME_COL", "USER_COL",
    "popularity_recs", "segment_popularity_recs",
    "MapDenominator", "RankedHits", "catalog_coverage", "evaluate_all", "gini_exposure", "hit_rate_at_k",
    "intra_list_diversity", "map_at_k", "mrr_at_k", "ndcg_at_k", "novelty", "precision_at_k", "ranked_hits",
    "recall_at_k", "top_k",
    "StratifiedMethod", "holdout_test_start", "python_stratified_split", "random_split_per_user",
    "temporal_holdout",
]
