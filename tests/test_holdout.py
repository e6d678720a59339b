"""The gate's temporal holdout (jobs/evaluation/holdout.py) on the known-answer shop of tests/known_shop.py."""
import dataclasses

from known_shop import CUTOFF, RUN_DATE, UNAVAILABLE, gate_cfg, write_shop

from jobs.evaluation.holdout import load_holdout, model_recs
from jobs.storage.datasets import Datasets


def holdout_of(cfg):
    g = cfg.gate
    return load_holdout(Datasets(cfg.data_root), RUN_DATE, holdout_days=g.holdout_days,
                        max_test_persons=g.max_test_persons,
                        segment_dimensions=cfg.segments.dimensions, seed=cfg.seed,
                        half_life_days=cfg.interactions.half_life_days)


def test_model_recs_skip_bought_and_unavailable_items(cfg):
    cfg = gate_cfg(cfg)
    write_shop(cfg)
    holdout = holdout_of(cfg)
    als = dataclasses.replace(cfg.als, factors=8, regularization=0.05, alpha=10.0, iterations=10, threads=1)
    recs = model_recs(holdout, als, seed=1, k=5, index_settings=cfg.candidates.index)
    assert recs.groupby("person_id").size().eq(5).all() and recs["person_id"].nunique() == 90
    assert UNAVAILABLE not in set(recs["item_id"])
    bought = set(zip(holdout.bought["person_id"], holdout.bought["item_id"]))
    assert len(bought) == 90 * 6
    assert not bought & set(zip(recs["person_id"], recs["item_id"]))
    assert recs.groupby("person_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()


def test_sample_of_test_persons_is_seeded_and_capped(cfg):
    cfg = gate_cfg(cfg, max_test_persons=7)
    write_shop(cfg)
    a, b = holdout_of(cfg), holdout_of(cfg)
    assert len(a.persons) == 7 and list(a.persons) == list(b.persons)
    assert set(a.test["person_id"]) == set(a.persons) and len(a.test) == 14
    assert list(holdout_of(cfg.replace(seed=cfg.seed + 1)).persons) != list(a.persons)


def test_a_per_person_holdout_is_read_with_its_reason_and_ends_with_D(cfg):
    cfg = gate_cfg(cfg)
    write_shop(cfg)
    data = Datasets(cfg.data_root)
    data.holdout_info.write(RUN_DATE, {"run_date": RUN_DATE, "holdout": "per_person", "holdout_reason": "auto: few return",
                                       "holdout_days": None, "train_end": RUN_DATE})
    holdout = holdout_of(cfg)
    assert (holdout.kind, holdout.reason) == ("per_person", "auto: few return")
    assert holdout.cutoff.isoformat() == "2026-03-11T00:00:00+00:00"  # the end of D: recent windows end with D
    assert holdout.counts["holdout"] == "per_person" and holdout.counts["holdout_days"] is None
    data.holdout_info.write(RUN_DATE, {"run_date": RUN_DATE, "holdout": "temporal", "holdout_days": 7,
                                       "test_start": "2026-03-04"})
    assert holdout_of(cfg).kind == "temporal" and holdout_of(cfg).cutoff == CUTOFF
