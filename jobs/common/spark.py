"""The one place a SparkSession is built, from `cfg.spark` (local[2] by default; a cluster URL works)."""
from __future__ import annotations

import os


def spark_session(spark_cfg, app_name: str = "recs"):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    builder = (SparkSession.builder.appName(app_name).master(spark_cfg.master)
               .config("spark.sql.shuffle.partitions", str(spark_cfg.shuffle_partitions))
               .config("spark.driver.memory", spark_cfg.driver_memory)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.adaptive.enabled", "true")
               .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
               .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC"))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
