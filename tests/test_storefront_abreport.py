"""The loop closed on a tiny shop: one night publishes two arms, the storefront simulates days against them with
people planted in both arms, one more night's validate and stitch, then `recs ab-report` is read against the
simulator's truth (`jobs.storefront.truth.arm_truth`)."""
import shutil

import pytest
from test_storefront import ARMS, DAY, NEXT_DAY, START, DAYS, NIGHT, config  # noqa: F401  (same tiny shop)

pytestmark = pytest.mark.spark

EXP, TWO_ARM = "sf-test", 3


@pytest.fixture(scope="module")
def looped(tmp_path_factory, spark):
    """Generated shop -> night -> two simulated days (3 persons planted in both arms) -> validate + stitch of the
    last day -> ab-report over the simulated days. Returns (root, report, truth)."""
    from jobs.abtest.job import run as ab_report
    from jobs.pipeline import run_all, run_stage
    from jobs.shop import generate_shop
    from jobs.storefront import Arrivals, Faults, simulate_storefront
    from jobs.storefront.truth import arm_truth

    base = tmp_path_factory.mktemp("loop")
    conf = base / "arms.yaml"
    conf.write_text(ARMS)
    root = base / "shop"
    generate_shop(str(root), start=START, days=DAYS, users=300, items=100, seed=3)
    cfg = config(root, conf)
    assert run_all(cfg, NIGHT, spark=spark)["status"] == "published"
    simulate_storefront(cfg, start=DAY, end=NEXT_DAY, arrivals=Arrivals(people_per_day=0.01, items_per_day=0.03),
                        faults=Faults(two_arm_persons=TWO_ARM))
    for stage in ("validate", "stitch"):
        run_stage(stage, cfg, NEXT_DAY, spark=spark)
    report = ab_report(spark, cfg, EXP, start=DAY, end=NEXT_DAY)
    return root, report, arm_truth(str(root), EXP)


def test_people_per_arm_and_two_arm_drops_agree_with_the_truth(looped):
    _, report, truth = looped
    assert set(report["people"]) == set(truth) == {"popular", "model"}
    assert report["control"] == "popular"
    for arm, figures in truth.items():
        assert report["people"][arm] == figures["exposed_persons"], arm
    # every planted person is counted once (per day planted: up to TWO_ARM each day) and dropped from the arms
    assert report["health"]["two_arm_people"] == truth["model"]["two_arm_persons"] >= TWO_ARM
    assert report["health"]["unattributed_impressions"] == 0


def test_differences_have_the_sign_of_the_truth(looped):
    _, report, truth = looped
    m, pop = truth["model"], truth["popular"]
    cmp = report["comparisons"]["model"]
    for metric, true_diff in (("revenue_per_person_uncapped", m["revenue_per_person"] - pop["revenue_per_person"]),
                              ("conversion_rate", m["conversion"] - pop["conversion"])):
        assert true_diff != 0 and (cmp[metric]["diff"] > 0) == (true_diff > 0), (metric, cmp[metric], true_diff)
        assert cmp[metric]["diff"] == pytest.approx(true_diff, rel=0.25), metric
    # the page is written beside the JSON
    assert report["paths"]["html"].endswith("report.html")
