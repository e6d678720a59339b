"""The storefront simulator closing the loop: a generated shop, then weeks of simulated days whose home page shows
the PUBLISHED lists, with the nightly run retraining on those days' events, and an experiment of two arms that
differ by a planted amount: `popular` serves popularity lists, `model` the full pipeline. Prints the truth's
per-arm figures (expected rec revenue and rec conversion per exposed person, and what they actually bought from
their first exposure on) and the difference; then reads the experiment back with `recs ab-report` (after the last
day's validate and stitch; weekly sequential looks, then the final readout at the last day) and prints its
estimates, 95% intervals and verdict beside the truth, and whether the verdict agrees with it (`ship` exactly when
the truth's model arm is better on a success metric). Appends all to bench/RESULTS.md.

Protocol: `generate-shop` for --days days, one night on its last day, then --weeks x 7 simulated days; a night
runs after every --night-every simulated days (the storefront keeps the last published lists in between, as it
would after missed nights). A night of even a tiny shop takes 3-10 minutes on this 2-core host shared with six
other agents (load average 20-40), so by default a night runs every 14 days (two nights over four weeks, ~10-20
minutes in all); --night-every 1 gives the true nightly alternation on a quiet host.

    python bench/bench_storefront.py                                  # 1000 users x 300 items, 4 weeks
    python bench/bench_storefront.py --weeks 2 --night-every 7 --no-append
    python bench/bench_storefront.py --users 600 --items 200 --night-every 28   # one night: ~13 min when busy
    python bench/bench_storefront.py --users 600 --items 200 --night-every 28 --report-only  # read back again

SRM mode (`--srm-share S`, e.g. 0.51): does the sample-ratio check flag an assignment bug of that size? A 51/49
split is only detectable at p < 0.001 with ~30k+ exposed persons (chi-square ~ 4 n (S - 0.5)^2 > 10.83), so this
mode keeps the night cheap and the population large: a shop of --users persons but few items and --days generated
days (only persons the pipeline knows get person lists inside the experiment), one night (no tuning, gate or
learned ranker), then a copy of the shop taken right after the night, and --sim-days simulated days on BOTH copies
with the same seed and --rec-share (share of sessions that see the list; 1.0 here so every visit counts): the
first with the planted fault (`Faults(srm_share=S)`: the page loses every exposure of a hashed subset of one arm's
persons, so exposed persons split S : 1 - S), the second with the configured fair split (the control). Each copy
is then read back by `recs ab-report` (final readout only) and the people per arm, SRM p-value and flag of both,
with the truth's counts, go to RESULTS.md.

    python bench/bench_storefront.py --srm-share 0.51 --users 100000 --items 60 --days 3 --sim-days 7  # ~60k people, 10 min
    python bench/bench_storefront.py --srm-share 0.51 --users 3000 --items 60 --days 3 --sim-days 2 --no-append
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import PeakRSS, append_results  # noqa: E402

EXPERIMENT = "bench-storefront"
ARMS_YAML = f"""experiment:
  id: {EXPERIMENT}
  arms:
    - {{name: popular, share: 0.5, serves: popularity}}
    - {{name: model, share: 0.5, serves: model}}
"""


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2] if xs else float("nan")


def read_back(spark, cfg, first: str, last: str, every: int | None = 7) -> dict:
    """The last night's validate and stitch (so every simulated day is validated and its people stitched), then
    `recs ab-report` over the simulated days as the nightly task would have read it every `every` days (sequential
    intervals: the page's plots over time; None: no such looks), and at the planned end = the last day (the final
    readout, returned)."""
    from dataclasses import replace

    from jobs.abtest.job import run as ab_report
    from jobs.pipeline import run_stage

    for stage in ("validate", "stitch"):
        run_stage(stage, cfg, last, spark=spark)
    cfg = replace(cfg, abtest=replace(cfg.abtest, start=first, planned_end=last))
    day, looks = dt.date.fromisoformat(first), []
    while every and (day := day + dt.timedelta(days=every - 1 if not looks else every)).isoformat() < last:
        looks.append(day.isoformat())
    for end in looks:
        r = ab_report(spark, cfg, EXPERIMENT, start=first, end=end)
        print(f"ab-report up to {end}: {r['verdict']}, people {r['people']}", flush=True)
    return ab_report(spark, cfg, EXPERIMENT, start=first, end=last)


def report_lines(report: dict, arms: dict) -> list[str]:
    """The report's estimates beside the truth's, and whether its verdict agrees with the truth: `ship` is right
    only when the truth's model arm is better on a success metric (expected rec revenue or rec conversion), and
    anything but `ship` is right only when it is not."""
    cmp = report["comparisons"].get("model", {})
    m, pop = arms.get("model", {}), arms.get("popular", {})

    def ci(c: dict) -> str:
        lo, hi = c.get("ci") or (float("nan"), float("nan"))
        return f"[{lo:+.3f}, {hi:+.3f}]"

    rows = [("revenue_per_person", "revenue / person (CUPED, capped)", "revenue_per_person"),
            ("revenue_per_person_uncapped", "revenue / person (net of returns, uncapped)", "revenue_per_person"),
            ("conversion_rate", "conversion", "conversion")]
    out = [f"A/B report {report['experiment_id']} {report['start']}..{report['end']} (final readout): people "
           f"{report['people']} (truth: { {a: v['exposed_persons'] for a, v in sorted(arms.items())} }), two-arm "
           f"people dropped {report['health']['two_arm_people']} (truth {m.get('two_arm_persons')}), SRM p = "
           f"{report['health']['srm'].get('p_value', float('nan')):.3g}",
           "", "| metric | report: popular | report: model | report: model - popular, 95% CI | truth: model - popular |",
           "|---|---|---|---|---|"]
    for metric, label, truth_key in rows:
        c = cmp.get(metric, {})
        true_diff = m.get(truth_key, float("nan")) - pop.get(truth_key, float("nan"))
        out.append(f"| {label} | {c.get('control', float('nan')):.3f} | {c.get('treatment', float('nan')):.3f} | "
                   f"{c.get('diff', float('nan')):+.3f} {ci(c)} | {true_diff:+.3f} |")
    truth_better = (m.get("expected_revenue_per_person", 0) > pop.get("expected_revenue_per_person", 0)
                    or m.get("expected_rec_conversion", 0) > pop.get("expected_rec_conversion", 0))
    verdict = report["decisions"].get("model", {}).get("verdict", report["verdict"])
    agrees = (verdict == "ship") == truth_better
    reasons = '; '.join(report['decisions'].get('model', {}).get('reasons', []))
    out += ["", f"verdict for model vs popular: **{verdict}** ({reasons}); "
                f"truth says model is {'better' if truth_better else 'not better'}: the verdict "
                f"{'AGREES' if agrees else 'DISAGREES'} with the truth; page {report['paths']['html']}"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--days", type=int, default=21, help="generated days before the simulation")
    p.add_argument("--start", default="2026-08-01")
    p.add_argument("--weeks", type=int, default=4)
    p.add_argument("--night-every", type=int, default=14, help="simulated days between nightly runs")
    p.add_argument("--quality-effect", type=float, default=0.6)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--work", default="/tmp/recs-bench-storefront")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--report-only", action="store_true",
                   help="keep --work's simulated shop (same arguments as the run that made it) and only read it back")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to bench/RESULTS.md")
    p.add_argument("--srm-share", type=float, default=None,
                   help="SRM mode: plant this first-arm share of exposed persons (e.g. 0.51) and compare with a fair "
                        "control on a copy of the same shop (see above)")
    p.add_argument("--sim-days", type=int, default=5, help="SRM mode: simulated days on each copy")
    p.add_argument("--rec-share", type=float, default=1.0,
                   help="SRM mode: share of browsing sessions that see the list")
    args = p.parse_args(argv)
    if args.srm_share is not None:
        return srm_main(args)

    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from jobs.config import load_config
    from jobs.pipeline import run_all
    from jobs.shop import generate_shop
    from jobs.spark import spark_session
    from jobs.storefront import Behaviour, simulate_storefront
    from jobs.storefront.truth import arm_truth

    work = Path(args.work)
    root = work / "shop"
    conf = work / "arms.yaml"
    if not args.report_only:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        conf.write_text(ARMS_YAML)
    cfg = load_config(conf_file=conf, data_root=str(root),
                      overrides=["tuning.budget_seconds_wide=20", "tuning.budget_seconds_warm=10", *args.set])
    behaviour = Behaviour(quality_effect=args.quality_effect)
    t0 = time.perf_counter()
    night_seconds, sim_seconds, nights = [], [], []
    with PeakRSS() as rss:
        if not args.report_only:
            generate_shop(str(root), start=args.start, days=args.days, users=args.users, items=args.items,
                          seed=args.seed)
        spark = spark_session(cfg.spark, app_name="bench-storefront")
        first_sim = dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days)

        def night(day: dt.date) -> None:
            t = time.perf_counter()
            summary = run_all(cfg, day.isoformat(), spark=spark)
            night_seconds.append(time.perf_counter() - t)
            nights.append((day.isoformat(), summary["status"]))
            print(f"night {day}: {summary['status']} in {night_seconds[-1]:.0f}s", flush=True)

        sim_days = 7 * args.weeks
        if not args.report_only:
            night(first_sim - dt.timedelta(days=1))
        for k in range(0 if args.report_only else sim_days):
            day = first_sim + dt.timedelta(days=k)
            t = time.perf_counter()
            s = simulate_storefront(cfg, start=day.isoformat(), end=day.isoformat(), behaviour=behaviour)
            sim_seconds.append(time.perf_counter() - t)
            counts = {k2: v for k2, v in s[day.isoformat()].items() if k2 in ("exposures", "purchases", "events")}
            print(f"day {day}: {json.dumps(counts)}", flush=True)
            if (k + 1) % args.night_every == 0 and k + 1 < sim_days:
                night(day)
        last = (first_sim + dt.timedelta(days=sim_days - 1)).isoformat()
        t = time.perf_counter()
        report = read_back(spark, cfg, first_sim.isoformat(), last)
        report_seconds = time.perf_counter() - t
        spark.stop()
        arms = arm_truth(str(root), EXPERIMENT)
    total = time.perf_counter() - t0

    lines = [f"shop {args.users} users x {args.items} items, {args.days} generated days, then {sim_days} simulated "
             f"days with a night every {args.night_every} (nights: {', '.join(f'{d} {st}' for d, st in nights)}); "
             f"quality_effect {args.quality_effect}, seed {args.seed}; host shared with other agents (busy: timings "
             f"are loose)",
             "", "| arm | exposed persons | expected rec revenue / person | expected rec conversion | "
                 "revenue / person (realised) | conversion (realised) |", "|---|---|---|---|---|---|"]
    for arm, a in sorted(arms.items()):
        lines.append(f"| {arm} | {a['exposed_persons']} | {a['expected_revenue_per_person']:.2f} | "
                     f"{a['expected_rec_conversion']:.3f} | {a['revenue_per_person']:.2f} | {a['conversion']:.3f} |")
    if {"model", "popular"} <= set(arms):
        m, pop = arms["model"], arms["popular"]
        lines.append(f"| model - popular | | {m['expected_revenue_per_person'] - pop['expected_revenue_per_person']:+.2f} | "
                     f"{m['expected_rec_conversion'] - pop['expected_rec_conversion']:+.3f} | "
                     f"{m['revenue_per_person'] - pop['revenue_per_person']:+.2f} | "
                     f"{m['conversion'] - pop['conversion']:+.3f} |")
    lines += ["", *report_lines(report, arms)]
    replayed = " (--report-only: read back only)" if args.report_only else ""
    lines += ["", f"wall {total:.0f}s (the A/B report, with its validate and stitch: {report_seconds:.0f}s): "
                  f"nights {sum(night_seconds):.0f}s ({len(night_seconds)}, median {median(night_seconds):.0f}s), "
                  f"simulated days {sum(sim_seconds):.0f}s (median {median(sim_seconds):.2f}s a day){replayed}; "
                  f"peak RSS {rss.peak_gb:.1f} GB"]
    if args.no_append:
        print("\n".join(lines))
    else:
        append_results("bench_storefront: the simulated storefront, popularity arm vs the full pipeline's arm", lines)
    return 0


# The night of the SRM mode only has to publish person lists: no search over settings, no holdout, no learned ranker.
CHEAP_NIGHT = ["tuning.enabled=false", "gate.enabled=false", "rank.ranker.enabled=false"]


def srm_detectable(n: int, z_power: float = 0.0) -> float:
    """The first-arm share (above 0.5) whose expected chi-square reaches the 0.001 critical value with `n` people
    in two equal arms: 4 n d^2 = (z_0.0005 + z_power)^2; z_power 0 is flagged half the time, 0.84 in 80%."""
    return 0.5 + (3.2905 + z_power) / (2 * n ** 0.5)


def srm_main(args) -> int:
    """SRM mode: one shop and one night, copied; the planted split on one copy, the fair split on the other."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from jobs.config import load_config
    from jobs.pipeline import run_all
    from jobs.shop import generate_shop
    from jobs.spark import spark_session
    from jobs.storefront import Behaviour, Faults, simulate_storefront
    from jobs.storefront import truth as sim_truth
    from jobs.storefront.truth import arm_truth

    work = Path(args.work)
    roots = {"planted": work / "shop", "fair": work / "shop-fair"}
    conf = work / "arms.yaml"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    conf.write_text(ARMS_YAML)

    def config(root: Path):
        return load_config(conf_file=conf, data_root=str(root), overrides=[*CHEAP_NIGHT, *args.set])

    behaviour = Behaviour(quality_effect=args.quality_effect, rec_share=args.rec_share)
    first_sim = dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days)
    days = [(first_sim + dt.timedelta(days=k)).isoformat() for k in range(args.sim_days)]
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    with PeakRSS() as rss:
        t = time.perf_counter()
        generate_shop(str(roots["planted"]), start=args.start, days=args.days, users=args.users, items=args.items,
                      seed=args.seed)
        seconds["generate"] = time.perf_counter() - t
        print(f"shop generated in {seconds['generate']:.0f}s", flush=True)
        spark = spark_session(config(roots["planted"]).spark, app_name="bench-storefront-srm")
        t = time.perf_counter()
        summary = run_all(config(roots["planted"]), (first_sim - dt.timedelta(days=1)).isoformat(), spark=spark)
        seconds["night"] = time.perf_counter() - t
        print(f"night: {summary['status']} in {seconds['night']:.0f}s", flush=True)
        shutil.copytree(roots["planted"], roots["fair"])  # the same shop and published lists for the control
        results = {}
        for name, faults in (("planted", Faults(srm_share=args.srm_share)), ("fair", Faults())):
            cfg = config(roots[name])
            t = time.perf_counter()
            for day in days:
                s = simulate_storefront(cfg, start=day, end=day, behaviour=behaviour, faults=faults)[day]
                print(f"{name} {day}: exposures {s['exposures']} (in the experiment {s['exposures_in_experiment']}),"
                      f" planted {s['planted']}", flush=True)
            seconds[f"simulate {name}"] = time.perf_counter() - t
            t = time.perf_counter()
            report = read_back(spark, cfg, days[0], days[-1], every=None)
            seconds[f"ab-report {name}"] = time.perf_counter() - t
            planted = sim_truth.read(str(roots[name]), "planted", days).to_pandas()
            results[name] = {"report": report, "truth": arm_truth(str(roots[name]), EXPERIMENT),
                             "dropped_persons": int(planted.loc[planted.fault == "srm_dropped", "person"].nunique())}
            srm = report["health"]["srm"]
            print(f"{name}: people {report['people']}, SRM p = {srm['p_value']}, flagged {srm['flagged']}",
                  flush=True)
        spark.stop()
    total = time.perf_counter() - t0

    lines = [f"shop {args.users} users x {args.items} items, {args.days} generated days, one night ({summary['status']}; "
             f"{', '.join(CHEAP_NIGHT)}), then {args.sim_days} simulated days ({days[0]}..{days[-1]}, rec_share "
             f"{args.rec_share}) on two copies of it with the same seed {args.seed}: the planted first-arm share "
             f"{args.srm_share} (`Faults(srm_share=...)`) and the configured fair 50/50 split; each read back by "
             f"`recs ab-report` (final readout; SRM flagged below p = "
             f"{config(roots['fair']).abtest.srm_p:g}); host shared with other agents (timings are loose)", "",
             "| split | report: people per arm | first-arm share | SRM chi-square | SRM p-value | flagged | "
             "truth: exposed persons per arm | truth: persons whose exposures were dropped |",
             "|---|---|---|---|---|---|---|---|"]

    def num(x, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)

    for name, r in results.items():
        srm = r["report"]["health"]["srm"]
        label = f"planted {args.srm_share:g}" if name == "planted" else "fair (control)"
        per_arm = " / ".join(f"{a} {o}" for a, o in zip(srm["arms"], srm["observed"]))
        truth_arms = " / ".join(f"{a} {v['exposed_persons']}" for a, v in sorted(r["truth"].items()))
        lines.append(f"| {label} | {per_arm} | {srm['observed'][0] / max(sum(srm['observed']), 1):.4f} | "
                     f"{num(srm['chi2'], '.2f')} | {num(srm['p_value'], '.3g')} | "
                     f"**{'yes' if srm['flagged'] else 'no'}** | {truth_arms} | {r['dropped_persons']} |")
    n = sum(results["fair"]["report"]["health"]["srm"]["observed"])
    flagged = {name: r["report"]["health"]["srm"]["flagged"] for name, r in results.items()}
    both = flagged["planted"] and not flagged["fair"]
    d2 = max(abs(args.srm_share - 0.5), 1e-9) ** 2
    lines += ["", f"the check {'DISTINGUISHES' if both else 'does NOT distinguish'} the planted split from the fair "
                  f"one at this size. With {n} exposed persons, the first-arm share flagged half the time is "
                  f"{srm_detectable(n):.4f} and in 80% of runs {srm_detectable(n, 0.8416):.4f} (a first-arm share of "
                  f"{args.srm_share:g} needs ~{round(3.2905 ** 2 / (4 * d2)):,} people to be flagged half the time, "
                  f"~{round((3.2905 + 0.8416) ** 2 / (4 * d2)):,} in 80% of runs)",
              "", f"wall {total:.0f}s: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())
              + f"; peak RSS {rss.peak_gb:.1f} GB"]
    if args.no_append:
        print("\n".join(lines))
    else:
        append_results(f"bench_storefront --srm-share {args.srm_share:g}: a planted assignment bug against a fair "
                       "split, read back by the sample-ratio check", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
