"""`recs`: the commands data engineers use (see CONTRACT.md)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _config(args):
    from jobs.config import load_config

    overrides = list(args.set or ())
    if getattr(args, "promote", False):
        overrides.append("publish.backfill=promote")
    return load_config(conf_file=args.conf, overrides=overrides, data_root=args.data_root)


def _locked(cfg, owner: str):
    from jobs.pipeline import data_root_lock

    return data_root_lock(cfg, owner)


def cmd_generate_shop(args) -> int:
    from jobs.shop import generate_shop

    summary = generate_shop(args.data_root, start=args.start, days=args.days, users=args.users, items=args.items,
                            seed=args.seed, defect_rate=args.defect_rate, gaps=tuple(args.gap or ()))
    print(json.dumps(summary, indent=1, default=str) if args.verbose else _short(summary))
    return 0


def cmd_simulate_storefront(args) -> int:
    from jobs.storefront import Arrivals, Behaviour, Faults, simulate_storefront

    cfg = _config(args)
    behaviour = Behaviour(slots=args.slots, rec_share=args.rec_share, quality_effect=args.quality_effect,
                          position_decay=args.position_decay)
    days = simulate_storefront(cfg, start=args.from_, end=args.to, behaviour=behaviour,
                               arrivals=Arrivals(people_per_day=args.new_people_rate,
                                                 items_per_day=args.new_items_rate),
                               faults=Faults(srm_share=args.srm_share, two_arm_persons=args.two_arm_persons),
                               seed=args.seed, redis_url=args.redis_url)
    for day, s in days.items():
        print(json.dumps(s, default=str) if args.verbose else _short(s))
    return 0


def _short(summary: dict) -> str:
    keep = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
    return json.dumps(keep, default=str)


# `recs run` exit statuses, so a scheduler can tell the nights apart
EXIT_PUBLISHED, EXIT_FAILED, EXIT_POPULARITY_FALLBACK, EXIT_REFUSED = 0, 1, 2, 3


def cmd_run(args) -> int:
    from jobs.pipeline import run_all
    from jobs.stages.gate import ModelGateError

    cfg = _config(args)

    def progress(name, s):
        print(f"  {name:<13} {s['wall_seconds']:>7.1f}s", flush=True)

    print(f"recs run {args.date} on {cfg.data_root} (config {cfg.fingerprint()})", flush=True)
    try:
        summary = run_all(cfg, args.date, on_stage=progress)
    except ModelGateError as exc:
        print(f"run {args.date} REFUSED by the model gate: {exc}", file=sys.stderr)
        _print_page(cfg, args.date, sys.stderr)
        return EXIT_REFUSED
    except Exception as exc:
        print(f"run {args.date} FAILED: {exc}", file=sys.stderr)
        print("nothing was published; the previous lists stay live", file=sys.stderr)
        _print_page(cfg, args.date, sys.stderr)
        return EXIT_FAILED
    pub = summary["stages"].get("publish", {})
    print(f"published {pub.get('recommendations')} (kv version {pub.get('kv_version')}) "
          f"in {summary['wall_seconds']:.0f}s")
    _print_page(cfg, args.date, sys.stdout)
    if summary["status"] == "published_popularity_fallback":
        fallback = summary["stages"]["gate"]["fallback"]
        print(f"NOTE: the model did not beat popularity on the holdout; the {fallback['baseline']} lists were "
              f"published instead (reports/dt={args.date}/gate.json says why)", file=sys.stderr)
        return EXIT_POPULARITY_FALLBACK
    return EXIT_PUBLISHED


def _print_page(cfg, run_date: str, stream) -> None:
    """Where the night's page is (`jobs.pipeline.finish_night` wrote it), as a link a terminal can open."""
    from jobs.reports.night import page_link, page_path
    from jobs.storage import io

    path = page_path(cfg.data_root, run_date)
    if io.exists(path):
        print(f"night page: {page_link(path)}", file=stream, flush=True)
    else:
        print(f"night page: not written (see the log); reports in {Path(path).parent}", file=stream, flush=True)


def cmd_stage(args) -> int:
    from jobs.pipeline import run_stage

    cfg = _config(args)
    with _locked(cfg, f"recs stage {args.stage} {args.date}"):
        print(json.dumps(run_stage(args.stage, cfg, args.date), indent=1, default=str))
    return 0


def cmd_versions(args) -> int:
    from jobs.serving.versions import listing
    from jobs.storage.layout import Layout

    cfg = _config(args)
    redis_url = args.redis_url if args.redis_url is not None else cfg.export.redis_url
    out = listing(Layout(cfg.data_root).kv(), redis_url)
    if args.json:
        print(json.dumps(out, default=str))
        return 0
    for store, entry in out.items():
        print(f"{store}: live {entry['current']}, previous {entry['previous']}")
        for v in entry["versions"]:
            m = v["manifest"] or {}
            flag = "live" if v["live"] else "previous" if v["previous"] else ""
            state = (f"{m.get('run_date')} {m.get('model_version')} persons={m.get('persons')} "
                     f"segments={m.get('segments')} rows={m.get('rows')} config={m.get('config_digest')}"
                     if m else "INCOMPLETE (no manifest)")
            print(f"  {flag:<8} {v['version']:<22} published {m.get('published_at', v.get('published_at'))}  {state}")
        for sw in entry["switches"][-5:]:
            print(f"  switched {sw['at']}: {sw['from']} -> {sw['to']} ({sw['reason']})")
    return 0


def cmd_rollback(args) -> int:
    from jobs.serving import kvstore
    from jobs.serving.versions import RollbackError, rollback
    from jobs.storage.datasets import Datasets
    from jobs.storage.layout import Layout

    cfg = _config(args)
    redis_url = args.redis_url if args.redis_url is not None else cfg.export.redis_url
    with _locked(cfg, "recs rollback"):
        try:
            result = rollback(Layout(cfg.data_root).kv(), redis_url, to=args.to)
        except RollbackError as exc:
            print(f"recs rollback: {exc}", file=sys.stderr)
            return 1
        live = kvstore.manifest(Layout(cfg.data_root).kv(), result["to"])
        markers = Datasets(cfg.data_root).models.align_published(
            live["run_date"], live.get("model_version"), reason=f"rollback from {result['from']} to {result['to']}")
    stores = "embedded store and Redis" if redis_url else "embedded store"
    print(f"rolled back the {stores} from {result['from']} to {result['to']}")
    if markers["withdrawn"] or markers["restored"]:
        print(f"  models no longer live (the next gate compares against the live one): {markers['withdrawn'] or '-'}; "
              f"live again: {markers['restored'] or '-'}")
    return 0


def cmd_lookup(args) -> int:
    from jobs.segments import KNOWN_DIMENSIONS
    from jobs.storage.layout import Layout
    from jobs.serving.http import open_reader

    reader = open_reader(Layout(args.data_root).kv(), args.redis_url)
    for id_ in args.ids:
        started = time.perf_counter()
        ans = reader.lookup(id_, context={d: getattr(args, d) for d in KNOWN_DIMENSIONS}, k=args.k)
        if args.json:
            print(json.dumps(ans))
        else:
            ms = (time.perf_counter() - started) * 1000
            print(f"{id_}  person={ans['person_id']}  source={ans['source']}  ({ms:.1f} ms)")
            for rank, it in enumerate(ans["items"], 1):
                print(f"  {rank:>3}. {it['item_id']:<14} {it['score']:.4f}")
    return 0


def cmd_serve(args) -> int:
    from jobs.serving.http import ServeOptions, serve
    from jobs.serving.redis_store import redact
    from jobs.storage.layout import Layout

    redis_url = args.redis_url or os.environ.get("RECS_REDIS_URL", "")
    opts = ServeOptions(kv_root=Layout(args.data_root).kv(), redis_url=redis_url, max_in_flight=args.max_in_flight,
                        timeout_seconds=args.timeout_ms / 1000, access_log=args.access_log)
    source = redact(redis_url) if redis_url else opts.kv_root
    print(f"serving {source} on http://{args.host}:{args.port} ({args.workers} workers)", flush=True)
    try:
        serve(opts, host=args.host, port=args.port, workers=args.workers)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_import_online_retail(args) -> int:
    from jobs.importers.online_retail import import_online_retail

    print(_short(import_online_retail(args.source, args.data_root)))
    return 0


def cmd_import_movielens(args) -> int:
    from jobs.importers.movielens import import_movielens

    print(_short(import_movielens(args.source, args.data_root)))
    return 0


def cmd_tune(args) -> int:
    from jobs.evaluation.holdout import HoldoutMissingError
    from jobs.evaluation.tuning import tune

    cfg = _config(args)
    try:
        result = tune(cfg, args.date, budget_seconds=args.budget_minutes * 60,
                      out_file=args.out or f"tuned-{args.date}.yaml", seed=cfg.seed)
    except HoldoutMissingError as exc:
        print(f"recs tune: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result["best"], indent=1, default=str))
    print(f"wrote {result['out_file']}: use it with `recs run --conf {result['out_file']}`")
    return 0


def cmd_assess(args) -> int:
    from jobs.assess.job import run
    from jobs.assess.report import console_summary
    from jobs.spark import spark_session

    cfg = _config(args)
    report = run(spark_session(cfg.spark, "recs-assess"), cfg, args.date)
    print(console_summary(report))
    return 0


def cmd_ab_report(args) -> int:
    from jobs.abtest.job import run
    from jobs.reports.night import page_link
    from jobs.spark import spark_session
    from jobs.storage import io
    from jobs.storage.layout import Layout

    cfg = _config(args)
    end = args.to
    if end is None:
        days = io.partition_dates(Layout(cfg.data_root).validated("events"))
        if not days:
            print(f"no validated events under {Layout(cfg.data_root).validated('events')}: run a night first",
                  file=sys.stderr)
            return 1
        end = days[-1]
    with _locked(cfg, f"recs ab-report {args.experiment} {end}"):
        report = run(spark_session(cfg.spark, "recs-ab-report"), cfg, args.experiment, start=args.from_, end=end)
    print(f"experiment {report['experiment_id']} from {report['start']} to {report['end']}: {report['verdict']} "
          f"(people {report['people']}, dropped in two arms {report['health']['two_arm_people']})")
    for arm, d in report["decisions"].items():
        print(f"  {arm}: {d['verdict']}: " + "; ".join(d["reasons"]))
    print(f"report: {page_link(report['paths']['html'])}")
    return 0


def cmd_purge(args) -> int:
    from jobs.privacy.retention import purge_for_config

    from contextlib import nullcontext

    cfg = _config(args)
    with nullcontext() if args.dry_run else _locked(cfg, f"recs purge {args.date}"):  # a dry run writes nothing
        summary = purge_for_config(cfg, args.date, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for dataset, e in sorted(summary["removed"].items()):
        print(f"  {dataset:<28} {e['partitions']:>5} partition(s) {e['files']:>7} file(s) {e['bytes']:>14,} bytes "
              f"({e['dates'][0]} .. {e['dates'][-1]})")
    for kept in summary["kept_protected"]:
        print(f"  kept {kept['path']}: {kept['why']}")
    for w in summary["warnings"]:
        print(f"  warning: {w}", file=sys.stderr)
    print(f"{verb} {summary['partitions']} partition(s), {summary['files']} file(s), {summary['bytes']:,} bytes "
          f"older than {summary['cutoff']} (retention {summary['retention_days']} days)")
    if args.json:
        print(json.dumps(summary, default=str))
    return 0


def cmd_forget(args) -> int:
    from jobs.privacy.erasure import forget

    cfg = _config(args)
    redis_url = args.redis_url if args.redis_url is not None else cfg.export.redis_url
    with _locked(cfg, "recs forget"):
        counts = forget(cfg.data_root, args.user_id, anonymous_ids=args.anonymous_id or (),
                        email_hashes=args.email_hash or (), redis_url=redis_url)
    print(json.dumps(counts, default=str))  # counts and the salted hash only: never an id
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recs", description="Nightly batch recommendations for ecommerce.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate-shop", help="write a synthetic shop with ground truth")
    g.add_argument("--data-root", required=True)
    g.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    g.add_argument("--days", type=int, required=True)
    g.add_argument("--users", type=int, default=2000)
    g.add_argument("--items", type=int, default=500)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--defect-rate", type=float, default=0.0)
    g.add_argument("--gap", action="append", metavar="GAP",
                   help="plant a readiness gap for `recs assess` (repeatable): see jobs/shop/gaps.py")
    g.set_defaults(func=cmd_generate_shop)

    sf = sub.add_parser("simulate-storefront", help="simulated days of a generated shop whose storefront shows the "
                                                    "published lists (events, catalog, profiles and truth/storefront)")
    sf.add_argument("--data-root", required=True)
    sf.add_argument("--from", dest="from_", required=True, metavar="YYYY-MM-DD",
                    help="first day: the day after the generated period or after the last simulated day")
    sf.add_argument("--to", required=True, metavar="YYYY-MM-DD", help="last day (inclusive)")
    sf.add_argument("--conf", help="the nightly run's config file (the experiment's id and arms)")
    sf.add_argument("--set", action="append", metavar="KEY=VALUE")
    sf.add_argument("--seed", type=int, default=None, help="default: the shop's seed")
    sf.add_argument("--slots", type=int, default=8, help="items shown per list (default 8)")
    sf.add_argument("--rec-share", type=float, default=0.5, help="share of sessions shown the list (default 0.5)")
    sf.add_argument("--quality-effect", type=float, default=0.6,
                    help="how much true utility moves clicks, carts and returns (default 0.6; 0: not at all)")
    sf.add_argument("--position-decay", type=float, default=1.0, help="examination = 1 / position ** this")
    sf.add_argument("--new-people-rate", type=float, default=0.003, help="arrivals per day, share of --users")
    sf.add_argument("--new-items-rate", type=float, default=0.002, help="new items per day, share of --items")
    sf.add_argument("--srm-share", type=float, default=None,
                    help="plant a sample-ratio mismatch: the first arm's share of exposed persons (e.g. 0.51)")
    sf.add_argument("--two-arm-persons", type=int, default=0, help="plant N persons shown both arms each day")
    sf.add_argument("--redis-url", help="look up in Redis (default: export.redis_url, else the embedded store)")
    sf.set_defaults(func=cmd_simulate_storefront)

    r = sub.add_parser("run", help="one nightly run for a logical date, outside Airflow")
    r.add_argument("--data-root", required=True)
    r.add_argument("--date", required=True)
    r.add_argument("--conf", help="YAML file layered on conf/default.yaml")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    r.add_argument("--promote", action="store_true",
                   help="a date older than the live lists (a backfill) takes over the live pointers "
                        "(publish.backfill=promote); without it a backfill leaves tonight's lists live")
    r.set_defaults(func=cmd_run)

    vs = sub.add_parser("versions", help="the key-value versions of both stores, their manifests and switches")
    vs.add_argument("--data-root", required=True)
    vs.add_argument("--json", action="store_true")
    vs.add_argument("--redis-url", help="Redis to list too (default: export.redis_url; '' for none)")
    vs.add_argument("--conf")
    vs.add_argument("--set", action="append", metavar="KEY=VALUE")
    vs.set_defaults(func=cmd_versions)

    rb = sub.add_parser("rollback", help="make the previous key-value version (or --to VERSION) live again, "
                                         "in both stores")
    rb.add_argument("--data-root", required=True)
    rb.add_argument("--to", metavar="VERSION", help="a version listed by `recs versions` (default: the previous)")
    rb.add_argument("--redis-url", help="Redis to roll back too (default: export.redis_url; '' for none)")
    rb.add_argument("--conf")
    rb.add_argument("--set", action="append", metavar="KEY=VALUE")
    rb.set_defaults(func=cmd_rollback)

    from jobs.pipeline import STAGES

    st = sub.add_parser("stage", help="run one stage of the nightly run for a date (its inputs must exist)")
    st.add_argument("stage", choices=STAGES)
    st.add_argument("--data-root", required=True)
    st.add_argument("--date", required=True)
    st.add_argument("--conf")
    st.add_argument("--set", action="append", metavar="KEY=VALUE")
    st.add_argument("--promote", action="store_true", help="publish: a backfill takes over the live pointers")
    st.set_defaults(func=cmd_stage)

    t = sub.add_parser("tune", help="search ALS settings on a date's holdout and write them as a config file")
    t.add_argument("--data-root", required=True)
    t.add_argument("--date", required=True, help="a date the pipeline has run (at least to interactions) for")
    t.add_argument("--budget-minutes", type=float, default=10.0)
    t.add_argument("--out", help="config file to write (default tuned-<date>.yaml)")
    t.add_argument("--conf")
    t.add_argument("--set", action="append", metavar="KEY=VALUE")
    t.set_defaults(func=cmd_tune)

    lk = sub.add_parser("lookup", help="what the storefront would get for an id")
    lk.add_argument("--data-root", required=True)
    lk.add_argument("ids", nargs="+", metavar="ID")
    from jobs.segments import KNOWN_DIMENSIONS

    for dim in KNOWN_DIMENSIONS:  # the lookup context: any segment dimension
        lk.add_argument("--" + dim.replace("_", "-"), dest=dim)
    lk.add_argument("-k", type=int, default=None, help="items to return (default: the whole list)")
    lk.add_argument("--json", action="store_true")
    lk.add_argument("--redis-url", help="read the Redis export instead of the embedded store")
    lk.set_defaults(func=cmd_lookup)

    s = sub.add_parser("serve", help="the lookup over HTTP")
    s.add_argument("--data-root", required=True)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--workers", type=int, default=2, help="server processes sharing the port (default 2)")
    s.add_argument("--max-in-flight", type=int, default=256,
                   help="requests one worker handles at once; more are answered 503 at once (default 256)")
    s.add_argument("--timeout-ms", type=float, default=250,
                   help="a store lookup (Redis connect, command, pool wait) gives up after this (default 250)")
    s.add_argument("--access-log", action="store_true", help="one line per request on stderr (off by default)")
    s.add_argument("--redis-url", help="serve the Redis export instead of the embedded store; better pass a URL "
                                       "with a password as the RECS_REDIS_URL environment variable")
    s.set_defaults(func=cmd_serve)

    o = sub.add_parser("import-online-retail", help="UCI Online Retail -> contract events and catalog")
    o.add_argument("--data-root", required=True)
    o.add_argument("--source", default=str(SHARED_DATA / "online_retail" / "online_retail.parquet"))
    o.set_defaults(func=cmd_import_online_retail)

    a = sub.add_parser("assess", help="is the data ready for personalization? a report from the raw inputs")
    a.add_argument("--data-root", required=True)
    a.add_argument("--date", help="assess the raw days up to this date (default: all; the report goes under it)")
    a.add_argument("--conf")
    a.add_argument("--set", action="append", metavar="KEY=VALUE")
    a.set_defaults(func=cmd_assess)

    ab = sub.add_parser("ab-report", help="read an A/B experiment back: success metrics, guardrail, health, "
                                          "decision (JSON and HTML under reports/ab/E/)")
    ab.add_argument("--data-root", required=True)
    ab.add_argument("--experiment", required=True, help="the experiment_id of the rec_impression events")
    ab.add_argument("--from", dest="from_", metavar="YYYY-MM-DD",
                    help="first day exposures count (default: abtest.start, else the first validated day)")
    ab.add_argument("--to", metavar="YYYY-MM-DD", help="last day read (default: the last validated day)")
    ab.add_argument("--conf")
    ab.add_argument("--set", action="append", metavar="KEY=VALUE")
    ab.set_defaults(func=cmd_ab_report)

    pg = sub.add_parser("purge", help="delete personal data older than privacy.retention_days (dt= partitions)")
    pg.add_argument("--data-root", required=True)
    pg.add_argument("--date", required=True, help="the run date the retention counts back from")
    pg.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    pg.add_argument("--json", action="store_true", help="also print the whole summary as JSON")
    pg.add_argument("--conf")
    pg.add_argument("--set", action="append", metavar="KEY=VALUE")
    pg.set_defaults(func=cmd_purge)

    fg = sub.add_parser("forget", help="erasure request: remove every trace of a person from DATA_ROOT (and Redis)")
    fg.add_argument("--data-root", required=True)
    fg.add_argument("--user-id", required=True)
    fg.add_argument("--anonymous-id", action="append", metavar="ID", help="a further device id of the person (repeatable)")
    fg.add_argument("--email-hash", action="append", metavar="H", help="a further email hash of the person (repeatable)")
    fg.add_argument("--redis-url", help="Redis to erase from (default: export.redis_url; '' for none)")
    fg.add_argument("--conf")
    fg.add_argument("--set", action="append", metavar="KEY=VALUE")
    fg.set_defaults(func=cmd_forget)

    m = sub.add_parser("import-movielens", help="MovieLens 100K -> contract events, catalog and profiles")
    m.add_argument("--data-root", required=True)
    m.add_argument("--source", default=str(SHARED_DATA / "ml-100k"))
    m.set_defaults(func=cmd_import_movielens)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("jobs.progress").setLevel(logging.INFO)  # off a terminal, progress is these lines
    try:
        return args.func(args)
    except Exception as exc:  # a clear one-line error for data engineers; -v shows the traceback
        if args.verbose:
            raise
        print(f"recs {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
