import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RECS_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config):
    # Before anything imports airflow: its settings are read at first import.
    config._recs_airflow_home = tempfile.mkdtemp(prefix="recs-airflow-")
    os.environ.update(
        AIRFLOW_HOME=config._recs_airflow_home,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__UNIT_TEST_MODE="True",
        GX_ANALYTICS_ENABLED="false",
        OPENBLAS_NUM_THREADS="1",
        PYARROW_IGNORE_TIMEZONE="1",
        PYSPARK_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
    )


def pytest_unconfigure(config):
    import logging
    import shutil

    logging.getLogger("py4j").setLevel(logging.WARNING)  # its close-at-exit log hits a closed stream

    shutil.rmtree(getattr(config, "_recs_airflow_home", ""), ignore_errors=True)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    s = (SparkSession.builder.master("local[1]").appName("recs-tests")
         .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.shuffle.partitions", "1").config("spark.default.parallelism", "1")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true")
         .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
         # 2g: one session serves the whole suite, and a night's broadcasts and caches add up in it
         .config("spark.driver.memory", "2g")
         .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("wh"))).getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(autouse=True, scope="module")
def _release_spark_caches():
    """After each module, drops what its nights cached in the shared session, so caches left by stages that a
    process normally runs once (a night per process) do not pile up over the suite until the driver runs out."""
    yield
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()


@pytest.fixture
def cfg(tmp_path):
    """Default config pointed at a fresh temporary DATA_ROOT, with test-sized Spark settings."""
    from jobs.config import load_config

    return load_config(data_root=str(tmp_path / "data"),
                       overrides=["spark.master=local[1]", "spark.shuffle_partitions=1", "spark.driver_memory=1g"])


def rows(df, *cols):
    """Sorted list of tuples of a Spark DataFrame's columns (stands in for the broken assertDataFrameEqual)."""
    sel = df.select(*cols) if cols else df
    return sorted(tuple(r) for r in sel.collect())


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata DB in this session's AIRFLOW_HOME (a few seconds, once)."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port (installed by .ci/run; skipped if absent)."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    from bench._common import start_redis  # the one way this project starts a private server

    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def storefront_published(tmp_path_factory, spark):
    """The storefront tests' tiny shop after its one night (tests/storefront_shop.py), run once per session and
    never modified: tests copy it."""
    from storefront_shop import publish

    return publish(tmp_path_factory.mktemp("storefront"), spark)
