"""Privacy by default: retention of personal data (`retention`) and erasure requests (`erasure`).

`recs purge` deletes `dt=` partitions older than `privacy.retention_days`; `recs forget` removes every trace of
one person from DATA_ROOT (and Redis, when configured). Both work on files only, with pyarrow and fsspec, so they
need no SparkSession and run while no nightly run writes.
"""
