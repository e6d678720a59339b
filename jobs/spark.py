"""The one place a SparkSession is built, from `cfg.spark` (local[2] by default; a cluster URL works)."""
from __future__ import annotations

import os
import sys
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
               .config("spark.driver.extraJavaOptions", java_opts)
               .config("spark.executor.extraJavaOptions", java_opts))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
