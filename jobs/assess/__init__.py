"""Is the shop's data ready for personalization? `recs assess` answers from the raw inputs, before any night.

- `read`: the raw events and catalog snapshots, read by the validate stage's own reader (`quality.raw`);
- `figures`: pure functions from DataFrames to small figure dicts, area by area (history, people, identity,
  catalog, event collection);
- `verdicts`: the figures against the `[ready, usable]` thresholds of `cfg.assess`, a verdict per area and the
  fixes in order;
- `report`: the HTML page (plots embedded) and the console summary;
- `job`: `run(spark, cfg, date)` reads, computes and writes `reports/dt=D/assessment.{json,html}`.

No model is trained and nothing but the two report files is written.
"""
