"""The readout of one experiment on one night, from the per-arm sums alone (a pure function: no Spark, no files).

`readout(moments, ...)` takes, per arm, the `Moments` of every metric of `jobs.abtest.frames.METRICS`, checks the
experiment's health (sample ratio, pre-period balance, people in two arms), compares each treatment arm with the
control on every metric and applies the decision rule (`jobs.abtest.stats.decide`).
"""
from __future__ import annotations

from jobs.abtest import stats
from jobs.abtest.frames import METRICS, SUMS
from jobs.abtest.stats import Moments

# the decision reads these; diagnostics are reported only
ROLES = {name: role for name, (_, role, *_rest) in METRICS.items()}
KINDS = {name: kind for name, (kind, *_rest) in METRICS.items()}
LABELS = {
    "revenue_per_person": "Revenue per exposed person (capped, CUPED)",
    "conversion_rate": "Conversion rate",
    "retention": "Retention (guardrail)",
    "ctr": "CTR per impression",
    "aov": "Average order value",
    "add_to_cart_rate": "Add-to-cart rate",
    "attributed_revenue_per_person": "Attributed revenue per person",
    "revenue_per_person_uncapped": "Revenue per exposed person (uncapped, no CUPED)",
}


def moments_from_row(row: dict) -> dict[str, Moments]:
    """A row of `frames.arm_moments` (as a dict) -> metric -> Moments."""
    return {name: Moments(int(row[f"{name}__n"]), *(float(row[f"{name}__{s}"]) for s in SUMS[1:]))
            for name in METRICS}


def arm_values(m: dict[str, Moments]) -> dict[str, float | None]:
    """Each metric's value in one arm: the mean per person, or the ratio of sums."""
    out = {}
    for name, mm in m.items():
        if KINDS[name] == stats.RATIO:
            out[name] = mm.sy / mm.sx if mm.sx else None
        else:
            out[name] = mm.mean_y if mm.n else None
    return out


def readout(moments: dict[str, dict[str, Moments]], *, arms: list[str], shares: dict[str, float], alpha: float,
            srm_p: float, imbalance_p: float, tuning_n: float, final: bool, two_arm_people: int) -> dict:
    """The night's readout.

    Parameters
    ----------
    moments : arm -> metric -> Moments (arms without people may be missing)
    arms : the arms in order; the first is the control
    shares : arm -> its configured share of people (the SRM test's expectation)
    final : True at or after the planned end (fixed-horizon intervals decide), False before (sequential ones)
    two_arm_people : people dropped because their events carry two arms

    Returns
    -------
    dict with ``people`` (per arm), ``health`` (``srm``, ``pre_period`` per treatment, ``two_arm_people``),
    ``arms`` (metric values per arm), ``comparisons`` (treatment -> metric -> comparison) and ``decisions``
    (treatment -> verdict, reasons).
    """
    control = arms[0]
    empty = {name: Moments(0, 0.0, 0.0) for name in METRICS}
    per_arm = {a: moments.get(a, empty) for a in arms}
    people = {a: per_arm[a]["conversion_rate"].n for a in arms}
    srm = stats.sample_ratio(people, shares, threshold=srm_p)
    health_common = []
    if srm["flagged"]:
        health_common.append(f"sample-ratio mismatch: p = {srm['p_value']:.2g} < {srm_p:g} "
                             f"(people {people}, expected shares {shares})")
    comparisons, decisions, pre_period = {}, {}, {}
    for arm in arms[1:]:
        c, t = per_arm[control], per_arm[arm]
        pre_period[arm] = stats.pre_period_balance(c["revenue_per_person"], t["revenue_per_person"],
                                                   threshold=imbalance_p)
        comparisons[arm] = {name: stats.compare(KINDS[name], c[name], t[name], alpha=alpha, tuning_n=tuning_n)
                            for name in METRICS}
        health = list(health_common)
        if pre_period[arm]["flagged"]:
            health.append(f"pre-period imbalance: pre-exposure revenue differs, p = "
                          f"{pre_period[arm]['p_value']:.2g} < {imbalance_p:g}")
        if min(c["conversion_rate"].n, t["conversion_rate"].n) < 2:
            health.append("fewer than 2 exposed people in an arm")
        decisions[arm] = stats.decide(comparisons[arm], ROLES, final=final, health=health)
    return {"control": control, "people": people,
            "health": {"srm": srm, "pre_period": pre_period, "two_arm_people": two_arm_people},
            "arms": {a: arm_values(per_arm[a]) for a in arms},
            "comparisons": comparisons, "decisions": decisions,
            "metrics": {name: {"label": LABELS[name], "kind": KINDS[name], "role": ROLES[name]} for name in METRICS}}


def overall_verdict(decisions: dict[str, dict]) -> str:
    """One word for the experiment: `ship` when some arm ships, else the most telling arm verdict."""
    verdicts = [d["verdict"] for d in decisions.values()]
    for v in ("invalid", "ship", "keep_running", "no_ship"):
        if v in verdicts:
            return v
    return "no_arms"
