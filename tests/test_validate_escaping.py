"""Issue #8: every page the validation writes escapes what comes from the inputs."""
from __future__ import annotations

import datetime as dt
import glob
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.storage.layout import Layout

pytestmark = pytest.mark.spark

D = "2026-03-05"
SCRIPT = "<script>alert(1)</script>"


def test_input_text_is_escaped_in_every_html_page(spark, cfg):
    from jobs.stages import validate

    cfg = cfg.replace(window_days=1)
    layout = Layout(cfg.data_root)
    os.makedirs(layout.raw("catalog", D))
    os.makedirs(layout.raw("events", D))
    pq.write_table(pa.Table.from_pylist([{"item_id": "i0", "title": SCRIPT, "category_path": SCRIPT, "price": 1.0,
                                          "is_available": True, "brand": SCRIPT}]),
                   os.path.join(layout.raw("catalog", D), "catalog.parquet"))
    t = dt.datetime(2026, 3, 5, 10, tzinfo=dt.timezone.utc).isoformat()
    event = {"event_id": "e1", "event_time": t, "event_type": "product_view", "anonymous_id": "a", "item_id": "i0",
             SCRIPT: SCRIPT}  # an unknown extra column named like a script
    with open(os.path.join(layout.raw("events", D), "x<script>alert(1).jsonl"), "w") as f:  # no '/' in a name
        f.write(json.dumps(event) + "\n")

    summary = validate.run(spark, cfg, D)
    assert [w["check"] for w in summary["warnings"]] == ["schema_extra_column"]
    assert SCRIPT in summary["warnings"][0]["subject"]  # the JSON report keeps the real names

    pages = glob.glob(os.path.join(layout.reports(D), "**", "*.html"), recursive=True)
    assert len(pages) > 2  # validation.html and the GX data docs
    for page in pages:
        text = open(page, encoding="utf-8").read()
        assert "<script>alert" not in text, page
    main = open(summary["reports"]["html"], encoding="utf-8").read()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in main and "x&lt;script&gt;alert(1).jsonl" in main
    # what GX gets to render is already escaped (not relying on its renderers)
    from quality import suites

    frame = suites.schema_frame([{"ds": D, "dataset": "events", "file": SCRIPT, "column": SCRIPT, "expected": None,
                                  "observed": "json key", "status": "extra_column"}])
    assert frame.loc[0, "file"] == frame.loc[0, "column"] == "&lt;script&gt;alert(1)&lt;/script&gt;"
