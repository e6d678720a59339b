"""The A/B statistics (`jobs.abtest.stats`, `jobs.abtest.readout`) on synthetic per-person data drawn in numpy:
reference values from independent implementations (scipy's Welch test, statsmodels' regression), the delta method
against a bootstrap, and the error rates of the decision rule over 200 seeds. No Spark: the statistics take sums."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from jobs.abtest import stats
from jobs.abtest.frames import METRICS
from jobs.abtest.readout import readout
from jobs.abtest.stats import Moments

SEEDS = 200
ALPHA = 0.05


def shoppers(rng, n, *, revenue_lift=0.0, conversion_lift=0.0):
    """Per-person (pre-period revenue, revenue after exposure, converted): revenue depends on the pre-period, so
    CUPED has something to remove; lifts are added to every person of the arm (the planted truth)."""
    pre = rng.gamma(0.6, 40.0, n)
    p = np.clip(0.08 + 0.002 * pre, 0, 0.9) + conversion_lift
    converted = (rng.random(n) < p).astype(float)
    revenue = converted * rng.gamma(2.0, 25.0, n) + 0.5 * pre + revenue_lift
    return pre, revenue, converted


def binomial_band(rate=ALPHA, n=SEEDS, level=0.99):
    lo, hi = sps.binom.interval(level, n, rate)
    return lo / n, hi / n


def test_compare_means__equals_scipy_welch():
    rng = np.random.default_rng(1)
    c, t = rng.gamma(2, 10, 300), rng.gamma(2, 11, 280)
    cmp = stats.compare_means(Moments.of(c), Moments.of(t), alpha=ALPHA, tuning_n=1000)
    ref = sps.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(1 - ALPHA)
    assert cmp.diff == pytest.approx(t.mean() - c.mean(), rel=1e-12)
    assert cmp.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert cmp.ci == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_moments_add_up_to_the_pooled_sums():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 50)), rng.normal(size=(2, 70))
    pooled = Moments.of(a[0], a[1]) + Moments.of(b[0], b[1])
    direct = Moments.of(np.r_[a[0], b[0]], np.r_[a[1], b[1]])
    assert pooled.var_y == pytest.approx(direct.var_y) and pooled.cov_xy == pytest.approx(direct.cov_xy)


def test_cuped__equals_the_arm_coefficient_of_a_direct_regression_and_reduces_variance_as_it_does():
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    xc, yc, _ = shoppers(rng, 1500)
    xt, yt, _ = shoppers(rng, 1500, revenue_lift=2.0)
    cmp, theta = stats.compare_cuped(Moments.of(yc, xc), Moments.of(yt, xt), alpha=ALPHA, tuning_n=3000)
    arm = np.r_[np.zeros(yc.size), np.ones(yt.size)]
    x, y = np.r_[xc, xt], np.r_[yc, yt]
    fit = sm.OLS(y, sm.add_constant(np.column_stack([arm, x]))).fit()
    assert cmp.diff == pytest.approx(fit.params[1], rel=1e-9)
    assert theta == pytest.approx(fit.params[2], rel=1e-9)
    assert cmp.se == pytest.approx(fit.bse[1], rel=0.03)
    plain = stats.compare_means(Moments.of(yc), Moments.of(yt), alpha=ALPHA, tuning_n=3000)
    unadjusted = sm.OLS(y, sm.add_constant(arm)).fit()
    reduction_regression = 1 - (fit.bse[1] / unadjusted.bse[1]) ** 2
    reduction = 1 - (cmp.se / plain.se) ** 2
    assert reduction > 0.2  # the pre-period explains a good part of revenue here
    assert reduction == pytest.approx(reduction_regression, abs=0.03)


def test_delta_method_ratio_variance__matches_a_bootstrap_over_people():
    rng = np.random.default_rng(4)
    n = 800
    impressions = rng.poisson(6, n) + 1
    clicks = rng.binomial(impressions, rng.beta(2, 18, n))
    m = Moments.of(clicks, impressions)
    r, var_per_person = stats.ratio_variance(m)
    assert r == pytest.approx(clicks.sum() / impressions.sum())
    idx = rng.integers(0, n, size=(3000, n))
    boot = clicks[idx].sum(axis=1) / impressions[idx].sum(axis=1)
    assert math.sqrt(var_per_person / n) == pytest.approx(boot.std(ddof=1), rel=0.08)


def test_sample_ratio_mismatch__a_51_49_split_is_flagged_a_fair_one_is_not():
    rng = np.random.default_rng(5)
    n = 100_000
    planted = int((rng.random(n) < 0.51).sum())
    fair = int((rng.random(n) < 0.50).sum())
    shares = {"control": 0.5, "treatment": 0.5}
    bad = stats.sample_ratio({"control": planted, "treatment": n - planted}, shares, threshold=0.001)
    good = stats.sample_ratio({"control": fair, "treatment": n - fair}, shares, threshold=0.001)
    assert bad["flagged"] and bad["p_value"] < 1e-6
    assert not good["flagged"]
    # Pearson's statistic by hand
    assert bad["chi2"] == pytest.approx(2 * (planted - n / 2) ** 2 / (n / 2))


def test_sequential_halfwidth__wider_than_the_fixed_interval_and_shrinking_with_people():
    se = 1.0 / math.sqrt(1000)
    h = stats.sequential_halfwidth(se, 1000, ALPHA, tuning_n=1000)
    assert h > 1.96 * se
    assert stats.sequential_halfwidth(1 / math.sqrt(4000), 4000, ALPHA, 1000) < h


def _arm(pre, revenue, converted):
    """Per-metric Moments of one synthetic arm (metrics the draw does not model get the conversion's)."""
    base = Moments.of(converted)
    out = {name: base for name in METRICS}
    out["revenue_per_person"] = Moments.of(revenue, pre)
    out["conversion_rate"] = Moments.of(converted)
    out["retention"] = Moments.of(converted)
    return out


def _aa(seed, n=2000, **lifts):
    rng = np.random.default_rng(seed)
    return _arm(*shoppers(rng, n)), _arm(*shoppers(rng, n, **lifts))


def _read(c, t, *, final=True):
    return readout({"control": c, "treatment": t}, arms=["control", "treatment"],
                   shares={"control": 0.5, "treatment": 0.5}, alpha=ALPHA, srm_p=0.001, imbalance_p=0.001,
                   tuning_n=4000, final=final, two_arm_people=0)


def test_aa_over_200_seeds__false_positive_rates_within_the_binomial_band():
    lo, hi = binomial_band()
    ship, rejected = 0, {"revenue_per_person": 0, "conversion_rate": 0}
    for seed in range(SEEDS):
        out = _read(*_aa(seed))
        ship += out["decisions"]["treatment"]["verdict"] == "ship"
        for name in rejected:
            ci = out["comparisons"]["treatment"][name]["ci"]
            rejected[name] += ci[0] > 0 or ci[1] < 0
    for name, count in rejected.items():
        assert lo <= count / SEEDS <= hi, (name, count)
    # shipping needs a win, one side of either success metric: at most alpha, within the band's top
    assert ship / SEEDS <= hi, ship


def test_aa_peeking_every_night__the_sequential_interval_keeps_the_error_rate():
    """Ten nightly looks at growing samples: stopping at the first look whose interval excludes 0."""
    _, hi = binomial_band()
    seq_errors, naive_errors = 0, 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(10_000 + seed)
        c, t = shoppers(rng, 2000), shoppers(rng, 2000)
        seq_hit = naive_hit = False
        for n in range(200, 2001, 200):
            cmp, _ = stats.compare_cuped(Moments.of(c[1][:n], c[0][:n]), Moments.of(t[1][:n], t[0][:n]),
                                         alpha=ALPHA, tuning_n=4000)
            seq_hit |= cmp.seq_ci[0] > 0 or cmp.seq_ci[1] < 0
            naive_hit |= cmp.ci[0] > 0 or cmp.ci[1] < 0
        seq_errors += seq_hit
        naive_errors += naive_hit
    assert seq_errors / SEEDS <= hi, seq_errors
    assert naive_errors > seq_errors  # the fixed-horizon interval read every night would stop too often


def test_planted_lift__95_percent_intervals_cover_it_in_at_least_93_percent_of_seeds():
    revenue_lift, conversion_lift = 3.0, 0.02
    covered = {"revenue_per_person": 0, "conversion_rate": 0, "revenue_sequential": 0}
    wins = 0
    for seed in range(SEEDS):
        out = _read(*_aa(seed, revenue_lift=revenue_lift))
        lo, hi = out["comparisons"]["treatment"]["revenue_per_person"]["ci"]
        covered["revenue_per_person"] += lo <= revenue_lift <= hi
        slo, shi = out["comparisons"]["treatment"]["revenue_per_person"]["seq_ci"]
        covered["revenue_sequential"] += slo <= revenue_lift <= shi
        wins += out["decisions"]["treatment"]["verdict"] == "ship"
        conv = _read(*_aa(SEEDS + seed, conversion_lift=conversion_lift))
        clo, chi = conv["comparisons"]["treatment"]["conversion_rate"]["ci"]
        covered["conversion_rate"] += clo <= conversion_lift <= chi
    for name, count in covered.items():
        assert count / SEEDS >= 0.93, (name, count)
    assert wins / SEEDS > 0.5  # and the lift is found most of the time


def test_decide__a_worse_guardrail_blocks_a_win_and_failed_health_blocks_everything():
    roles = {"rev": stats.SUCCESS, "ret": stats.GUARDRAIL, "ctr": stats.DIAGNOSTIC}
    win, worse, flat = {"ci": [0.1, 0.5]}, {"ci": [-0.5, -0.1]}, {"ci": [-0.1, 0.1]}
    assert stats.decide({"rev": win, "ret": flat, "ctr": worse}, roles, final=True, health=[])["verdict"] == "ship"
    out = stats.decide({"rev": win, "ret": worse, "ctr": flat}, roles, final=True, health=[])
    assert out["verdict"] == "no_ship" and out["guardrails_worse"] == ["ret"]
    assert stats.decide({"rev": win, "ret": flat}, roles, final=True, health=["srm"])["verdict"] == "invalid"
    assert stats.decide({"rev": flat, "ret": flat}, roles, final=True, health=[])["verdict"] == "no_ship"
    assert stats.decide({"rev": {"seq_ci": [-1, 1]}, "ret": {"seq_ci": [-1, 1]}}, roles, final=False,
                        health=[])["verdict"] == "keep_running"


def test_readout__srm_in_the_arms_makes_the_verdict_invalid():
    rng = np.random.default_rng(7)
    c, t = _arm(*shoppers(rng, 5300)), _arm(*shoppers(rng, 4700, revenue_lift=10.0))
    out = _read(c, t)
    assert out["health"]["srm"]["flagged"]
    assert out["decisions"]["treatment"]["verdict"] == "invalid"
    assert "sample-ratio mismatch" in out["decisions"]["treatment"]["reasons"][0]
