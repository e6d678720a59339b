"""The statistics of an A/B readout, from per-arm sufficient statistics only (numpy/scipy; no Spark, no rows).

Every metric reaches this module as `Moments`: for each arm the count `n` and the sums Σy, Σy², Σx, Σx², Σxy of a
per-person pair (y, x). The same six numbers serve three kinds of metric:

- a mean per person (conversion, add-to-cart, retention, attributed revenue): y, and x unused;
- a mean with CUPED (revenue): y the outcome after exposure, x the same person's pre-exposure revenue;
- a ratio of sums (CTR = clicks / impressions, AOV = revenue / orders): y the numerator, x the denominator, with
  the delta method's variance.

Fixed-horizon intervals are Welch's (unequal variances, Welch-Satterthwaite degrees of freedom: what
`scipy.stats.ttest_ind(equal_var=False)` computes), normal for ratios and CUPED. The nightly, peeking-safe interval
is the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas, "Time-uniform central limit
theory and asymptotic confidence sequences" (Annals of Statistics, 2024; arXiv 2103.06476), eq. (9) with the
mixing parameter of its eq. (161), the form GrowthBook documents for its sequential testing:

    half-width = s * sqrt( 2 (n rho^2 + 1) / (n^2 rho^2) * ln( sqrt(n rho^2 + 1) / alpha ) )
    rho        = sqrt( (-2 ln alpha + ln(-2 ln alpha + 1)) / N* )

with n the people in both arms, s^2 = SE^2 * n the per-person variance of the difference estimate and N* the
people count at which the sequence is tightest (`abtest.sequential_tuning_n`). It covers the true difference at
every night at once with probability >= 1 - alpha (asymptotically), so reading it every night and stopping when it
excludes zero keeps the error rate; the fixed-horizon interval is the final readout at the planned end.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of a per-person pair (y, x) in one arm."""

    n: int
    sy: float
    syy: float
    sx: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0

    @classmethod
    def of(cls, y, x=None) -> "Moments":
        y = np.asarray(y, dtype=float)
        x = np.zeros_like(y) if x is None else np.asarray(x, dtype=float)
        return cls(int(y.size), float(y.sum()), float((y * y).sum()), float(x.sum()), float((x * x).sum()),
                   float((x * y).sum()))

    def __add__(self, other: "Moments") -> "Moments":
        return Moments(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    @property
    def mean_y(self) -> float:
        return self.sy / self.n if self.n else math.nan

    @property
    def mean_x(self) -> float:
        return self.sx / self.n if self.n else math.nan

    def _centered(self, s_ab: float, s_a: float, s_b: float) -> float:
        """Σ(a - ā)(b - b̄) from raw sums."""
        return s_ab - s_a * s_b / self.n

    @property
    def var_y(self) -> float:
        return self._centered(self.syy, self.sy, self.sy) / (self.n - 1) if self.n > 1 else math.nan

    @property
    def var_x(self) -> float:
        return self._centered(self.sxx, self.sx, self.sx) / (self.n - 1) if self.n > 1 else math.nan

    @property
    def cov_xy(self) -> float:
        return self._centered(self.sxy, self.sx, self.sy) / (self.n - 1) if self.n > 1 else math.nan


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control on one metric: the estimate, its standard error, the fixed-horizon interval and
    p-value, and the sequential (always-valid) interval."""

    control: float
    treatment: float
    diff: float
    se: float
    ci: tuple[float, float]
    p_value: float
    seq_ci: tuple[float, float]
    relative: float  # diff / control value (nan when the control value is 0)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _finite(v: float) -> bool:
    return v is not None and math.isfinite(v)


def sequential_halfwidth(se: float, n: int, alpha: float, tuning_n: float) -> float:
    """The asymptotic confidence sequence's half-width (module docstring) for an estimate with standard error `se`
    computed from `n` people."""
    if not (_finite(se) and n > 0):
        return math.nan
    log_alpha = math.log(alpha)
    rho2 = (-2 * log_alpha + math.log(-2 * log_alpha + 1)) / tuning_n
    s2 = se * se * n
    nr = n * rho2
    return math.sqrt(s2) * math.sqrt(2 * (nr + 1) / (n * nr) * math.log(math.sqrt(nr + 1) / alpha))


def _compare(control: float, treatment: float, var_c: float, n_c: int, var_t: float, n_t: int, *, alpha: float,
             tuning_n: float, welch_df: bool) -> Comparison:
    """`var_*` are per-person variances (the estimate's variance is var/n)."""
    diff = treatment - control
    vc, vt = var_c / n_c if n_c else math.nan, var_t / n_t if n_t else math.nan
    se = math.sqrt(vc + vt) if _finite(vc) and _finite(vt) and vc + vt >= 0 else math.nan
    rel = diff / control if _finite(control) and control != 0 else math.nan
    if not _finite(se) or se == 0:
        nan2 = (math.nan, math.nan)
        return Comparison(control, treatment, diff, se, nan2, math.nan, nan2, rel)
    if welch_df:
        df = (vc + vt) ** 2 / (vc * vc / (n_c - 1) + vt * vt / (n_t - 1)) if vc + vt > 0 else math.inf
        dist = sps.t(df)
    else:
        dist = sps.norm()
    q = float(dist.ppf(1 - alpha / 2))
    p = float(2 * dist.sf(abs(diff) / se))
    h = sequential_halfwidth(se, n_c + n_t, alpha, tuning_n)
    return Comparison(control, treatment, diff, se, (diff - q * se, diff + q * se), p, (diff - h, diff + h), rel)


def compare_means(c: Moments, t: Moments, *, alpha: float, tuning_n: float) -> Comparison:
    """Difference of means per person, Welch's test (equal to scipy's `ttest_ind(equal_var=False)`)."""
    return _compare(c.mean_y, t.mean_y, c.var_y, c.n, t.var_y, t.n, alpha=alpha, tuning_n=tuning_n, welch_df=True)


def cuped_theta(c: Moments, t: Moments) -> float:
    """The within-arm pooled slope of y on x: the coefficient of x in the regression y ~ 1 + arm + x, so the
    CUPED estimate equals that regression's arm coefficient."""
    sxx = c._centered(c.sxx, c.sx, c.sx) + t._centered(t.sxx, t.sx, t.sx)
    sxy = c._centered(c.sxy, c.sx, c.sy) + t._centered(t.sxy, t.sx, t.sy)
    return sxy / sxx if sxx > 0 else 0.0


def compare_cuped(c: Moments, t: Moments, *, alpha: float, tuning_n: float) -> tuple[Comparison, float]:
    """CUPED (Deng, Xu, Kohavi & Walker, WSDM 2013): each arm's mean of y - theta (x - x̄), x̄ the mean over both
    arms; the per-arm variance is var(y) - 2 theta cov(x, y) + theta^2 var(x). Returns the comparison and theta."""
    theta = cuped_theta(c, t)
    x_all = (c.sx + t.sx) / (c.n + t.n)

    def adjusted(m: Moments) -> tuple[float, float]:
        return (m.mean_y - theta * (m.mean_x - x_all),
                m.var_y - 2 * theta * m.cov_xy + theta * theta * m.var_x)

    (mc, vc), (mt, vt) = adjusted(c), adjusted(t)
    return _compare(mc, mt, vc, c.n, vt, t.n, alpha=alpha, tuning_n=tuning_n, welch_df=False), theta


def ratio_variance(m: Moments) -> tuple[float, float]:
    """(R, per-person variance of R) for R = Σy / Σx by the delta method: var(R) = (var_y - 2 R cov + R^2 var_x)
    / x̄^2, per person (the estimate's variance is that over n)."""
    if m.n < 2 or m.sx == 0:
        return math.nan, math.nan
    r = m.sy / m.sx
    return r, (m.var_y - 2 * r * m.cov_xy + r * r * m.var_x) / (m.mean_x ** 2)


def compare_ratios(c: Moments, t: Moments, *, alpha: float, tuning_n: float) -> Comparison:
    """Difference of two ratio metrics (Σy/Σx per arm), delta-method variances, normal interval."""
    (rc, vc), (rt, vt) = ratio_variance(c), ratio_variance(t)
    return _compare(rc, rt, vc, c.n, vt, t.n, alpha=alpha, tuning_n=tuning_n, welch_df=False)


def sample_ratio(counts: dict[str, int], shares: dict[str, float], *, threshold: float) -> dict:
    """Sample-ratio mismatch: Pearson's chi-square of the arms' people against the configured shares."""
    arms = list(shares)
    observed = np.array([counts.get(a, 0) for a in arms], dtype=float)
    total = observed.sum()
    expected = np.array([shares[a] for a in arms]) / sum(shares.values()) * total
    if total == 0 or len(arms) < 2:
        return {"arms": arms, "observed": observed.astype(int).tolist(), "expected": expected.tolist(),
                "chi2": None, "p_value": None, "flagged": False}
    chi2, p = sps.chisquare(observed, expected)
    return {"arms": arms, "observed": observed.astype(int).tolist(), "expected": expected.round(2).tolist(),
            "chi2": float(chi2), "p_value": float(p), "flagged": bool(p < threshold)}


def pre_period_balance(c: Moments, t: Moments, *, threshold: float) -> dict:
    """Whether the arms differed before exposure: Welch's test on the pre-period covariate x."""
    pre_c = Moments(c.n, c.sx, c.sxx)
    pre_t = Moments(t.n, t.sx, t.sxx)
    cmp = compare_means(pre_c, pre_t, alpha=0.05, tuning_n=1.0)
    p = cmp.p_value
    return {"control": cmp.control, "treatment": cmp.treatment, "diff": cmp.diff, "p_value": p,
            "flagged": bool(_finite(p) and p < threshold)}


# the kinds of metric, and their role in the decision
SUCCESS, GUARDRAIL, DIAGNOSTIC = "success", "guardrail", "diagnostic"
MEAN, CUPED, RATIO = "mean", "cuped", "ratio"


def compare(kind: str, c: Moments, t: Moments, *, alpha: float, tuning_n: float) -> dict:
    """One metric's comparison as a dict (`theta` added for CUPED)."""
    if kind == CUPED:
        cmp, theta = compare_cuped(c, t, alpha=alpha, tuning_n=tuning_n)
        plain = compare_means(c, t, alpha=alpha, tuning_n=tuning_n)
        return {**cmp.as_dict(), "theta": theta, "se_without_cuped": plain.se,
                "variance_reduction": 1 - (cmp.se / plain.se) ** 2 if _finite(plain.se) and plain.se else None}
    if kind == RATIO:
        return compare_ratios(c, t, alpha=alpha, tuning_n=tuning_n).as_dict()
    return compare_means(c, t, alpha=alpha, tuning_n=tuning_n).as_dict()


def decide(comparisons: dict[str, dict], roles: dict[str, str], *, final: bool, health: list[str],
           higher_is_better: dict[str, bool] | None = None) -> dict:
    """The decision rule for one treatment arm against the control.

    Ship only if a success metric wins (its interval lies above 0) and no guardrail is worse (its interval lies
    wholly on the bad side), and the health checks passed. Before the planned end the nightly sequential interval
    decides (`final` False), at and after it the fixed-horizon one. Diagnostics never decide.

    Returns ``verdict`` (`ship`, `no_ship`, `keep_running` or `invalid`), ``reasons``, ``wins``, ``losses``,
    ``guardrails_worse`` and ``interval`` (`sequential` or `fixed`).
    """
    higher_is_better = higher_is_better or {}
    key = "ci" if final else "seq_ci"
    wins, losses, worse, unmeasured = [], [], [], []
    for name, role in roles.items():
        cmp = comparisons.get(name)
        lo, hi = (cmp or {}).get(key) or (math.nan, math.nan)
        if not (_finite(lo) and _finite(hi)):
            if role in (SUCCESS, GUARDRAIL):
                unmeasured.append(name)
            continue
        sign = 1 if higher_is_better.get(name, True) else -1
        better, bad = (lo > 0, hi < 0) if sign > 0 else (hi < 0, lo > 0)
        if role == SUCCESS:
            wins += [name] if better else []
            losses += [name] if bad else []
        elif role == GUARDRAIL and bad:
            worse.append(name)
    reasons = list(health)
    reasons += [f"{n}: not measurable yet" for n in unmeasured]
    if health:
        verdict = "invalid"
    elif worse:
        verdict = "no_ship"
        reasons += [f"guardrail {n} is worse" for n in worse]
    elif wins and not losses:
        verdict = "ship"
        reasons += [f"success metric {n} wins" for n in wins]
    elif losses:
        verdict = "no_ship"
        reasons += [f"success metric {n} is worse" for n in losses]
    elif final:
        verdict = "no_ship"
        reasons.append("no success metric wins at the planned end")
    else:
        verdict = "keep_running"
        reasons.append("no sequential interval excludes 0 yet")
    return {"verdict": verdict, "reasons": reasons, "wins": wins, "losses": losses, "guardrails_worse": worse,
            "interval": "fixed" if final else "sequential"}
