"""The tiny shop the storefront tests share (not a test module): its dates, its two arms and its test-sized config.
`tests/conftest.py`'s session fixture `storefront_published` runs its one night once for every module that needs it."""
START, DAYS = "2026-08-01", 14
NIGHT, DAY, NEXT_DAY = "2026-08-14", "2026-08-15", "2026-08-16"
ARMS = """experiment:
  id: sf-test
  arms:
    - {name: popular, share: 0.5, serves: popularity}
    - {name: model, share: 0.5, serves: model}
"""
TEST_SIZED = ["spark.master=local[1]", "spark.shuffle_partitions=1", "tuning.budget_seconds_wide=3",
              "tuning.budget_seconds_warm=2"]


def config(root, conf):
    from jobs.config import load_config

    return load_config(conf_file=conf, data_root=str(root), overrides=TEST_SIZED)


def publish(base, spark):
    """A tiny generated shop under `base` after one night's run that published lists for two arms: (root, conf)."""
    from jobs.pipeline import run_all
    from jobs.shop import generate_shop

    conf = base / "arms.yaml"
    conf.write_text(ARMS)
    root = base / "shop"
    generate_shop(str(root), start=START, days=DAYS, users=300, items=100, seed=3)
    summary = run_all(config(root, conf), NIGHT, spark=spark)
    assert summary["status"] == "published"
    return root, conf
