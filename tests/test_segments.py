"""Segment keys (jobs/segments.py): one rule in Python, Spark and pandas, and no collisions."""
import pandas as pd
import pytest

from jobs.segments import escape, known_context_keys, lookup_keys, segment_key, segment_keys
from tests.conftest import rows


def test_segment_keys_most_specific_first():
    assert segment_keys(("country", "device_type")) == [["country", "device_type"], ["country"], ["device_type"], []]
    assert lookup_keys(("country", "device_type"), {"country": "DE", "device_type": None}) == ["country=DE", "global"]


def test_values_holding_separators_cannot_collide():
    # unescaped, both would be `country=DE/device_type=ios`
    a = segment_key([("country", "DE/device_type=ios")])
    b = segment_key([("country", "DE"), ("device_type", "ios")])
    assert a != b and a == "country=DE%2Fdevice_type%3Dios"
    assert escape("100%") == "100%25" and escape("%2F") == "%252F"  # an escape in the data stays distinct
    assert len({segment_key([("country", v)]) for v in ("a/b", "a%2Fb", "a=b", "a%3Db")}) == 4


def test_the_gate_keys_known_context_only():
    persons = pd.DataFrame({"country": ["DE", None, "F/R", None], "device_type": ["ios", "android", None, None]})
    keys = known_context_keys(persons, ("country", "device_type"))
    assert keys.tolist()[:3] == ["country=DE/device_type=ios", "device_type=android", "country=F%2FR"]
    assert pd.isna(keys.iloc[3])


def test_a_context_never_sent_keys_nothing():
    persons = pd.DataFrame({"country": [None, None], "device_type": [None, None]})
    assert known_context_keys(persons, ("country", "device_type")).isna().all()


@pytest.mark.spark
def test_spark_and_python_keys_agree(spark):
    from jobs.segments import key_column

    values = [("DE", "ios"), ("a/b=c%", "android"), ("x%2Fy", "desktop")]
    df = spark.createDataFrame(values, "country string, device_type string")
    got = rows(df.select(key_column(["country", "device_type"]).alias("k")))
    assert got == sorted((segment_key([("country", c), ("device_type", d)]),) for c, d in values)


def test_a_dimension_no_row_knows_gives_no_key_part():
    import numpy as np

    # all-null device types read back from Parquet as NaN floats (MovieLens has no devices)
    frame = pd.DataFrame({"country": ["DE", None], "device_type": [np.nan, np.nan]})
    keys = known_context_keys(frame, ("country", "device_type"))
    assert keys.iloc[0] == "country=DE" and pd.isna(keys.iloc[1])
