"""Bringing each raw value to its contract type, the same way for Parquet and JSON Lines.

Ids are trimmed (`"SKU1 "` is `"SKU1"`; blank is missing); a timestamp without a zone is read as UTC (or
rejected, by `quality.naive_timestamps`); text with an offset is converted to UTC; numeric text is cast, and
a value that cannot be cast is null plus a `bad_type:<field>` reason on its row, never a crash.
"""
from __future__ import annotations

from pyspark.sql import Column, functions as F, types as T

SPARK_TYPE = {"string": T.StringType(), "int": T.IntegerType(), "double": T.DoubleType(),
               "bool": T.BooleanType(), "timestamp": T.TimestampType(),
               "array<string>": T.ArrayType(T.StringType())}
INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
NUMERIC = INTEGRAL + (T.FloatType, T.DoubleType, T.DecimalType)


_ZONE = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([zZ]|[+-]\d{2}(:?\d{2})?|UTC|GMT|utc|gmt)\s*$"



def compatible(expected: str, spark_type) -> bool:
    """Whether a physical type holds the contract type's values without reinterpretation."""
    if isinstance(spark_type, tuple):  # (type, is_nanos)
        spark_type, nanos = spark_type
        if nanos:
            return expected == "timestamp"
    if expected == "string":
        return isinstance(spark_type, T.StringType)
    if expected in ("int", "double"):
        return isinstance(spark_type, NUMERIC)
    if expected == "bool":
        return isinstance(spark_type, T.BooleanType)
    if expected == "timestamp":
        return isinstance(spark_type, (T.TimestampType, T.TimestampNTZType))
    if expected == "array<string>":
        return isinstance(spark_type, T.ArrayType) and isinstance(spark_type.elementType, T.StringType)
    return False

def _naive_text(raw: Column) -> Column:
    """A textual timestamp without a zone (and not an epoch number)."""
    return raw.isNotNull() & ~raw.rlike(_ZONE) & ~raw.rlike(r"^\s*-?\d+(\.\d+)?\s*$")


def _utc(ntz: Column) -> Column:
    """A timestamp without zone (TIMESTAMP_NTZ) read as UTC, whatever the session's time zone."""
    return F.convert_timezone(F.lit("UTC"), F.current_timezone(), ntz).cast("timestamp")


# identifiers: surrounding whitespace is dropped before any check (`"SKU1 "` is `SKU1`), blank is absent
ID_COLUMNS = {"events": ("event_id", "anonymous_id", "user_id", "session_id", "item_id", "order_id", "category_id"),
              "catalog": ("item_id",), "profiles": ("user_id",)}
_SPACE = " \t\r\n"


def _trimmed(value: Column) -> Column:
    """`value` without surrounding whitespace, blank as null. Trimming copies every value; most ids have
    nothing to trim, so only values that start or end with whitespace are trimmed (byte comparisons,
    no copy): about a third of the cost of the normalising read."""
    edge = None
    for ch in _SPACE:
        e = value.startswith(ch) | value.endswith(ch)
        edge = e if edge is None else edge | e
    trimmed = F.btrim(value, F.lit(_SPACE))
    return F.when(edge, F.when(trimmed != "", trimmed)).when(value != "", value)


def clean(dataset: str, name: str, value: Column) -> Column:
    """Trims identifiers (blank becomes null) and brings `email_hash` to trimmed lower case."""
    if name in ID_COLUMNS.get(dataset, ()):
        return _trimmed(value)
    if name == "email_hash":
        return F.lower(_trimmed(value))
    return value


def is_naive(name: str, logical: str, present) -> Column | None:
    """Whether this column's value is a timestamp without zone, for a file group (None: never)."""
    if logical != "timestamp" or present is None:
        return None
    col = F.col(f"`{name}`")
    if present == "json":
        return _naive_text(col)
    spark_type, nanos = present
    if isinstance(spark_type, T.TimestampNTZType):
        return col.isNotNull()
    if isinstance(spark_type, T.StringType):
        return _naive_text(col)
    return None


def _parse_text(raw: Column, logical: str) -> Column:
    """Contract-typed value from text; null when the text does not hold such a value."""
    if logical == "string":
        return raw
    if logical == "double":
        return raw.try_cast("double")
    if logical == "int":
        d = raw.try_cast("double")
        return F.coalesce(raw.try_cast("int"), F.when(d == F.floor(d), d.try_cast("int")))
    if logical == "bool":
        return raw.try_cast("boolean")
    if logical == "timestamp":
        d = raw.try_cast("double")
        epoch_s = (F.when(F.abs(d) < 1e11, d).when(F.abs(d) < 1e14, d / 1e3).when(F.abs(d) < 1e17, d / 1e6))
        # text without a zone is a naive wall-clock time: read as UTC (never in the session's zone)
        return (F.when(raw.rlike(r"^\s*-?\d+(\.\d+)?\s*$"), F.timestamp_seconds(epoch_s))
                .when(_naive_text(raw), _utc(raw.try_cast("timestamp_ntz")))
                .otherwise(raw.try_cast("timestamp")))
    if logical == "array<string>":
        return F.from_json(raw, T.ArrayType(T.StringType()))
    raise ValueError(f"unknown logical type {logical!r}")


def normalize(name: str, logical: str, present) -> tuple[Column, Column | None]:
    """(typed value, raw text or None) of one contract column for a file group.

    `present` is None (column absent), "json" (text from JSON) or `(spark_type, is_nanos)`.
    The raw text is returned only where a value can fail its type.
    """
    target = SPARK_TYPE[logical]
    col = F.col(f"`{name}`")
    if present is None:
        return F.lit(None).cast(target), None
    if present == "json":
        return _parse_text(col, logical), col
    spark_type, nanos = present
    if nanos and logical == "timestamp":
        return F.timestamp_micros(F.expr(f"`{name}` div 1000")), None
    if logical == "timestamp" and isinstance(spark_type, T.TimestampNTZType):
        return _utc(col), None  # a Parquet timestamp without zone: UTC (`quality.naive_timestamps`)
    if compatible(logical, spark_type):
        if logical == "int":
            # a float column (pandas writes int columns with nulls as float64) must hold whole numbers
            if isinstance(spark_type, (T.ByteType, T.ShortType, T.IntegerType)):
                return col.cast("int"), None  # cannot fail: no raw text to keep (a cast per row saved)
            if isinstance(spark_type, INTEGRAL):
                typed = col.try_cast("int")
            else:
                typed = F.when(col == F.floor(col), col.try_cast("int"))
            return typed, col.try_cast("string")
        return col.cast(target), None
    raw = col.try_cast("string")
    return _parse_text(raw, logical), raw
