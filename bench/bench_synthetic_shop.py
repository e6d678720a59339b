"""The synthetic shop: list quality with no config file, with a tuned config, and self-tuned over one and three
nights, beside popularity, on a temporal protocol like the real shop's.

Protocol: a shop is generated (jobs.shop, seeded) and its last --test-days days are held out: the nights run up
to the cut (the day before them) on the raw data, and the published person lists are scored against the items
each known person then bought and had not bought before the cut. Persons are matched through the cut night's
identity map (a test purchase by an account or device the map does not know is left out). Metrics at 10 as in
bench_online_retail (MAP@10 divided by min(10, test items)).

Rows: popularity (distinct persons' purchases) all time and over the 7 and 30 days before the cut; the product
with no config file and tuning off (the defaults as they are); with a tuned config (`recs tune` on the cut
night's holdout, wide search, --tune-budget seconds, then a run with that file); self-tuned after one night and
after three nights (each night reads the settings the one before adopted).

    python bench/bench_synthetic_shop.py                           # 20k users x 5k items x 60 days
    python bench/bench_synthetic_shop.py --users 5000 --items 2000 --days 45 --no-append
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import add_shop_args, append_results  # noqa: E402
from bench.bench_movielens import (  # noqa: E402
    NO_CONFIG_ROWS, markdown_table, no_config_run, pipeline_stages, read_table, reset_derived)
from bench.bench_online_retail import COLUMNS, row as online_retail_row  # noqa: E402

K = 10


def person_truth(purchases, identity, *, cut: str):
    """(train purchases, truth) keyed by person_id: purchases up to `cut` and the later (person, item) pairs not
    bought up to `cut`. `purchases`: validated purchase events (user_id, anonymous_id, item_id, event_time)."""
    import pandas as pd

    ids = identity.set_index(["id_type", "id"])["person_id"]
    by_user = purchases["user_id"].map(ids.xs("user_id")) if "user_id" in set(identity["id_type"]) else None
    by_device = purchases["anonymous_id"].map(ids.xs("anonymous_id"))
    person = by_user.fillna(by_device) if by_user is not None else by_device
    rows = purchases.assign(person_id=person, event_time=pd.to_datetime(purchases["event_time"], utc=True))
    rows = rows.dropna(subset=["person_id"])
    cut_end = pd.Timestamp(dt.date.fromisoformat(cut) + dt.timedelta(days=1), tz="UTC")
    train = rows[rows["event_time"] < cut_end]
    later = rows[rows["event_time"] >= cut_end][["person_id", "item_id"]].drop_duplicates()
    seen = train[["person_id", "item_id"]].drop_duplicates().assign(seen=True)
    truth = later.merge(seen, on=["person_id", "item_id"], how="left")
    truth = truth[truth["seen"].isna()].drop(columns=["seen"])
    return train, truth.reset_index(drop=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shop_args(p)
    p.set_defaults(users=20_000, items=5_000, days=60)
    p.add_argument("--test-days", type=int, default=7, help="last days held out as the test")
    p.add_argument("--tune-budget", type=float, default=180.0, help="seconds of `recs tune` for the tuned config")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import pandas as pd

    from jobs.config import load_config
    from jobs.evaluation import popularity_recs
    from jobs.evaluation.tuning import tune
    from jobs.pipeline import run_all, run_stage
    from jobs.shop import generate_shop
    from jobs.spark import spark_session
    from jobs.storage.datasets import Datasets

    started = time.time()
    root = Path(args.work) / f"accuracy-shop-{args.users}x{args.items}x{args.days}"
    last_day = dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days - 1)
    cut = (last_day - dt.timedelta(days=args.test_days)).isoformat()
    if not (root / "raw").exists():
        generate_shop(str(root), start=args.start, days=args.days, users=args.users, items=args.items)
    protocol = [f"window_days={args.days - args.test_days}"]
    cfg = load_config(None, overrides=protocol, data_root=str(root))
    spark = spark_session(cfg.spark, app_name="recs-bench-synthetic-shop")
    data = Datasets(str(root))
    test_days = [(last_day - dt.timedelta(days=n)).isoformat() for n in range(args.test_days - 1, -1, -1)]
    for day in test_days:  # the held-out days are validated only to read their purchases
        if not data.validated_events.exists(day):
            run_stage("validate", cfg, day, spark=spark)

    def lists_at(day: str):
        lists = read_table(data.published_lists.path(day))
        lists = lists[lists["subject_type"] == "person"]
        return lists.rename(columns={"subject_id": "person_id"})[["person_id", "item_id", "rank"]]

    def row(name: str, recs, extra: str = "") -> dict:
        return online_retail_row(name, recs, truth, extra=extra)

    rows = []
    first_name, first_nights, first_tuning = NO_CONFIG_ROWS[0]
    _, note = no_config_run(root, cut, protocol, spark, nights=first_nights, tuning=first_tuning)
    identity = read_table(data.identity_map.path(cut))
    first_day = dt.date.fromisoformat(cut) - dt.timedelta(days=cfg.window_days - 1)
    days = [(first_day + dt.timedelta(days=n)).isoformat() for n in range(cfg.window_days)] + test_days
    purchases = pd.concat([read_table(data.validated_events.path(d), ["event_type", "user_id", "anonymous_id",
                                                                      "item_id", "event_time"]) for d in days])
    purchases = purchases[purchases["event_type"] == "purchase"]
    train, truth = person_truth(purchases, identity, cut=cut)
    persons = truth["person_id"].unique()
    bought = train[["person_id", "item_id"]].drop_duplicates()
    cut_end = pd.Timestamp(dt.date.fromisoformat(cut) + dt.timedelta(days=1), tz="UTC")
    for name, window in (("popularity, all time", None), ("popularity, last 7 days", 7),
                         ("popularity, last 30 days", 30)):
        since = cut_end - pd.Timedelta(days=window) if window else None
        rows.append(row(name, popularity_recs(train, persons, k=K, exclude=bought, since=since)))
    best_pop = max(r["ndcg_at_k"] for r in rows)
    rows.append(row(first_name, lists_at(cut), note))

    for name, nights, tuning in NO_CONFIG_ROWS[1:2]:  # self-tuned, one night: its holdout feeds `recs tune` too
        _, note = no_config_run(root, cut, protocol, spark, nights=nights, tuning=tuning)
        rows.append(row(name, lists_at(cut), note))
    conf_file = str(root / "tuned.yaml")
    tuned = tune(load_config(None, overrides=protocol, data_root=str(root)), cut, budget_seconds=args.tune_budget,
                 out_file=conf_file, seed=cfg.seed)
    best = tuned["best"]
    reset_derived(root, keep=("validated", "quarantine", "reports", "state", "holdout"))
    tuned_cfg = load_config(conf_file, overrides=[*protocol, "tuning.enabled=false"], data_root=str(root))
    verdict = run_all(tuned_cfg, cut, spark=spark, stages=pipeline_stages())["stages"].get("gate", {}).get("verdict")
    settings = ", ".join(f"{k.split('.')[-1]} {v:g}" for k, v in sorted(best["settings"].items()))
    rows.append(row("tuned config (`recs tune`, then a run with its file)", lists_at(cut),
                    f"{tuned['trials']} trials in {tuned['seconds']:.0f}s [{settings}]; gate {verdict}"))
    for name, nights, tuning in NO_CONFIG_ROWS[2:]:
        _, note = no_config_run(root, cut, protocol, spark, nights=nights, tuning=tuning)
        rows.append(row(name, lists_at(cut), note))
    spark.stop()

    lines = [f"Synthetic shop {args.users:,} users x {args.items:,} items x {args.days} days (seeded generator), "
             f"cut {cut}: lists scored against {len(truth):,} new (person, item) purchases of {len(persons):,} "
             f"known persons in the {args.test_days} days after it; top {K}; MAP@10 divided by min(10, test items).",
             "", *markdown_table(rows, COLUMNS), "",
             f"best popularity NDCG@10 {best_pop:.4f}; "
             + "; ".join(f"{r['name'].strip('*')}: {r['ndcg_at_k'] / best_pop:.2f}x" for r in rows[3:])
             + f"; benchmark wall {time.time() - started:.0f}s"]
    if args.no_append:
        print("\n".join(lines))
    else:
        append_results("bench_synthetic_shop: no config, tuned config, self-tuned nights", lines)
    shutil.rmtree(root / "tuning", ignore_errors=True)  # the next run starts its nights fresh anyway
    return 0


if __name__ == "__main__":
    sys.exit(main())
