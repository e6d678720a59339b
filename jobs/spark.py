"""The one place a SparkSession is built, from `cfg.spark` (local[2] by default; a cluster URL works)."""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

from jobs.config import SparkConfig

LOG4J = Path(__file__).resolve().parents[1] / "conf" / "log4j2.properties"


def spark_session(spark_cfg: SparkConfig, app_name: str = "recs"):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local mode: no need to resolve the host name
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers use this interpreter (the venv), not PATH's
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    java_opts = f"-Duser.timezone=UTC -Dlog4j2.configurationFile={LOG4J.as_uri()}"
    builder = (SparkSession.builder.appName(app_name).master(spark_cfg.master)
               .config("spark.sql.shuffle.partitions", str(spark_cfg.shuffle_partitions))
               .config("spark.driver.memory", spark_cfg.driver_memory)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.adaptive.enabled", "true")
               # the identity state and the catalog (tens of MB) join millions of events: broadcast them
               .config("spark.sql.autoBroadcastJoinThreshold", str(64 * 1024 * 1024))
               # ...judged on their size in memory, not on disk: Parquet files of sorted ids compress ~10x, and a
               # 39 MB candidates file (100k persons x 50) planned as a broadcast did not fit a 3g driver's hash map
               .config("spark.sql.sources.fileCompressionFactor", "8")
               .config("spark.driver.extraJavaOptions", java_opts)
               .config("spark.executor.extraJavaOptions", java_opts))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive_workers(ui_port: int) -> int:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as answer:
            return int(json.load(answer).get("aliveworkers", 0))
    except OSError:
        return 0


@contextlib.contextmanager
def standalone_cluster(work: Path, *, workers: int = 2, cores: int = 1, memory: str = "2g",
                       timeout_seconds: float = 120):
    """A Spark standalone cluster on loopback, from the installed pyspark: a master and `workers` workers of
    `cores` cores and `memory` each, their logs and work folders under `work`. Yields (master URL, the workers'
    work folders); stops them on exit. For trying the cluster path on one machine (the tests and
    `bench/bench_cluster.py`): set `spark.master` to the URL. A real cluster is started by its own tooling."""
    import subprocess

    import pyspark

    spark_home = Path(pyspark.__file__).resolve().parent
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_LOG_DIR": str(work), "PYSPARK_PYTHON": sys.executable}
    spark_class = str(spark_home / "bin" / "spark-class")
    port, ui_port = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    worker_dirs = [work / f"worker-{n}" for n in range(workers)]
    commands = [[spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                 "--webui-port", str(ui_port)]]
    commands += [[spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                  "--cores", str(cores), "--memory", memory, "--webui-port", str(_free_port()),
                  "--work-dir", str(folder)] for folder in worker_dirs]
    logs = [work / f"daemon-{n}.log" for n in range(len(commands))]
    processes = []
    try:
        for command, log_path in zip(commands, logs):
            with open(log_path, "w") as log:
                processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
        deadline = time.time() + timeout_seconds
        while _alive_workers(ui_port) < workers:
            if time.time() > deadline or any(p.poll() is not None for p in processes):
                tails = "\n".join(p.read_text()[-2000:] for p in logs if p.exists())
                raise RuntimeError(f"the standalone cluster did not come up with {workers} workers:\n{tails}")
            time.sleep(1)
        yield url, worker_dirs
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
