"""Which values and rows hold one of a person's ids: the one rule every erasure step applies.

A string value holds an id when it
- equals the id (`user_id`, `anonymous_id`, `email_hash`, `person_id`, `subject_id`, `id`, ...),
- equals a typed form `<type>:<id>` (identity state nodes `u:u123`, anchors, key-value keys `person:p-1`), or
- is JSON (starts with `{` or `[`) holding the id as a string (quarantine's copy of the original row).

Columns that name other things (items, events, orders, sessions, experiments) are never compared for equality, so
an item that happens to share an id's spelling is not erased; their JSON copies are still searched.
"""
from __future__ import annotations

import re
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc

NOT_PERSON_COLUMNS = frozenset({
    "item_id", "event_id", "order_id", "session_id", "category_id", "experiment_id", "variant", "event_type",
    "model_version", "run_id", "source", "segment_key", "title", "description", "category_path", "brand", "query",
})
ERASED = "<erased>"
_TYPED = r"^[A-Za-z_]{1,24}:"


class IdMatcher:
    def __init__(self, ids: Iterable[str]):
        self.ids = frozenset(i for i in ids if i)
        if not self.ids:
            raise ValueError("nothing to match: no ids")
        alternation = "|".join(re.escape(i) for i in sorted(self.ids, key=len, reverse=True))
        self._json = rf'"(?:[A-Za-z_]{{1,24}}:)?(?:{alternation})"'  # RE2 and Python alike
        self._json_re = re.compile(self._json)
        self._token_re = re.compile(rf"(?<![A-Za-z0-9_\-])(?:{alternation})(?![A-Za-z0-9_\-])")
        self._value_set = pa.array(sorted(self.ids), pa.string())

    # plain Python values (SQLite, Redis, JSON Lines)
    def value(self, v) -> bool:
        if not isinstance(v, str) or not v:
            return False
        if v in self.ids or re.sub(_TYPED, "", v, count=1) in self.ids:
            return True
        return v[0] in "{[" and self._json_re.search(v) is not None

    def record(self, rec) -> bool:
        """A parsed JSON object/list holds an id in any non-excluded field, at any depth."""
        if isinstance(rec, dict):
            return any((k not in NOT_PERSON_COLUMNS and self.value(v)) or (isinstance(v, (dict, list)) and self.record(v))
                       for k, v in rec.items())
        if isinstance(rec, list):
            return any(self.value(v) or (isinstance(v, (dict, list)) and self.record(v)) for v in rec)
        return self.value(rec)

    def replace_text(self, text: str, replacement: str = ERASED) -> tuple[str, int]:
        """Every id in free text (reports) replaced by `replacement`; (new text, replacements)."""
        return self._token_re.subn(replacement, text)

    # Arrow columns (Parquet)
    def _string_mask(self, arr: pa.Array, equality: bool) -> pa.Array:
        arr = pc.cast(arr, pa.string()) if not pa.types.is_string(arr.type) else arr
        mask = pc.and_(pc.match_substring_regex(arr, r"^[\[{]"), pc.match_substring_regex(arr, self._json))
        if equality:
            untyped = pc.replace_substring_regex(arr, _TYPED, "", max_replacements=1)
            mask = pc.or_(mask, pc.or_(pc.is_in(arr, value_set=self._value_set),
                                       pc.is_in(untyped, value_set=self._value_set)))
        return pc.fill_null(mask, False)

    def column_mask(self, name: str, col: pa.ChunkedArray) -> pa.Array | None:
        """Per row: does column `name` hold an id? None when the column cannot (not text)."""
        t = col.type
        equality = name not in NOT_PERSON_COLUMNS
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
            return self._string_mask(col.combine_chunks(), equality)
        if (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
                pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
            arr = col.combine_chunks()
            flat = arr.flatten()
            if len(flat) == 0:
                return pa.array([False] * len(arr), pa.bool_())
            hit = self._string_mask(flat, equality).to_numpy(zero_copy_only=False)
            parents = pc.list_parent_indices(arr).to_numpy()
            rows = [False] * len(arr)
            for i in parents[hit]:
                rows[i] = True
            return pa.array(rows, pa.bool_())
        return None

    def table_mask(self, table: pa.Table) -> pa.Array | None:
        """Per row of `table`: does any column hold an id? None when no column can."""
        if table.num_rows == 0:
            return None
        mask = None
        for name in table.column_names:
            m = self.column_mask(name, table.column(name))
            if m is not None:
                mask = m if mask is None else pc.or_(mask, m)
        return mask
