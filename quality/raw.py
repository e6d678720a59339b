"""Finding, inspecting and permissively reading the raw contract inputs.

A raw day folder (`raw/<dataset>/dt=D/`) holds Parquet files (`*.parquet`) or JSON Lines
(`*.jsonl`, `*.jsonl.gz`). Each Parquet file's schema is read from its footer with pyarrow (cheap, no
Spark job); a file that is not Parquet becomes an `unreadable_file` finding that names it instead of
a stack trace. Files with the same physical schema are read by Spark in one scan with an explicit
schema, and every contract column is brought to its contract type: a compatible type is cast, an
incompatible one is read as text and parsed value by value, so a bad value becomes a `bad_type:<field>`
reason on its row instead of a crash. JSON Lines are read as text for the same reason.
"""
from __future__ import annotations

import gzip
import json
import logging
import posixpath
from dataclasses import dataclass, field

import fsspec
from pyspark.sql import DataFrame, SparkSession, functions as F, types as T

from quality import rules
from quality.normalize import clean, compatible, is_naive, normalize
from schemas import load

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet",)
JSON_SUFFIXES = (".jsonl", ".jsonl.gz")
NANOS_AS_LONG = "spark.sql.legacy.parquet.nanosAsLong"



@dataclass(frozen=True)
class RawFile:
    """One raw file: where it is, which day it belongs to, and what identifies its version."""

    dataset: str
    ds: str
    path: str
    fmt: str  # "parquet" | "json"
    size: int
    mtime: str

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    def stamp(self) -> dict:
        """Name, size and modification time: what the idempotency marker compares."""
        return {"name": self.name, "size": self.size, "mtime": self.mtime}


@dataclass
class InspectedFile:
    """A raw file after its schema was looked at."""

    file: RawFile
    arrow_types: dict | None = None  # column -> pyarrow type (Parquet only)
    json_keys: list[str] | None = None  # keys of the first record (JSON only)
    error: str | None = None  # set when the file cannot be read at all
    findings: list[dict] = field(default_factory=list)


def list_raw_files(root: str, dataset: str, ds: str) -> list[RawFile]:
    """The data files of the day folder `root` (`raw/<dataset>/dt=<ds>/`), sorted by path.

    Hidden and `_` files are skipped; `root` is a local path or any fsspec URI.
    """
    fs, p = fsspec.core.url_to_fs(root)
    if not fs.exists(p):
        return []
    out = []
    prefix = root[: len(root) - len(p)] if root.endswith(p) else ""
    for path, info in sorted(fs.find(p, detail=True).items()):
        name = posixpath.basename(path)
        if name.startswith(("_", ".")) or info.get("type") == "directory":
            continue
        if name.endswith(PARQUET_SUFFIXES):
            fmt = "parquet"
        elif name.endswith(JSON_SUFFIXES):
            fmt = "json"
        else:
            log.warning("ignoring %s: not *.parquet, *.jsonl or *.jsonl.gz", path)
            continue
        mtime = info.get("mtime", info.get("LastModified", info.get("last_modified", info.get("updated", ""))))
        out.append(RawFile(dataset, ds, prefix + path if prefix and not path.startswith(prefix) else path,
                           fmt, int(info.get("size") or 0), str(mtime)))
    return out


def _arrow_to_spark(at):
    """(spark type, is_nanos) for a pyarrow type as Spark's Parquet reader will see it; None if unknown."""
    import pyarrow as pa

    if pa.types.is_dictionary(at):
        at = at.value_type
    if pa.types.is_null(at):
        return None  # a column of nulls only (pandas/pyarrow write an all-None column so): read as absent
    if pa.types.is_string(at) or pa.types.is_large_string(at):
        return T.StringType(), False
    simple = [(pa.types.is_int8, T.ByteType()), (pa.types.is_int16, T.ShortType()), (pa.types.is_int32, T.IntegerType()),
              (pa.types.is_int64, T.LongType()), (pa.types.is_uint8, T.ShortType()), (pa.types.is_uint16, T.IntegerType()),
              (pa.types.is_uint32, T.LongType()), (pa.types.is_float32, T.FloatType()),
              (pa.types.is_float64, T.DoubleType()),
              (pa.types.is_boolean, T.BooleanType()), (pa.types.is_date32, T.DateType()),
              (pa.types.is_binary, T.BinaryType()), (pa.types.is_large_binary, T.BinaryType())]
    for test, st in simple:
        if test(at):
            return st, False
    if pa.types.is_decimal(at) and at.precision <= 38:
        return T.DecimalType(at.precision, at.scale), False
    if pa.types.is_timestamp(at):
        if at.unit == "ns":
            return T.LongType(), True
        return (T.TimestampType() if at.tz else T.TimestampNTZType()), False
    if (pa.types.is_list(at) or pa.types.is_large_list(at)) and (
            pa.types.is_string(at.value_type) or pa.types.is_large_string(at.value_type)):
        return T.ArrayType(T.StringType()), False
    return None


def _needed_columns(f: RawFile, fs, path: str, arrow_types: dict) -> set[str]:
    """Columns this Parquet file must have: the always-required ones, and a conditionally required one
    (events: `price` for purchases, ...) only when the file holds an event type that needs it."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = load(f.dataset)
    needed = set(schema.required)
    if f.dataset != "events":
        return needed
    absent = [c for c in rules.EVENT_CONDITIONAL_REQUIRED if c not in arrow_types]
    if not absent or "event_type" not in arrow_types:
        return needed
    with fs.open(path, "rb") as fh:  # one column of a file that lacks a conditional column: cheap
        types = {str(t) for t in pc.unique(pq.read_table(fh, columns=["event_type"]).column(0).cast("string"))
                 .to_pylist() if t is not None}
    return needed | {c for c in absent if types & set(rules.EVENT_CONDITIONAL_REQUIRED[c])}


def _column_status(name: str, expected: str, at, needed: set[str]) -> str:
    """`ok`, `absent` (an optional column left out, or nulls only), `missing_required`, `text` (a text column
    for a typed field: parsed value by value, an unparsable value is a row reason) or `wrong_type`."""
    import pyarrow as pa

    if at is None or pa.types.is_null(at):
        return "missing_required" if name in needed else "absent"
    mapped = _arrow_to_spark(at)
    if mapped is None:
        return "wrong_type"
    if compatible(expected, mapped):
        return "ok"
    if isinstance(mapped[0], T.StringType):
        return "text"
    return "wrong_type"


def inspect_files(files: list[RawFile]) -> list[InspectedFile]:
    """Reads each file's schema (Parquet footer, or the first JSON record) and records schema findings.

    Findings are dicts `{ds, dataset, file, column, expected, observed, status}` with status one of
    `ok`, `absent` (an optional column left out: read as null), `text` (a text column for a typed
    field: parsed value by value, like JSON), `missing_required` (always required, or conditionally
    required and the file holds an event type that needs it), `wrong_type`, `extra_column`,
    `unreadable_file`.
    """
    import pyarrow.parquet as pq

    out = []
    for f in files:
        schema = load(f.dataset)
        ins = InspectedFile(f)
        fs, p = fsspec.core.url_to_fs(f.path)
        try:
            if f.fmt == "parquet":
                with fs.open(p, "rb") as fh:
                    arrow_schema = pq.read_schema(fh)
                ins.arrow_types = {n: arrow_schema.field(n).type for n in arrow_schema.names}
            else:
                with fs.open(p, "rb") as fh:
                    stream = gzip.open(fh, "rt") if f.path.endswith(".gz") else (line.decode() for line in fh)
                    first = next((ln for ln in stream if ln.strip()), None)
                if first is not None:
                    try:
                        rec = json.loads(first)
                        ins.json_keys = list(rec) if isinstance(rec, dict) else None
                    except ValueError:
                        ins.json_keys = None  # a malformed line is a row-level finding
        except Exception as e:  # noqa: BLE001 - any failure to open/parse means the file is unusable
            kind = "Parquet" if f.fmt == "parquet" else "JSON Lines"
            ins.error = f"{f.path} is not a readable {kind} file ({type(e).__name__}: {e})"
            ins.findings.append(dict(ds=f.ds, dataset=f.dataset, file=f.path, column=None, expected=kind,
                                     observed=f"{type(e).__name__}: {str(e)[:200]}", status="unreadable_file"))
            out.append(ins)
            continue
        if ins.arrow_types is not None:
            needed = _needed_columns(f, fs, p, ins.arrow_types)
            for fld in schema.fields:
                at = ins.arrow_types.get(fld.name)
                status = _column_status(fld.name, fld.type, at, needed)
                ins.findings.append(dict(ds=f.ds, dataset=f.dataset, file=f.path, column=fld.name, expected=fld.type,
                                         observed=None if at is None else str(at), status=status))
            extra = [n for n in ins.arrow_types if n not in schema.names]
        else:
            # JSON writers leave out null fields, so a key missing from the first record says nothing;
            # a column missing from a whole day shows up as `column_all_null` in the day's metrics
            extra = [k for k in (ins.json_keys or []) if k not in schema.names]
        for n in extra:
            ins.findings.append(dict(ds=f.ds, dataset=f.dataset, file=f.path, column=n, expected=None,
                                     observed=str(ins.arrow_types[n]) if ins.arrow_types else "json key",
                                     status="extra_column"))
        out.append(ins)
    return out


def needs_nanos_as_long(inspected: list[InspectedFile]) -> bool:
    """True when a Parquet file holds nanosecond timestamps (Spark reads them only as longs)."""
    for ins in inspected:
        for at in (ins.arrow_types or {}).values():
            mapped = _arrow_to_spark(at)
            if mapped and mapped[1]:
                return True
    return False


# an explicit zone after the time of day: `Z`, `+02:00`, `-0500`, `+02`, ` UTC`, `GMT`
def _group_key(ins: InspectedFile):
    if ins.file.fmt == "json":
        return ("json",)
    return ("parquet",) + tuple(sorted((n, str(t)) for n, t in ins.arrow_types.items()))


def read_normalized(spark: SparkSession, inspected: list[InspectedFile], dataset: str) -> DataFrame | None:
    """One DataFrame of all readable files: contract columns typed, plus `dt` and the internal columns.

    Identifiers are trimmed (blank = null), `email_hash` trimmed and lower-cased; a timestamp without
    zone (Parquet TIMESTAMP_NTZ, text without offset) is read as UTC and flagged in `_naive_time`; text
    with an offset is converted to UTC.

    Internal columns (see `quality.rules`): `_type_errors` (array of field names), `_raw`
    (map field -> raw text of those fields; null when there is none), `_malformed` (a JSON line that
    did not parse),
    `_source_file`, `_source_pos`. Returns None when no file is readable.
    """
    schema = load(dataset)
    groups: dict[tuple, list[InspectedFile]] = {}
    for ins in inspected:
        if ins.error is None:
            groups.setdefault(_group_key(ins), []).append(ins)
    frames = []
    for key, members in sorted(groups.items(), key=lambda kv: kv[0]):
        paths = [m.file.path for m in members]
        if key[0] == "json":
            read_schema = T.StructType([T.StructField(f.name, T.StringType()) for f in schema.fields]
                                       + [T.StructField("_corrupt_record", T.StringType())])
            df = (spark.read.schema(read_schema).option("mode", "PERMISSIVE")
                  .option("columnNameOfCorruptRecord", "_corrupt_record").json(paths))
            present = {f.name: "json" for f in schema.fields}
            malformed = F.col("_corrupt_record").isNotNull()
            pos = F.monotonically_increasing_id()
        else:
            arrow_types = members[0].arrow_types
            mapped = {n: _arrow_to_spark(t) for n, t in arrow_types.items() if n in schema.names}
            usable = {n: m for n, m in mapped.items() if m is not None}
            read_schema = T.StructType([T.StructField(n, m[0]) for n, m in usable.items()])
            df = spark.read.schema(read_schema).parquet(*paths)
            # a column of a type Spark cannot read is treated as absent; the schema finding says wrong_type
            present = {f.name: usable.get(f.name) for f in schema.fields}
            malformed = F.lit(False)
            pos = F.col("_metadata.row_index")
        typed, raws, naive = [], [], []
        for f in schema.fields:
            value, raw = normalize(f.name, f.type, present[f.name])
            typed.append(clean(dataset, f.name, value).alias(f.name))
            if raw is not None:
                raws.append((f.name, raw, value))  # a type error: text that did not parse (before trimming)
            naive_flag = is_naive(f.name, f.type, present[f.name])
            if naive_flag is not None:
                naive.append(F.coalesce(naive_flag, F.lit(False)))
        no_errors = F.array().cast("array<string>")
        if raws:
            # joined and split rather than filtered with a lambda: this runs on every row, and lambdas
            # (array_compact, map_filter) are interpreted instead of code-generated
            joined = F.concat_ws(",", *[F.when(raw.isNotNull() & value.isNull(), F.lit(n)) for n, raw, value in raws])
            errors = F.when(joined == "", no_errors).otherwise(F.split(joined, ","))
            raw_map = F.when(joined != "", F.create_map(*[x for n, raw, value in raws
                                                          for x in (F.lit(n), F.when(value.isNull(), raw))]))
        else:
            errors = no_errors
            raw_map = F.lit(None).cast("map<string,string>")
        path = F.col("_metadata.file_path")
        frames.append(df.select(
            *typed,
            # the day from `.../dt=YYYY-MM-DD/...` (string functions: a regex per row costs more)
            F.substring_index(F.substring_index(path, "dt=", -1), "/", 1).alias(rules.DT),
            errors.alias(rules.TYPE_ERRORS), raw_map.alias(rules.RAW), malformed.alias(rules.MALFORMED),
            (F.greatest(*naive) if len(naive) > 1 else naive[0] if naive else F.lit(False)).alias(rules.NAIVE_TIME),
            path.alias(rules.SOURCE_FILE), pos.cast("long").alias(rules.SOURCE_POS)))
    if not frames:
        return None
    out = frames[0]
    for fr in frames[1:]:
        out = out.unionByName(fr)
    return out


def unreadable_quarantine_rows(inspected: list[InspectedFile]) -> list[dict]:
    """Quarantine rows (contract `quarantine` schema plus `dt`) for whole files that could not be read."""
    return [dict(dataset=i.file.dataset, reasons=[rules.UNREADABLE_FILE],
                 row_json=json.dumps({"_file": i.file.path, "error": i.error}), event_id=None, item_id=None,
                 dt=i.file.ds)
            for i in inspected if i.error is not None]
