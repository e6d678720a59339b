"""`make demo`: a synthetic shop, the real nightly DAG run through Airflow on local Spark, a few lists.

Airflow runs from a private AIRFLOW_HOME (`.airflow/` in the repo, SQLite) so the demo touches nothing else.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "nightly_recommendations"


def airflow_env() -> dict:
    env = dict(os.environ)
    env.update(AIRFLOW_HOME=str(REPO / ".airflow"), AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", GX_ANALYTICS_ENABLED="false", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-root", default=str(REPO / "demo-data"))
    p.add_argument("--start", default="2026-08-01")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--items", type=int, default=600)
    args = p.parse_args(argv)
    started = time.time()
    run_date = (dt.date.fromisoformat(args.start) + dt.timedelta(days=args.days - 1)).isoformat()
    recs = [sys.executable, "-m", "jobs.cli"]
    env = airflow_env()

    print(f"1/3 writing a synthetic shop: {args.users} shoppers, {args.items} items, {args.days} days "
          f"-> {args.data_root}", flush=True)
    subprocess.run([*recs, "generate-shop", "--data-root", args.data_root, "--start", args.start,
                    "--days", str(args.days), "--users", str(args.users), "--items", str(args.items),
                    "--seed", "1", "--defect-rate", "0.005"], check=True, env=env)

    print(f"2/3 running the Airflow DAG `{DAG_ID}` for {run_date} (airflow dags test, local Spark)", flush=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=env, capture_output=True)
    conf = json.dumps({"data_root": args.data_root, "ds": run_date})
    dag_run = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", DAG_ID, run_date, "-c", conf],
                             env=env, capture_output=True, text=True)
    log_file = Path(args.data_root) / "reports" / f"dt={run_date}" / "airflow_dags_test.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(dag_run.stdout + dag_run.stderr)
    summary_dir = Path(args.data_root) / "reports" / f"dt={run_date}" / "stages"
    from jobs.pipeline import STAGES

    for stage in STAGES:
        f = summary_dir / f"{stage}.json"
        record = json.loads(f.read_text()) if f.exists() else {}
        took = f"{record['wall_seconds']:7.1f}s" if record else "   (not run)"
        print(f"    {stage:<13}{took}{'  FAILED: ' + record.get('error', '') if record.get('status') == 'failed' else ''}")
    from jobs.reports.night import page_link, page_path

    page = page_path(args.data_root, run_date)
    page_line = f"night page: {page_link(page)}" if Path(page).exists() else f"night page: not written (see {log_file})"
    if dag_run.returncode != 0 or "state=failed" in dag_run.stdout + dag_run.stderr.lower():
        print(f"the DAG run failed; its log: {log_file}", file=sys.stderr)
        print(page_line, file=sys.stderr)
        return 1
    print(f"    {page_line}", flush=True)

    print("3/3 a few shoppers' lists, as the storefront would get them (`recs lookup`)", flush=True)
    import pyarrow.parquet as pq

    identity = pq.read_table(Path(args.data_root) / "identity" / f"dt={run_date}").to_pandas()
    users = identity[identity.id_type == "user_id"].id.sort_values().head(2).tolist()
    anons = identity[identity.id_type == "anonymous_id"].id.sort_values().head(1).tolist()
    subprocess.run([*recs, "lookup", "--data-root", args.data_root, *users, *anons, "-k", "5"], check=True, env=env)
    subprocess.run([*recs, "lookup", "--data-root", args.data_root, "never-seen-cookie", "--country", "DE",
                    "--device-type", "ios", "-k", "5"], check=True, env=env)
    root = Path(args.data_root)
    print(f"""
done in {time.time() - started:.0f}s. Where things are:
  lists (Parquet)     {root}/recommendations/dt={run_date}/
  identity map        {root}/identity/dt={run_date}/
  key-value store     {root}/exports/kv/  (CURRENT -> versions/<version>/store.sqlite)
  quarantine          {root}/quarantine/
  night page          {page_line.removeprefix("night page: ")}  (stage times, volumes, quarantine, identity,
                      gate, tuning, coverage; trends of the last nights)
  run report          {root}/reports/dt={run_date}/  (run summary, validation report, data docs)
  airflow log         {log_file}
try: .venv/bin/recs lookup --data-root {root} {users[0] if users else 'ID'}
     .venv/bin/recs serve --data-root {root}   then GET /recommendations/<id>""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
