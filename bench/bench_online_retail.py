"""UCI Online Retail (a real UK gift shop, 2010-12-01..2011-12-09): does the nightly pipeline beat popularity?

Protocol: the pipeline runs for date --cut (2011-11-08) on the imported data with a window covering the whole
history (gate disabled); its published person lists are mapped to customers through the identity map. Test: for
every known customer (a CustomerID with at least one purchase up to the cut), the products they buy from the day
after the cut to --test-end (2011-12-09) and had not bought before the cut. Order lines count when quantity and
price are positive and the StockCode is a product code (the importer's rules: cancellations, postage, fees and
adjustments are not purchases). Metrics at 10: NDCG, precision, recall, MAP@10 (precision summed at each hit,
divided by min(10, the customer's test items)) and hit rate, averaged over the test customers.

Rows: popularity all-time and over the last 30 days before the cut (distinct customers per product, customers'
purchases only, already-bought products removed), plain implicit ALS on the customers' purchase lines (without
and with the conf's recency decay, same ALS settings and confidence as the pipeline), the pipeline's own factors
scored exactly, its ScaNN candidates, its published lists, and the published lists' ranking with the default
rank settings. Target: full pipeline NDCG@10 at least 25% above the better popularity baseline.

    python bench/bench_online_retail.py                 # appended to bench/RESULTS.md
    python bench/bench_online_retail.py --sweep         # plus a plain-ALS grid over half-life / reg / alpha
    python bench/bench_online_retail.py --quick         # smoke run: 3 ALS iterations, fewer rows, no append
Settings: bench/conf/online_retail.yaml (`--conf`), `--set key=value` on top. Work data: --work (/tmp).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import add_real_data_args, append_results  # noqa: E402
from bench.bench_movielens import (  # noqa: E402
    DATA_QUALITY_WARN, NO_CONFIG_ROWS, SELF_TUNED_ONE_NIGHT, no_config_run,
    als_recs,
    factor_recs,
    markdown_table,
    person_lists,
    pipeline_stages,
    read_table,
    reset_derived,
    stage_seconds,
)

BENCH = Path(__file__).resolve().parent
SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail" / "online_retail.parquet"
K = 10
LIFT_TARGET = 1.25
COLUMNS = [("model", "name"), ("NDCG@10", "ndcg_at_k"), ("P@10", "precision_at_k"), ("R@10", "recall_at_k"),
           ("MAP@10", "map_at_k"), ("hit rate", "hit_rate_at_k"), ("customers", "n_users"), ("note", "extra")]


def purchase_split(events, *, cut: str, test_end: str):
    """(train purchases, truth) from contract events (the importer's conversion).

    train: purchase events before the day after `cut` with `person_id` = user_id (customers) or
    anonymous_id (guest invoices), plus `customer` (bool). truth: (person_id, item_id) pairs that a
    customer with a train purchase bought from the day after `cut` to `test_end` and had not bought before.
    """
    import pandas as pd

    start = pd.Timestamp(dt.date.fromisoformat(cut) + dt.timedelta(days=1), tz="UTC")
    end = pd.Timestamp(dt.date.fromisoformat(test_end) + dt.timedelta(days=1), tz="UTC")
    purchases = events[events["event_type"] == "purchase"]
    purchases = purchases.assign(person_id=purchases["user_id"].fillna(purchases["anonymous_id"]),
                                 customer=purchases["user_id"].notna())
    train = purchases[purchases["event_time"] < start]
    later = purchases[(purchases["event_time"] >= start) & (purchases["event_time"] < end) & purchases["customer"]]
    if train.empty or later.empty:
        raise ValueError(f"no purchases before {start.date()} or none from {start.date()} to {test_end}")
    bought = train[["person_id", "item_id"]].drop_duplicates()
    truth = later[later["person_id"].isin(pd.Index(train.loc[train["customer"], "person_id"].unique()))]
    truth = truth[["person_id", "item_id"]].drop_duplicates()
    truth = truth.merge(bought, how="left", indicator=True)
    truth = truth[truth["_merge"] == "left_only"][["person_id", "item_id"]].reset_index(drop=True)
    return train, truth


def decayed_lines(train, *, cut: str, weight: float, half_life_days: float, guests: bool = False):
    """Customers' (with `guests`, also guest invoices') purchase lines summed per (person_id, item_id) with the
    pipeline's confidence: `weight * 0.5 ** (age_days / half_life_days)`, age counted from the end of the cut day."""
    import pandas as pd

    day_end = pd.Timestamp(f"{cut} 23:59:59", tz="UTC")
    customers = train if guests else train[train["customer"]]
    age = (day_end - customers["event_time"]).dt.total_seconds().clip(lower=0) / 86400.0
    w = weight * 0.5 ** (age / half_life_days)
    return (customers.assign(weight=w.to_numpy()).groupby(["person_id", "item_id"], as_index=False)["weight"].sum())


def ensure_import(root: Path, source: Path) -> dict:
    """Imports Online Retail into `root` once (`root/bench_import.json` marks a complete import)."""
    from jobs.storage import io
    from jobs.importers.online_retail import import_online_retail

    marker = root / "bench_import.json"
    info = io.read_json(str(marker))
    if info and info.get("source") == str(source):
        return info
    shutil.rmtree(root, ignore_errors=True)
    info = import_online_retail(str(source), str(root))
    io.write_json(str(marker), info)
    return info


def row(name, recs, truth, *, extra: str = "") -> dict:
    from jobs.evaluation import evaluate_all

    return {"name": name, **evaluate_all(recs, truth, k=K, map_denominator="min_k_n_relevant"), "extra": extra}


def sweep(train, truth, *, cfg, cut: str, grid: dict) -> list[str]:
    """Plain-ALS grid over half-life x regularization x alpha (the pipeline's confidence), best NDCG first."""
    rows = []
    users = truth["person_id"].unique()
    for hl, reg, alpha in itertools.product(grid["half_life_days"], grid["regularization"], grid["alpha"]):
        lines = decayed_lines(train, cut=cut, weight=cfg.event_weights.purchase, half_life_days=hl)
        als = dataclasses.replace(cfg.als, regularization=reg, alpha=alpha)
        recs, _ = als_recs(lines, users, als=als, seed=cfg.seed, k=K, weight_col="weight")
        r = row(f"{hl:g} / {reg:g} / {alpha:g}", recs, truth)
        rows.append(r)
        print(f"  {r['name']}: ndcg {r['ndcg_at_k']:.4f}", flush=True)
    rows.sort(key=lambda r: -r["ndcg_at_k"])
    return markdown_table(rows, [("half-life / reg / alpha", "name"), *COLUMNS[1:6]])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_real_data_args(p, source=str(SOURCE), source_help="online_retail.parquet",
                       conf=str(BENCH / "conf" / "online_retail.yaml"),
                       sweep_help="also run a plain-ALS grid (half-life, reg, alpha)")
    p.add_argument("--cut", default="2011-11-08", help="run date: train up to and including this day")
    p.add_argument("--test-end", default="2011-12-09", help="last test day")
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import pandas as pd

    from jobs.storage.layout import Layout
    from jobs.spark import spark_session
    from jobs.config import load_config
    from jobs.evaluation import popularity_recs
    from jobs.importers.online_retail import convert_order_lines, read_order_lines
    from jobs.pipeline import run_all, run_stage

    started = time.time()
    root = Path(args.work) / "online-retail"
    if args.fresh:
        shutil.rmtree(root, ignore_errors=True)
    info = ensure_import(root, Path(args.source))
    events = convert_order_lines(read_order_lines(args.source)).events
    train, truth = purchase_split(events, cut=args.cut, test_end=args.test_end)
    window_days = (dt.date.fromisoformat(args.cut) - dt.date.fromisoformat(info["first_day"])).days + 1
    overrides = [f"window_days={window_days}", "gate.enabled=false", *args.set]
    if args.quick:
        overrides.append("als.iterations=3")
    cfg = load_config(args.conf, overrides=overrides, data_root=str(root))
    window_days = cfg.window_days  # a --set window_days wins over "the whole history"
    users = truth["person_id"].unique()
    cut_start = pd.Timestamp(dt.date.fromisoformat(args.cut) + dt.timedelta(days=1), tz="UTC")
    print(f"train {len(train):,} purchase lines up to {args.cut}; test {len(truth):,} new (customer, product) "
          f"pairs of {len(users):,} customers to {args.test_end}; window {window_days} days; als {cfg.als}; "
          f"rank {cfg.rank}; half-life {cfg.interactions.half_life_days:g}", flush=True)

    customers = train[train["customer"]]
    bought = train[["person_id", "item_id"]].drop_duplicates()
    rows = [row("popularity, all time", popularity_recs(customers, users, k=K, exclude=bought), truth),
            row("popularity, last 30 days", popularity_recs(customers, users, k=K, exclude=bought,
                                                            since=cut_start - pd.Timedelta(days=30)), truth)]
    best_pop = max(r["ndcg_at_k"] for r in rows)
    weight = cfg.event_weights.purchase
    if not args.quick:
        flat = decayed_lines(train, cut=args.cut, weight=weight, half_life_days=1e9)
        recs, secs = als_recs(flat, users, als=cfg.als, seed=cfg.seed, k=K, weight_col="weight")
        rows.append(row("plain ALS, no decay (customers' lines)", recs, truth, extra=f"fit {secs:.1f}s"))
    decayed = decayed_lines(train, cut=args.cut, weight=weight, half_life_days=cfg.interactions.half_life_days)
    recs, secs = als_recs(decayed, users, als=cfg.als, seed=cfg.seed, k=K, weight_col="weight")
    rows.append(row(f"plain ALS, half-life {cfg.interactions.half_life_days:g} d (customers' lines)", recs, truth,
                    extra=f"fit {secs:.1f}s"))
    if not args.quick:
        # the pipeline also learns from guest checkouts (one person per invoice): this row isolates their effect
        with_guests = decayed_lines(train, cut=args.cut, weight=weight,
                                    half_life_days=cfg.interactions.half_life_days, guests=True)
        recs, secs = als_recs(with_guests, users, als=cfg.als, seed=cfg.seed, k=K, weight_col="weight")
        rows.append(row(f"plain ALS, half-life {cfg.interactions.half_life_days:g} d, customers' + guest invoices' "
                        "lines", recs, truth, extra=f"fit {secs:.1f}s"))

    reset_derived(root, keep=("validated", "quarantine", "reports", "state"))  # validation is reused by marker
    spark = spark_session(cfg.spark, app_name="recs-bench-online-retail")
    summary = run_all(cfg, args.cut, spark=spark, stages=pipeline_stages())
    layout = Layout(str(root))
    identity = read_table(layout.identity(args.cut))
    same = lambda ids: ids  # noqa: E731  (the truth is keyed by the storefront user_id already)
    published = person_lists(read_table(layout.recommendations(args.cut)), identity, user_id_to_user=same)
    n_missing = len(set(users) - set(published["person_id"]))
    if not args.quick:
        inter = read_table(layout.interactions(args.cut), ["person_id", "item_id", "purchased"])
        exact = factor_recs(layout.root, args.cut, inter[inter["purchased"]], k=K)
        rows.append(row("pipeline: its ALS factors, exact top 10 (no retrieval, no ranking)",
                        person_lists(exact, identity, user_id_to_user=same, subject_col="person_id"), truth))
        candidates = read_table(layout.candidates(args.cut))
        rows.append(row("pipeline: ScaNN candidates + bought filter, top 10 by MF score",
                        person_lists(candidates, identity, user_id_to_user=same, subject_col="person_id"), truth))
    rows.append(row("**full pipeline: published lists**", published, truth,
                    extra=f"{n_missing} test customers without a list"))
    if not args.quick:
        default = load_config(None, overrides=[o for o in overrides if not o.startswith("rank.")])
        r = default.rank
        run_stage("rank", cfg.replace(rank=default.rank), args.cut, spark=spark)
        staged = person_lists(read_table(layout.staged_recommendations(args.cut)), identity, user_id_to_user=same)
        rows.append(row(f"pipeline with default ranking (popularity {r.popularity_weight:g}, margin "
                        f"{r.margin_weight:g}, max {r.max_per_category} per category)", staged, truth))
        # last: it replaces the tuned config's outputs
        protocol = [f"window_days={window_days}", f"top_n={K}", *DATA_QUALITY_WARN]
        for name, nights, tuning in NO_CONFIG_ROWS:
            _, note = no_config_run(root, args.cut, protocol, spark, nights=nights, tuning=tuning)
            lists = person_lists(read_table(layout.recommendations(args.cut)), identity, user_id_to_user=same)
            rows.append(row(name, lists, truth, extra=note))
    spark.stop()

    full = next(r for r in rows if r["name"].startswith("**full"))
    lift = full["ndcg_at_k"] / best_pop if best_pop else float("inf")
    auto = next((r for r in rows if r["name"] == SELF_TUNED_ONE_NIGHT), None)
    auto_lift = auto["ndcg_at_k"] / best_pop if auto and best_pop else None
    a, rk, ew = cfg.als, cfg.rank, cfg.event_weights
    lines = [f"Online Retail: train up to {args.cut} ({len(train):,} purchase lines), test {len(truth):,} new "
             f"(customer, product) pairs bought to {args.test_end} by {len(users):,} known customers; top {K}; "
             f"MAP@10 divided by min(10, test items).",
             f"conf `{Path(args.conf).name}`{' + ' + ', '.join(args.set) if args.set else ''}: window "
             f"{window_days} days, half_life_days {cfg.interactions.half_life_days:g}, event_weights purchase "
             f"{ew.purchase:g} / return {ew.return_:g}; ALS factors {a.factors}, reg {a.regularization:g}, alpha "
             f"{a.alpha:g}, {a.iterations} iterations; rank popularity {rk.popularity_weight:g}, margin "
             f"{rk.margin_weight:g}, max_per_category {rk.max_per_category}; candidates.n {cfg.candidates.n}"
             + ("; QUICK smoke run" if args.quick else ""), "",
             *markdown_table(rows, COLUMNS), "",
             f"target (full pipeline NDCG@10 >= {LIFT_TARGET:g} x best popularity {best_pop:.4f} = "
             f"{LIFT_TARGET * best_pop:.4f}): {'MET' if lift >= LIFT_TARGET else 'NOT MET'} "
             f"({full['ndcg_at_k']:.4f}, {lift:.2f}x); "
             + (f"no config file, self-tuned: {'MET' if auto_lift >= LIFT_TARGET else 'NOT MET'} "
                f"({auto['ndcg_at_k']:.4f}, {auto_lift:.2f}x); " if auto_lift is not None else "")
             + f"pipeline stages: {stage_seconds(summary)}; "
             f"benchmark wall {time.time() - started:.0f}s"]
    if args.sweep:
        grid = ({"half_life_days": [14.0], "regularization": [10.0], "alpha": [0.1]} if args.quick else
                {"half_life_days": [7.0, 14.0, 30.0, 1e9], "regularization": [5.0, 10.0, 20.0],
                 "alpha": [0.05, 0.1, 0.2]})
        lines += ["", f"plain ALS sweep (customers' lines, confidence alpha x {weight:g} x decay, "
                      f"{cfg.als.factors} factors, {cfg.als.iterations} iterations), best NDCG@10 first:", "",
                  *sweep(train, truth, cfg=cfg, cut=args.cut, grid=grid)]
    if args.quick or args.no_append:
        print("\n".join(lines))
    else:
        append_results("bench_online_retail: Online Retail, new purchases after 2011-11-08", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
