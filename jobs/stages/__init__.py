"""The nightly run's stages, in the order they run: the one list that `recs run`, `recs stage` and the DAG use.

Each stage is a module here with `run(spark, cfg: RecsConfig, run_date: str) -> dict`: it reads what earlier
stages wrote (through `jobs.storage`), calls pure functions, and writes. No stage imports another stage.
Importing this package is cheap (no Spark, no models), so the DAG file can take the list from here.
"""
from __future__ import annotations

STAGES: tuple[str, ...] = ("validate", "stitch", "interactions", "tune", "train", "gate", "retrieve", "rank", "publish")
