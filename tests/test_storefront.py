"""The storefront simulator on a tiny shop: one night's run with two arms, then simulated days against its lists."""
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from storefront_shop import DAY, NEXT_DAY, NIGHT, config

pytestmark = pytest.mark.spark


@pytest.fixture
def published(storefront_published):
    """The shared tiny shop after one night's run that published lists for two arms (never modified: tests copy)."""
    return storefront_published


def simulated(published, tmp_path, name="shop", *, days=(DAY,), **kwargs):
    """A copy of the published shop with `days` simulated; returns (root, cfg, summaries)."""
    from jobs.storefront import Arrivals, simulate_storefront

    src, conf = published
    root = tmp_path / name
    shutil.copytree(src, root)
    cfg = config(root, conf)
    kwargs.setdefault("arrivals", Arrivals(people_per_day=0.01, items_per_day=0.03))
    out = simulate_storefront(cfg, start=days[0], end=days[-1], **kwargs)
    return root, cfg, out


def table(path):
    return pq.read_table(path).to_pandas()


def impressions(root, ds=DAY):
    ev = table(root / "raw" / "events" / f"dt={ds}")
    return ev[ev.event_type == "rec_impression"]


def test_impressions_are_the_published_lists_of_the_persons_arm(published, tmp_path):
    from jobs.experiments import arm_of
    from jobs.serving.kvstore import KVReader
    from jobs.storefront import Behaviour

    root, cfg, _ = simulated(published, tmp_path)
    exposures = table(root / "truth" / "storefront" / "exposures" / f"dt={DAY}")
    imp = impressions(root)
    store = KVReader(str(root / "exports" / "kv"))
    in_experiment = exposures[exposures.experiment_id == "sf-test"]
    assert len(in_experiment) > 30 and set(in_experiment.variant) == {"popular", "model"}
    for ex in exposures.itertuples():
        shown = imp[imp.session_id == ex.exposure_id].sort_values("position")
        answer = store.lookup(ex.lookup_id, country=shown.country.iloc[0], device_type=shown.device_type.iloc[0],
                              k=Behaviour().slots)
        assert list(shown.item_id) == [i["item_id"] for i in answer["items"]]
        assert list(shown.position) == list(range(1, len(shown) + 1))
        assert set(shown.variant) == {answer["variant"]}
        if answer["source"] == "person":  # the arm the pipeline's rule gives that person
            assert set(shown.experiment_id) == {"sf-test"}
            assert answer["variant"] == arm_of(cfg.experiment, answer["person_id"])
        else:  # people the pipeline does not know get segment lists, outside the experiment
            assert set(shown.experiment_id) == {""}
    assert len(imp) == exposures.n_shown.sum()


def test_same_seed_gives_the_same_bytes(published, tmp_path):
    a, _, _ = simulated(published, tmp_path, "a", days=(DAY, NEXT_DAY))
    b, _, _ = simulated(published, tmp_path, "b", days=(DAY, NEXT_DAY))
    c, _, _ = simulated(published, tmp_path, "c", days=(DAY,), seed=99)
    written = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and
                     (str(p.relative_to(a)).startswith(("raw/", "truth/storefront/")) and
                      any(d in str(p) for d in (DAY, NEXT_DAY))))
    assert len(written) >= 2 * 9
    for rel in written:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "raw/events" / f"dt={DAY}" / "part-00000.parquet").read_bytes() != \
        (c / "raw/events" / f"dt={DAY}" / "part-00000.parquet").read_bytes()


def test_clicks_favour_high_true_utility_and_top_positions(published, tmp_path):
    days = [f"2026-08-{d}" for d in range(15, 22)]
    root, _, _ = simulated(published, tmp_path, days=tuple(days))
    shown = table(root / "truth" / "storefront" / "shown")
    assert shown.clicked.sum() > 50
    high = shown.true_utility > shown.true_utility.median()
    assert shown[high].clicked.mean() > 1.5 * shown[~high].clicked.mean()
    top, bottom = shown[shown.position <= 2], shown[shown.position >= shown.position.max() - 1]
    assert top.clicked.mean() > 3 * bottom.clicked.mean()
    # realised clicks follow the truth's probabilities, and every click is a rec_click event on the shown item
    assert shown.clicked.sum() == pytest.approx(shown.p_click.sum(), rel=0.2)
    clicks = sum((table(root / "raw" / "events" / f"dt={d}").event_type == "rec_click").sum() for d in days)
    assert clicks == shown.clicked.sum()
    assert shown[shown.purchased].carted.all() and shown[shown.carted].clicked.all()


def test_planted_srm_share_shows_in_the_exposed_persons(published, tmp_path):
    from jobs.storefront import Faults

    def exposed(root):
        ex = table(root / "truth" / "storefront" / "exposures" / f"dt={DAY}")
        ex = ex[ex.experiment_id == "sf-test"]
        return ex.groupby("variant").person.unique().map(set)

    base, _, _ = simulated(published, tmp_path, "base")
    srm, _, out = simulated(published, tmp_path, "srm", faults=Faults(srm_share=0.7))
    before, after = exposed(base), exposed(srm)
    dropped = table(srm / "truth" / "storefront" / "planted" / f"dt={DAY}")
    assert set(dropped.fault) == {"srm_dropped"} and set(dropped.variant) == {"model"}
    # exactly the planted persons are gone, all from the thinned arm
    assert after["popular"] == before["popular"]
    assert after["model"] == before["model"] - set(dropped.person)
    share = len(after["popular"]) / (len(after["popular"]) + len(after["model"]))
    share_before = len(before["popular"]) / (len(before["popular"]) + len(before["model"]))
    assert share > 0.6 and share > share_before + 0.1  # planted 70/30 where the config says 50/50
    assert out[DAY]["planted"]["srm_dropped_persons"] == len(set(dropped.person))


def test_planted_two_arm_persons_are_logged_in_both_arms(published, tmp_path):
    from jobs.storefront import Faults

    root, _, _ = simulated(published, tmp_path, faults=Faults(two_arm_persons=3))
    planted = table(root / "truth" / "storefront" / "planted" / f"dt={DAY}")
    assert list(planted.fault) == ["two_arm"] * 3
    exposures = table(root / "truth" / "storefront" / "exposures" / f"dt={DAY}")
    ex = exposures[exposures.experiment_id == "sf-test"]
    arms = ex.groupby("person").variant.nunique()
    assert set(arms[arms > 1].index) == set(planted.person)
    # in the events too: the same user_id carries both variants
    imp = impressions(root)
    imp = imp[imp.experiment_id == "sf-test"]
    ids = ex[ex.person.isin(planted.person)].lookup_id.unique()
    for id_ in ids:
        rows = imp[(imp.user_id == id_) | (imp.anonymous_id == id_)]
        assert rows.variant.nunique() == 2


def test_new_shoppers_and_items_arrive(published, tmp_path):
    root, _, out = simulated(published, tmp_path)
    new_people = table(root / "truth" / "storefront" / "persons" / f"dt={DAY}")
    ids = table(root / "truth" / "storefront" / "identities" / f"dt={DAY}")
    events = table(root / "raw" / "events" / f"dt={DAY}")
    assert len(new_people) == out[DAY]["new_persons"] == 3
    assert set(ids.person) == set(new_people.person)
    assert set(ids[ids.id_type == "anonymous_id"].id) <= set(events.anonymous_id)
    catalog = table(root / "raw" / "catalog" / f"dt={DAY}")
    fresh = catalog[catalog.created_at.dt.date.astype(str) == DAY]
    assert len(fresh) == out[DAY]["new_items"] == 3 and not set(fresh.item_id) & set(
        table(root / "raw" / "catalog" / f"dt={NIGHT}").item_id)


def test_the_days_feed_passes_validation(published, tmp_path, spark):
    from jobs.pipeline import run_stage

    root, cfg, _ = simulated(published, tmp_path)
    run_stage("validate", cfg, DAY, spark=spark)  # raises when the day's feed fails a gate
    validated = table(root / "validated" / "events" / f"dt={DAY}")
    raw = table(root / "raw" / "events" / f"dt={DAY}")
    assert len(validated) == len(raw)
    assert not (root / "quarantine" / "events" / f"dt={DAY}").exists() or \
        len(table(root / "quarantine" / "events" / f"dt={DAY}")) == 0
    assert validated[validated.event_type == "rec_impression"].position.notna().all()


def test_days_must_follow_the_generated_period_in_order(published, tmp_path):
    from jobs.storefront import simulate_storefront

    src, conf = published
    root = tmp_path / "shop"
    shutil.copytree(src, root)
    cfg = config(root, conf)
    with pytest.raises(ValueError, match="inside the generated period"):
        simulate_storefront(cfg, start=NIGHT, end=NIGHT)
    with pytest.raises(ValueError, match=f"{DAY} has not been simulated"):
        simulate_storefront(cfg, start=NEXT_DAY, end=NEXT_DAY)
    assert not (root / "raw" / "events" / f"dt={NEXT_DAY}").exists()


def test_a_shop_without_its_arguments_is_a_clear_error(tmp_path):
    from jobs.config import load_config
    from jobs.storefront import simulate_storefront

    cfg = load_config(data_root=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="truth/shop.json is missing"):
        simulate_storefront(cfg, start=DAY, end=DAY)


def test_truth_per_arm_summary_agrees_with_the_exposures(published, tmp_path):
    from jobs.storefront.truth import arm_truth

    root, _, _ = simulated(published, tmp_path)
    arms = arm_truth(str(root), "sf-test")
    ex = table(root / "truth" / "storefront" / "exposures" / f"dt={DAY}")
    ex = ex[ex.experiment_id == "sf-test"]
    for arm, figures in arms.items():
        mine = ex[ex.variant == arm]
        assert figures["exposed_persons"] == mine.person.nunique()
        assert figures["expected_revenue_per_person"] == pytest.approx(
            mine.groupby("person").expected_revenue.sum().mean())
        assert 0 <= figures["conversion"] <= 1 and figures["two_arm_persons"] == 0
    assert np.isfinite(arms["model"]["revenue_per_person"])
