"""A night on a real Spark standalone cluster (a master and two workers on loopback, started from the installed
pyspark) gives the same lists as the same night in local mode.

The cluster's executors are separate JVMs with their own Python workers, started by the workers in their own work
folders: whatever the code assumed about sharing the driver's process (a global, a driver-side file outside
DATA_ROOT, a closure over a driver object) fails here.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads
import pytest

pytestmark = pytest.mark.spark

START, DAYS, RUN_DATE = "2026-08-01", 10, "2026-08-10"
# deterministic nights: a fixed number of tuning trials (a time budget would let the two runs differ)
SETTINGS = ["spark.shuffle_partitions=2", "spark.driver_memory=1g", "als.threads=1", "tuning.max_trials=4",
            "tuning.budget_seconds_wide=600", "tuning.budget_seconds_warm=600"]


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory):
    """(spark://127.0.0.1:PORT, the two workers' work folders): one core each; stopped after the module."""
    from jobs.spark import standalone_cluster

    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster"), workers=2, cores=1, memory="2g") as cluster:
        yield cluster


def _published(root: Path) -> list[tuple]:
    table = pads.dataset(str(root / "recommendations" / f"dt={RUN_DATE}"), format="parquet").to_table(
        columns=["subject_type", "subject_id", "rank", "item_id"])
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names)))


def test_a_night_on_a_standalone_cluster_publishes_the_local_lists(standalone_cluster, spark, tmp_path):
    url, worker_dirs = standalone_cluster
    from jobs.config import load_config
    from jobs.pipeline import run_all
    from jobs.shop import generate_shop

    local, cluster = tmp_path / "local", tmp_path / "cluster"
    generate_shop(str(local), start=START, days=DAYS, users=300, items=100, seed=7)
    shutil.copytree(local, cluster)

    local_status = run_all(load_config(data_root=str(local), overrides=SETTINGS), RUN_DATE, spark=spark)["status"]
    command = [sys.executable, "-m", "jobs.cli", "run", "--data-root", str(cluster), "--date", RUN_DATE,
               "--set", f"spark.master={url}", *(a for s in SETTINGS for a in ("--set", s))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode in (0, 2), done.stderr[-3000:]
    summary = json.loads((cluster / "reports" / f"dt={RUN_DATE}" / "run_summary.json").read_text())
    assert summary["status"] == local_status
    for worker in worker_dirs:  # both workers ran executors of the night (one folder per application)
        assert any(worker.glob("app-*/*/stderr")), f"no executor ran on {worker.name}"

    local_lists, cluster_lists = _published(local), _published(cluster)
    assert len(local_lists) > 0
    assert cluster_lists == local_lists
