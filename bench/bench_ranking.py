"""The learned ranker's ablation: retrieval order; ranker; ranker + business terms; + diversity re-rank.

Protocol, per shop: the nightly stages validate, stitch, interactions and tune run for the run date with no config
file (the defaults, self-tuning on; only the shop's window and holdout length are set), so the interactions stage
writes its temporal holdout. The rank stage's own training data is then built (`jobs.ranking.nightly.
training_frame`: candidates of ALS fitted on the holdout's train part, features before the cut, graded labels
after it) and the ranker is trained on its training persons; every row is measured on the validation persons
(`rank.ranker.validation_share` of them, never trained on), re-ranking the same candidates:

- NDCG@10 graded (purchase 3, cart 2, view 1; what the ranker optimises and the night's serve-or-fall-back uses),
- NDCG@10 and MAP@10 binary against purchases and carts after the cut (the gate's truth), among the candidates,
- catalog coverage (share of available items in any top 10) and intra-list category diversity (leaf categories).

Shops: the synthetic shop (jobs.shop, small, `--seed`), the real shop (Online Retail, run date 2011-12-09 with a
31-day holdout, so the cut falls on 2011-11-08 as in its temporal protocol), MovieLens 100K (its ratings' days, the
pipeline's own widened temporal holdout; not issue #5's stratified protocol, which has no time cut to learn from).
The real shop and MovieLens run twice: with no config file and with their benchmark config (bench/conf/<shop>.yaml,
`--no-configs` to skip). The synthetic shop adds its ceiling: the same candidates re-ranked by the generator's own
choice probabilities (`generator_oracle`).

    python bench/bench_ranking.py                # all three shops, appended to bench/RESULTS.md
    python bench/bench_ranking.py --shops synthetic --users 4000 --items 800 --days 60 --seed 2 --no-append
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import append_results  # noqa: E402

K = 10
CONF_DIR = Path(__file__).resolve().parent / "conf"
BENCH_CONFS = {"online_retail": CONF_DIR / "online_retail.yaml", "movielens": CONF_DIR / "movielens.yaml"}
STAGES = ("validate", "stitch", "interactions", "tune")


def prepare(shop: str, args, work: Path, conf: str | None) -> tuple[Path, str, list[str]]:
    """(DATA_ROOT, run date, the protocol's --set overrides) with the shop's raw inputs in place; one root per
    shop, seed and config file, so each keeps its own stages' outputs."""
    root = work / (f"ranking-{shop}" + (f"-seed{args.seed}" if shop == "synthetic" else "")
                   + (f"-{Path(conf).stem}" if conf else ""))
    if shop == "synthetic":
        from jobs.shop import generate_shop

        marker = root / f"shop-{args.users}-{args.items}-{args.days}-{args.seed}.done"
        if not marker.exists():
            shutil.rmtree(root, ignore_errors=True)
            generate_shop(str(root), start=args.start, days=args.days, users=args.users, items=args.items,
                          seed=args.seed)
            marker.touch()
        import datetime as dt

        run_date = (dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days - 1)).isoformat()
        return root, run_date, [f"window_days={args.days}"]
    if shop == "online_retail":
        from bench.bench_online_retail import SOURCE, ensure_import

        info = ensure_import(root, SOURCE)
        import datetime as dt

        window = (dt.date(2011, 12, 9) - dt.date.fromisoformat(info["first_day"])).days + 1
        return root, "2011-12-09", [f"window_days={window}", "gate.holdout_days=31", "gate.max_holdout_days=31"]
    if shop == "movielens":
        from bench.bench_movielens import SOURCE
        from jobs.importers.movielens import import_movielens
        from jobs.storage.io import partition_dates
        from jobs.storage.layout import Layout

        if not (root / "ml.done").exists():
            shutil.rmtree(root, ignore_errors=True)
            import_movielens(str(SOURCE), str(root))
            (root / "ml.done").touch()
        days = partition_dates(Layout(str(root)).raw("events"))
        import datetime as dt

        window = (dt.date.fromisoformat(days[-1]) - dt.date.fromisoformat(days[0])).days + 1
        return root, days[-1], [f"window_days={window}"]
    raise ValueError(f"unknown shop {shop!r}")


def generator_oracle(root: Path, frame, cut_day: str):
    """The synthetic shop's ceiling: each candidate scored by the generator's own choice model (jobs.shop.funnel):
    P(a session browses the item's leaf) = (1 - explore) x the person's taste + explore x the leaf's popularity,
    times the chance the item is among a session's ~2.5 views of that leaf, from its popularity x brand fit x
    price fit against the leaf's listed items. Stitched persons are mapped to the generator's by the truth of
    their ids (the most common owner). Approximate (views without replacement, stock ignored), and no ranker can
    know these probabilities: re-ranking by them is the headroom over the retrieval order. NaN where unmapped."""
    import datetime as dt
    import json

    import numpy as np
    import pyarrow.parquet as pq

    from jobs.shop.generator import build_world
    from jobs.shop.knobs import BRAND_FIT, EXPLORE_SHARE, PRICE_BAND_SIGMA, PRICE_FIT_FLOOR, VIEWS_GEOMETRIC_P

    shop = json.loads((root / "truth" / "shop.json").read_text())
    start = dt.date.fromisoformat(shop["start"])
    world = build_world(shop["seed"], start, days=shop["days"], users=shop["users"], items=shop["items"])
    cat, ppl = world.catalog, world.people
    ids = pq.read_table(root / "identity").to_pandas()[["id", "person_id"]]
    truth = pq.read_table(root / "truth" / "identities").to_pandas()[["id", "person"]]
    owner = ids.merge(truth, on="id").groupby("person_id")["person"].agg(lambda s: s.value_counts().index[0])
    person = frame["person_id"].map(owner).map({k: i for i, k in enumerate(ppl.person_keys.to_pylist())})
    mapped = person.notna().to_numpy()
    p = person.fillna(0).astype(int).to_numpy()
    i = frame["item_id"].map({k: n for n, k in enumerate(cat.static["item_id"].to_pylist())}).to_numpy()
    listed = cat.first_day <= (dt.date.fromisoformat(cut_day) - start).days
    leaf = np.empty(len(cat.base_price), dtype=np.int64)
    for n, items in enumerate(cat.leaf_items):
        leaf[items] = n
    cum = ppl.taste_cum
    slot_w = np.diff(np.concatenate([np.zeros((len(cum), 1)), cum], axis=1), axis=1)
    taste = np.zeros((len(slot_w), cat.n_leaves))
    for slot in range(ppl.taste_leaf.shape[1]):
        rows = np.flatnonzero(ppl.taste_leaf[:, slot] >= 0)
        np.add.at(taste, (rows, ppl.taste_leaf[rows, slot]), slot_w[rows, slot])
    p_leaf = ((1 - EXPLORE_SHARE) * taste / taste.sum(axis=1, keepdims=True)
              + EXPLORE_SHARE * (cat.leaf_pop / cat.leaf_pop.sum())[None, :])

    def weight(pp, ii):
        fav = (cat.brand[ii] == ppl.fav_brand[pp, 0]) | (cat.brand[ii] == ppl.fav_brand[pp, 1])
        fit = np.exp(-0.5 * ((cat.price_z[ii] - ppl.price_offset[pp]) / PRICE_BAND_SIGMA) ** 2)
        return cat.popularity[ii] * listed[ii] * np.where(fav, BRAND_FIT, 1.0) * (fit + PRICE_FIT_FLOOR)

    leaf_total = np.array([weight(np.full(len(cat.leaf_items[leaf[ii]]), pp), cat.leaf_items[leaf[ii]]).sum()
                           for pp, ii in zip(p, i)])
    share = np.where(leaf_total > 0, weight(p, i) / np.maximum(leaf_total, 1e-12), 0.0)
    views = 1.0 / VIEWS_GEOMETRIC_P
    return np.where(mapped, p_leaf[p, leaf[i]] * (1.0 - (1.0 - share) ** views), np.nan)


def ablation(frame, result, cfg, available, categories, oracle=None) -> list[tuple[str, dict]]:

    import numpy as np

    from jobs.evaluation.metrics import evaluate_all
    from jobs.ranking.ltr import list_figures, ordered_lists, score, split_persons

    valid = frame[split_persons(frame["person_id"], validation_share=cfg.rank.ranker.validation_share,
                                seed=cfg.seed)]
    ranked = score(result.model, valid)
    variants = [("retrieval order", -valid["retrieval_rank"].to_numpy(), None, None),
                ("ranker", ranked, None, None),
                ("ranker + business", ranked, cfg.rank.business, None),
                ("ranker + business + diversity", ranked, cfg.rank.business, cfg.rank.diversity)]
    if oracle is not None:  # the synthetic shop's ceiling (generator_oracle), on the same candidates
        variants.append(("oracle: the generator's choice probabilities", np.nan_to_num(oracle[valid.index], nan=0.0),
                         None, None))
    truth = valid.loc[valid["label"] >= 2, ["person_id", "item_id"]]
    out = []
    for name, relevance, business, diversity in variants:
        lists = ordered_lists(valid, relevance, business=business, diversity=diversity)
        graded = list_figures(lists, k=K)
        binary = evaluate_all(lists[["person_id", "item_id", "rank"]], truth, k=K, catalog=available,
                              item_categories=categories)
        out.append((name, {"ndcg_graded": graded["ndcg"], "ndcg": binary["ndcg_at_k"], "map": binary["map_at_k"],
                           "coverage": binary["catalog_coverage"], "diversity": graded["diversity"],
                           "diversity_at_5": list_figures(lists, k=5)["diversity"]}))
    return out


def run_shop(shop: str, args, spark, conf: str | None = None) -> list[str]:
    import pandas as pd

    from jobs.config import load_config
    from jobs.pipeline import night_config, run_stage
    from jobs.ranking.ltr import train_ranker
    from jobs.ranking.nightly import training_frame
    from jobs.storage.datasets import Datasets
    from schemas.vocabulary import leaf_category_series

    import json

    started = time.time()
    label = Path(conf).name if conf else "none"
    root, run_date, protocol = prepare(shop, args, Path(args.work), conf)
    cfg = load_config(conf, overrides=[*protocol, *args.set], data_root=str(root))
    saved, saved_info = root / "ranker_frame.parquet", root / "ranker_frame.json"
    if args.reuse_frame and saved.exists():  # the stages and the training frame of an earlier run of this script
        cfg = night_config(cfg, run_date)
        frame, info = pd.read_parquet(saved), json.loads(saved_info.read_text())
    else:
        done = Datasets(str(root)).tuning.read(run_date) is not None
        for stage in STAGES if not (args.reuse_stages and done) else ():
            run_stage(stage, cfg, run_date, spark=spark)
        cfg = night_config(cfg, run_date)
        frame, info = training_frame(spark, cfg, Datasets(str(root)), run_date)
        if frame is None:
            return [f"| {shop} | {label} | no training data: {info} | | | | | |"]
        frame.to_parquet(saved)
        saved_info.write_text(json.dumps(info))
    data = Datasets(str(root))
    result = train_ranker(frame, cfg.rank.ranker, seed=cfg.seed, business=cfg.rank.business,
                          diversity=cfg.rank.diversity)
    catalog = data.validated_catalog.read_arrow(run_date, ["item_id", "is_available", "category_path"]).to_pandas()
    available = catalog.loc[catalog["is_available"].fillna(False).astype(bool), "item_id"].to_numpy(dtype=object)
    categories = pd.DataFrame({"item_id": catalog["item_id"],
                               "category_path": leaf_category_series(catalog["category_path"])}).drop_duplicates("item_id")
    frame = frame.reset_index(drop=True)
    oracle = generator_oracle(root, frame, info["cutoff"]) if shop == "synthetic" else None
    rows = ablation(frame, result, cfg, available, categories, oracle)
    base = dict(rows)["retrieval order"]
    ranker = dict(rows)["ranker"]
    for strength in [float(x) for x in args.strengths.split(",") if x]:  # the diversity default's trade-off
        c = cfg.replace(rank=dataclasses.replace(
            cfg.rank, diversity=dataclasses.replace(cfg.rank.diversity, strength=strength)))
        name, m = ablation(frame, result, c, available, categories)[-1]
        # top 5 too: a page shows its items in relevance order, so diversity inside a page is not the page's
        print(f"{shop}: diversity strength {strength}: NDCG@10 graded {m['ndcg_graded']:.4f} "
              f"({1 - m['ndcg_graded'] / ranker['ndcg_graded']:.1%} cost vs ranker) binary {m['ndcg']:.4f} "
              f"diversity {m['diversity']:.4f} ({m['diversity'] / ranker['diversity'] - 1:+.1%}), top 5 "
              f"{m['diversity_at_5']:.4f} ({m['diversity_at_5'] / ranker['diversity_at_5'] - 1:+.1%})", flush=True)
    lines = []
    for name, m in rows:
        lift = m["ndcg_graded"] / base["ndcg_graded"] - 1 if base["ndcg_graded"] else float("nan")
        lines.append(f"| {shop} | {label} | {name} | {m['ndcg_graded']:.4f} ({lift:+.1%}) | {m['ndcg']:.4f} "
                     f"| {m['map']:.4f} "
                     f"| {m['coverage']:.4f} | {m['diversity']:.4f} ({m['diversity'] / ranker['diversity'] - 1:+.1%} "
                     f"vs ranker) |")
    top = ", ".join(f"{f} {g:.2f}" for f, g in list(result.importances.items())[:4])
    c = result.counts
    lines.append(f"| {shop} | {label} | note | {c.get('train_persons')} train / {c.get('validation_persons')} "
                 "validation persons "
                 f"x {info['candidates_per_person']} candidates, cut {info['cutoff']}; serves: {result.serves}; "
                 f"top features: {top}; {time.time() - started:.0f}s | | | | |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shops", default="synthetic,online_retail,movielens")
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--start", default="2026-08-01")
    p.add_argument("--seed", type=int, default=1, help="the synthetic shop's seed")
    p.add_argument("--configs", action=argparse.BooleanOptionalAction, default=True,
                   help="also run each shop with its benchmark config (bench/conf/<shop>.yaml), beside no config")
    p.add_argument("--work", default="/tmp/recs-bench")
    p.add_argument("--set", action="append", default=[], help="key=value on top of the defaults")
    p.add_argument("--no-append", action="store_true")
    p.add_argument("--strengths", default="", help="also print the last row for these diversity strengths (a,b,...)")
    p.add_argument("--reuse-frame", action="store_true",
                   help="reuse the training frame an earlier run saved in the shop's folder (re-runs the ablation only)")
    p.add_argument("--reuse-stages", action="store_true",
                   help="skip the stages (validate .. tune) for a shop folder where an earlier run of this script ran "
                        "them (its tuning settings are there); the training frame is rebuilt with the current code")
    p.add_argument("--note", default="host shared with other agents")
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from jobs.spark import spark_session
    from jobs.config import load_config

    spark = spark_session(load_config(None).spark)
    header = ["| shop | config | ranking | NDCG@10 graded (vs retrieval) | NDCG@10 | MAP@10 | coverage "
              "| intra-list diversity |", "|---|---|---|---|---|---|---|---|"]
    extra = f", --set {' '.join(args.set)}" if args.set else ""
    for shop in [s.strip() for s in args.shops.split(",")]:
        confs = [None, *([str(BENCH_CONFS[shop])] if args.configs and shop in BENCH_CONFS else [])]
        shop_lines = list(header)
        for conf in confs:
            shop_lines += run_shop(shop, args, spark, conf)
        shop_lines.append("config: `none` = no config file (defaults, self-tuning on)"
                          + (f", `{BENCH_CONFS[shop].name}` = bench/conf/{BENCH_CONFS[shop].name} (its keys pinned)"
                             if len(confs) > 1 else "") + extra
                          + (f"; synthetic shop {args.users} users x {args.items} items x {args.days} days, "
                             f"seed {args.seed}" if shop == "synthetic" else "") + f"; {args.note}.")
        print("\n".join(shop_lines), flush=True)
        if not args.no_append:  # each shop as it finishes: a slow shop does not hold back the others' figures
            append_results(f"bench_ranking ({shop}): the learned ranker's ablation "
                           "(validation persons of its training data)", shop_lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
