"""The data contract, defined once as JSON (`schemas/<name>.json`) and turned into Spark and Arrow schemas.

Each file names its fields with a logical type (`string`, `int`, `double`, `bool`, `timestamp`,
`array<string>`), whether the contract requires them, and an optional enum. Bump `version` whenever a
field changes; the README's changelog says why.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
LOGICAL_TYPES = ("string", "int", "long", "double", "bool", "date", "timestamp", "array<string>", "array<double>",
                 "json")
# `json`: any JSON value, for fields of JSON documents (e.g. `tuning`); it has no Spark or Arrow form


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = False
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Schema:
    name: str
    version: str
    fields: tuple[Field, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"schema {self.name!r} has no field {name!r}")

    def spark(self):
        """pyspark StructType; every field nullable so that bad rows can be read and quarantined."""
        from pyspark.sql import types as T

        simple = {"string": T.StringType(), "int": T.IntegerType(), "long": T.LongType(), "double": T.DoubleType(),
                  "bool": T.BooleanType(), "date": T.DateType(), "timestamp": T.TimestampType(),
                  "array<string>": T.ArrayType(T.StringType()), "array<double>": T.ArrayType(T.DoubleType())}
        return T.StructType([T.StructField(f.name, simple[f.type], True) for f in self.fields])

    def arrow(self):
        import pyarrow as pa

        simple = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(), "double": pa.float64(),
                  "bool": pa.bool_(), "date": pa.date32(),
                  "timestamp": pa.timestamp("us", tz="UTC"), "array<string>": pa.list_(pa.string()),
                  "array<double>": pa.list_(pa.float64())}
        return pa.schema([pa.field(f.name, simple[f.type], nullable=True) for f in self.fields])


@cache
def load(name: str) -> Schema:
    path = SCHEMA_DIR / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in SCHEMA_DIR.glob("*.json"))
        raise KeyError(f"no schema {name!r}; known: {known}")
    raw = json.loads(path.read_text())
    fields = []
    for f in raw["fields"]:
        if f["type"] not in LOGICAL_TYPES:
            raise ValueError(f"{path}: field {f['name']!r} has type {f['type']!r}; allowed: {LOGICAL_TYPES}")
        fields.append(Field(f["name"], f["type"], bool(f.get("required", False)),
                            tuple(f["enum"]) if f.get("enum") else None))
    return Schema(raw["name"], raw["version"], tuple(fields))


def names() -> list[str]:
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.json"))
