"""How candidates become the published lists: shared by the rank stage and the gate (stages never import each
other; both import this package).

- `lists`: the fill and its inputs (segment popularity, each person's segment, item features, fill length) and
  `ListInputs`, what the ranking step receives.
- `blend`: the fixed blend ranker (`rank_person_lists`, `blend_lists`): relevance, popularity and margin, and the
  category demotion.

`ranker_for(cfg)` is the one place that picks the ranking step, a function `(ListInputs, RankConfig) -> DataFrame`
of (person_id, rank, item_id, score, source) rows: the rank stage calls it for the night's lists and the gate for the
same lists rebuilt on its holdout, so another ranker plugs in here and both follow.
"""
from __future__ import annotations


def ranker_for(cfg):
    """The ranking step of the config `cfg` (`jobs.config.RecsConfig`): today the blend of `rank.*`."""
    from jobs.ranking.blend import blend_lists

    return blend_lists
