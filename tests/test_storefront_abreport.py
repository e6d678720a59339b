"""The loop closed on the storefront tests' tiny shop: its one published night (two arms), two simulated days with
people planted in both arms, the last day's validate and stitch, then `recs ab-report`, read against the simulator's
truth (`jobs.storefront.truth.arm_truth`)."""
import shutil

import pyarrow.parquet as pq
import pytest
from storefront_shop import DAY, NEXT_DAY, config

pytestmark = pytest.mark.spark

EXP, TWO_ARM = "sf-test", 3


@pytest.fixture(scope="module")
def looped(storefront_published, tmp_path_factory, spark):
    """A copy of the published shop -> DAY and NEXT_DAY simulated (TWO_ARM persons planted in both arms a day) ->
    validate + stitch of NEXT_DAY -> ab-report over the two days. Returns (root, report, truth)."""
    from jobs.abtest.job import run as ab_report
    from jobs.pipeline import run_stage
    from jobs.storefront import Arrivals, Faults, simulate_storefront
    from jobs.storefront.truth import arm_truth

    src, conf = storefront_published
    root = tmp_path_factory.mktemp("loop") / "shop"
    shutil.copytree(src, root)
    cfg = config(root, conf)
    simulate_storefront(cfg, start=DAY, end=NEXT_DAY, arrivals=Arrivals(people_per_day=0.01, items_per_day=0.03),
                        faults=Faults(two_arm_persons=TWO_ARM))
    for stage in ("validate", "stitch"):  # validate takes both pending days; stitch every day it has not consumed
        run_stage(stage, cfg, NEXT_DAY, spark=spark)
    report = ab_report(spark, cfg, EXP, start=DAY, end=NEXT_DAY)
    return root, report, arm_truth(str(root), EXP)


def test_people_per_arm_and_two_arm_drops_agree_with_the_truth(looped):
    root, report, truth = looped
    assert set(report["people"]) == set(truth) == {"popular", "model"}
    assert report["control"] == "popular"
    for arm, figures in truth.items():
        assert report["people"][arm] == figures["exposed_persons"] > 10, arm
    # the planted persons are the two-arm people: counted once however many days planted, and in no arm
    planted = set()
    for ds in (DAY, NEXT_DAY):
        rows = pq.read_table(root / "truth" / "storefront" / "planted" / f"dt={ds}").to_pandas()
        planted |= set(rows[rows.fault == "two_arm"].person)
    assert len(planted) >= TWO_ARM
    assert report["health"]["two_arm_people"] == truth["model"]["two_arm_persons"] == len(planted)
    # segment lists (experiment_id "") never count: every impression of the experiment has its person
    assert report["health"]["unattributed_impressions"] == 0


def test_differences_are_the_truths(looped):
    _, report, truth = looped
    m, pop = truth["model"], truth["popular"]
    cmp = report["comparisons"]["model"]
    # two days hold no return (returns come 2-21 days after the purchase), so net revenue is the truth's gross
    for metric, key in (("revenue_per_person_uncapped", "revenue_per_person"), ("conversion_rate", "conversion")):
        true_diff = m[key] - pop[key]
        assert true_diff > 0, metric  # the planted quality effect: the model's lists sell more
        assert cmp[metric]["diff"] == pytest.approx(true_diff, rel=1e-9), metric
        assert (cmp[metric]["control"], cmp[metric]["treatment"]) == pytest.approx((pop[key], m[key]), rel=1e-9)
    # the decisive CUPED metric has the truth's sign, and a ship verdict would need it
    assert cmp["revenue_per_person"]["diff"] > 0
    assert report["decisions"]["model"]["verdict"] in ("ship", "keep_running")
