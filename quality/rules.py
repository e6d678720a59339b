"""Row-level checks on the contract inputs, as Spark column expressions.

Each `check_*_rows` function takes a DataFrame with the contract columns plus `dt` (the partition's
day, `YYYY-MM-DD`) and returns the same rows with a `reasons` column (`array<string>`, empty when the
row is good). A reason is a code, optionally followed by `:field` (`null_required:price`,
`bad_type:quantity`). All checks of a row are evaluated together, so a quarantined row carries all of
its reasons. The functions are lazy and do no I/O.

Each is two steps, which the validate stage runs apart so that the raw files are read once: `*_row_reasons`
evaluates every rule that looks at one row (and the broadcast catalog) in one projection, and
`add_repeat_reasons` adds the rules that compare rows (repeated ids, content copies) from a copy of that
output, which the stage persists.

Optional columns that `quality.raw.read_normalized` adds and the checks use when present:
`_type_errors` (fields whose raw value could not be cast to the contract type), `_malformed`
(a JSON line that did not parse), `_raw` (the raw text of the bad fields, kept for the quarantine),
and `_source_file`/`_source_pos` (delivery order: the first delivery of a duplicated id stays good).
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window, functions as F

from schemas import load
from schemas.vocabulary import ITEM_EVENT_TYPES

REASONS = "reasons"
DT = "dt"
TYPE_ERRORS = "_type_errors"
MALFORMED = "_malformed"
RAW = "_raw"
SOURCE_FILE = "_source_file"
SOURCE_POS = "_source_pos"
NAIVE_TIME = "_naive_time"
CONTENT_HASH = "_content_hash"

# reason codes (the generator's ground-truth defect names where they overlap)
NULL_REQUIRED = "null_required"
BAD_TYPE = "bad_type"
MALFORMED_RECORD = "malformed_record"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
UNKNOWN_DEVICE_TYPE = "unknown_device_type"
BAD_PRICE = "bad_price"
BAD_QUANTITY = "bad_quantity"
BAD_MARGIN_RATE = "bad_margin_rate"
OUTSIDE_DAY = "outside_day"
UNKNOWN_ITEM = "unknown_item"
DUPLICATE_EVENT_ID = "duplicate_event_id"
DUPLICATE_ITEM_ID = "duplicate_item_id"
DUPLICATE_USER_ID = "duplicate_user_id"
UNREADABLE_FILE = "unreadable_file"
NAIVE_TIMESTAMP = "naive_timestamp"
EMAIL_HASH_NOT_A_DIGEST = "email_hash_not_a_digest"
DUPLICATE_CONTENT = "duplicate_content"

# personal fields of the quarantined row copy: ids become a short salted hash, free text is masked
PERSONAL_IDS = ("user_id", "anonymous_id", "session_id")
PERSONAL_TEXT = ("email_hash", "query")
MASKED = "<masked>"
_DIGEST = r"^[0-9a-f]{64}$"

EVENT_TYPES = load("events").field("event_type").enum
DEVICE_TYPES = load("events").field("device_type").enum

# The contract's "required for ..." column: field -> event types that must carry it.
EVENT_CONDITIONAL_REQUIRED: dict[str, tuple[str, ...]] = {
    "item_id": ITEM_EVENT_TYPES,
    "category_id": ("category_view",),
    "query": ("search",),
    "quantity": ("add_to_cart", "purchase", "return"),
    "price": ("purchase", "return"),
    "order_id": ("purchase", "return"),
    "experiment_id": ("rec_impression", "rec_click"),
    "variant": ("rec_impression", "rec_click"),
}
# Identifiers where an empty or blank string is as good as missing; free text (query) and the
# experiment fields may legitimately be empty strings.
_BLANK_IS_MISSING = {"event_id", "event_type", "anonymous_id", "item_id", "category_id", "order_id",
                     "title", "category_path", "user_id"}


def reason_code(reason: str) -> str:
    """`null_required:price` -> `null_required`."""
    return reason.split(":", 1)[0]


def required_columns(dataset: str) -> list[str]:
    """Columns a file must have: always required, plus (events) the conditionally required ones."""
    schema = load(dataset)
    extra = list(EVENT_CONDITIONAL_REQUIRED) if dataset == "events" else []
    return [f.name for f in schema.fields if f.required or f.name in extra]


def possible_reasons(dataset: str) -> list[str]:
    """Every reason `check_<dataset>_rows` can give (the per-reason counts are taken over this list)."""
    schema = load(dataset)
    out = [MALFORMED_RECORD, NAIVE_TIMESTAMP] + [f"{BAD_TYPE}:{n}" for n in schema.names]
    out += [f"{NULL_REQUIRED}:{n}" for n in required_columns(dataset)]
    out += {"events": [UNKNOWN_EVENT_TYPE, UNKNOWN_DEVICE_TYPE, BAD_PRICE, BAD_QUANTITY, OUTSIDE_DAY,
                       UNKNOWN_ITEM, DUPLICATE_EVENT_ID, DUPLICATE_CONTENT, EMAIL_HASH_NOT_A_DIGEST],
            "catalog": [BAD_PRICE, BAD_MARGIN_RATE, DUPLICATE_ITEM_ID],
            "profiles": [DUPLICATE_USER_ID]}[dataset]
    return out


def _missing(name: str, columns: list[str]) -> Column:
    """Null (or blank, for identifiers) and not already explained by a type error."""
    c = F.col(name)
    miss = c.isNull()
    if name in _BLANK_IS_MISSING:
        miss = miss | (F.trim(c) == "")
    if TYPE_ERRORS in columns:
        miss = miss & ~F.array_contains(F.col(TYPE_ERRORS), name)
    return miss


def _common_reasons(dataset: str, columns: list[str], naive_timestamps: str = "utc") -> list[tuple[str, Column]]:
    """(reason, condition) pairs for malformed records, `bad_type:<field>` and (with `reject`) timestamps
    without a zone."""
    pairs = []
    if naive_timestamps == "reject" and NAIVE_TIME in columns:
        pairs.append((NAIVE_TIMESTAMP, F.coalesce(F.col(NAIVE_TIME), F.lit(False))))
    if MALFORMED in columns:
        pairs.append((MALFORMED_RECORD, F.coalesce(F.col(MALFORMED), F.lit(False))))
    if TYPE_ERRORS in columns:
        errors = F.col(TYPE_ERRORS)
        pairs += [(f"{BAD_TYPE}:{n}", F.coalesce(F.array_contains(errors, n), F.lit(False))) for n in load(dataset).names]
    return pairs


def _assemble(pairs: list[tuple[str, Column]]) -> Column:
    """The reasons array, sorted: literals joined and split, which code-generates (no per-row lambdas)."""
    joined = F.concat_ws(",", *[F.when(cond, F.lit(reason)) for reason, cond in sorted(pairs, key=lambda p: p[0])])
    return F.when(joined == "", F.array().cast("array<string>")).otherwise(F.split(joined, ","))


def _day_bounds(tolerance_s: float) -> tuple[Column, Column]:
    """[start - tol, next day + tol) of the partition day as instants (independent of the session zone)."""
    day_s = F.unix_date(F.to_date(F.col(DT))).cast("long") * 86400
    return (F.timestamp_seconds(day_s - F.lit(tolerance_s)),
            F.timestamp_seconds(day_s + F.lit(86400 + tolerance_s)))


def _with_delivery_columns(df: DataFrame) -> DataFrame:
    """Makes sure the row key (`_source_file`, `_source_pos`) exists: it orders deliveries and names a row."""
    if SOURCE_FILE not in df.columns:
        df = df.withColumn(SOURCE_FILE, F.lit(""))
    if SOURCE_POS not in df.columns:
        # hand-made frames: creation order (deterministic for a given plan)
        df = df.withColumn(SOURCE_POS, F.monotonically_increasing_id())
    return df


ROW_KEY = (SOURCE_FILE, SOURCE_POS)
# what makes a row a repeat of an earlier one, per dataset (`add_repeat_reasons`)
REPEAT_KEYS = {"events": ["event_id"], "catalog": [DT, "item_id"], "profiles": [DT, "user_id"]}
REPEAT_REASONS = {"events": DUPLICATE_EVENT_ID, "catalog": DUPLICATE_ITEM_ID, "profiles": DUPLICATE_USER_ID}


def repeated_rows(df: DataFrame, *, key: list[str], flag: str) -> DataFrame:
    """The row keys (`_source_file`, `_source_pos`) of every delivery of `key` after the first, with `flag` true.

    Deliveries are ordered by day, then file, then position in the file. Only 64-bit hashes of the key
    are shuffled (counted), the few rows whose hash repeats are ordered exactly with a window: the wide
    rows never move, and the result is small when repeats are a small share of the rows (it is broadcast).
    `df` must have the row key (`_with_delivery_columns`).
    """
    not_null = F.lit(True)
    for k in key:
        not_null = not_null & F.col(k).isNotNull()
    key_hash = F.xxhash64(*[F.col(k) for k in key])
    repeated = (df.where(not_null).groupBy(key_hash.alias("_hash")).count()
                .where(F.col("count") > 1).select("_hash"))
    candidates = df.where(not_null).join(F.broadcast(repeated), key_hash == F.col("_hash"), "left_semi")
    order = Window.partitionBy(*key).orderBy(F.col(DT).cast("string"), *ROW_KEY)
    return (candidates.select(*ROW_KEY, F.row_number().over(order).alias("_delivery"))
            .where(F.col("_delivery") > 1).select(*ROW_KEY, F.lit(True).alias(flag)))


def _with_reasons(df: DataFrame, pairs: list[tuple[str, Column]]) -> DataFrame:
    """`df`'s input columns, the row key and `reasons` from `pairs`: every per-row rule in one projection."""
    df = _with_delivery_columns(df)
    return df.select(*df.columns, _assemble(pairs).alias(REASONS))


def add_repeat_reasons(flagged: DataFrame, *, key: list[str], reason: str,
                       prior_ids: DataFrame | None = None, content_copies: DataFrame | None = None,
                       hold: list | None = None) -> DataFrame:
    """Adds the reasons that compare rows with each other to the output of a `*_row_reasons` function:
    `reason` on every delivery of `key` after the first (and, with `prior_ids`, on an `event_id` published
    before), `duplicate_content` on the later copies in `content_copies`. `reasons` stays sorted.

    The checks read `flagged` twice more (a count of key hashes, then the few repeated rows), so pass a
    persisted copy. With `hold`, the small frame of repeated row keys is persisted and appended to it
    (the caller unpersists it): every job reading the result then reuses it instead of recounting.
    """
    later = repeated_rows(flagged, key=key, flag="_repeat")
    if hold is not None:
        later = later.persist()
        hold.append(later)
    df = flagged.join(F.broadcast(later), on=list(ROW_KEY), how="left")
    repeat = F.coalesce(F.col("_repeat"), F.lit(False))
    if prior_ids is not None:
        seen = prior_ids.select("event_id").distinct().withColumn("_published", F.lit(True))
        df = df.join(F.broadcast(seen), on="event_id", how="left")
        repeat = repeat | F.coalesce(F.col("_published"), F.lit(False))
    extra = [(reason, repeat)]
    if content_copies is not None:
        copies = content_copies.select(DT, CONTENT_HASH, SOURCE_FILE).distinct().withColumn("_copy", F.lit(True))
        df = df.withColumn(CONTENT_HASH, content_hash("events")).join(copies, on=[DT, CONTENT_HASH, SOURCE_FILE],
                                                                       how="left")
        extra.append((DUPLICATE_CONTENT, F.coalesce(F.col("_copy"), F.lit(False))))
    any_extra = extra[0][1]
    for _, cond in extra[1:]:
        any_extra = any_extra | cond
    # only the few repeated rows pay for the merge (sort_array code-generates; array_sort takes a lambda)
    reasons = F.when(any_extra, F.sort_array(F.concat(F.col(REASONS), _assemble(extra)))).otherwise(F.col(REASONS))
    return df.select(*[c for c in flagged.columns if c != REASONS], reasons.alias(REASONS))


def check_event_rows(events: DataFrame, *, catalog_items: DataFrame, late_arrival_hours: float,
                     prior_event_ids: DataFrame | None = None, naive_timestamps: str = "utc",
                     content_copies: DataFrame | None = None) -> DataFrame:
    """Row checks on raw events: `event_row_reasons`, then `add_repeat_reasons` (duplicate ids, content copies).

    Parameters
    ----------
    events : DataFrame
        Contract `events` columns plus `dt` (the partition day), optionally the internal columns of
        `quality.raw.read_normalized`.
    catalog_items : DataFrame
        `(dt, item_id)`: the items of the catalog that applies to events of day `dt`. Broadcast, so it
        must be catalog-sized (items x days).
    late_arrival_hours : float
        How far `event_time` may fall outside its partition's day (on either side).
    prior_event_ids : DataFrame, optional
        `event_id`s already published by earlier runs; a pending event with one of these ids is a
        duplicate delivery. Broadcast: pass only the ids that also occur in `events`.
    naive_timestamps : ``utc`` (a timestamp without zone was read as UTC) or ``reject`` (quarantined
        as `naive_timestamp`).
    content_copies : DataFrame, optional
        `(dt, _content_hash, _source_file)` of later copies under new ids (`content_copies`); those
        rows get `duplicate_content`.

    Returns
    -------
    DataFrame
        The input columns plus `reasons` (`array<string>`, sorted, empty for a good row).
    """
    flagged = event_row_reasons(events, catalog_items=catalog_items, late_arrival_hours=late_arrival_hours,
                                naive_timestamps=naive_timestamps)
    return add_repeat_reasons(flagged, key=REPEAT_KEYS["events"], reason=DUPLICATE_EVENT_ID, prior_ids=prior_event_ids,
                              content_copies=content_copies)


def event_row_reasons(events: DataFrame, *, catalog_items: DataFrame, late_arrival_hours: float,
                      naive_timestamps: str = "utc") -> DataFrame:
    """Every rule of `check_event_rows` that looks at one row (and the broadcast catalog), in one projection.

    Returns the input columns, the row key and `reasons`: all but `duplicate_event_id` and `duplicate_content`,
    which `add_repeat_reasons` adds.
    """
    columns = events.columns
    missing = [c for c in ("event_id", "event_time", "event_type", DT) if c not in columns]
    if missing:
        raise ValueError(f"check_event_rows: events lack column(s) {missing}; have {columns}")
    et = F.col("event_type")
    pairs = _common_reasons("events", columns, naive_timestamps)
    pairs += [(f"{NULL_REQUIRED}:{n}", _missing(n, columns)) for n in load("events").required]
    email = F.col("email_hash")
    pairs.append((EMAIL_HASH_NOT_A_DIGEST, email.isNotNull() & ~email.rlike(_DIGEST)))
    pairs += [(f"{NULL_REQUIRED}:{n}", et.isin(*types) & _missing(n, columns))
              for n, types in EVENT_CONDITIONAL_REQUIRED.items()]
    pairs.append((UNKNOWN_EVENT_TYPE, et.isNotNull() & (F.trim(et) != "") & ~et.isin(*EVENT_TYPES)))
    dev = F.col("device_type")
    pairs.append((UNKNOWN_DEVICE_TYPE, dev.isNotNull() & ~dev.isin(*DEVICE_TYPES)))
    price = F.col("price")
    pairs.append((BAD_PRICE, price.isNotNull() & (F.isnan(price) | (price <= 0) | (price == float("inf")))))
    pairs.append((BAD_QUANTITY, F.col("quantity").isNotNull() & (F.col("quantity") <= 0)))
    lower, upper = _day_bounds(late_arrival_hours * 3600.0)
    ts = F.col("event_time")
    pairs.append((OUTSIDE_DAY, ts.isNotNull() & ((ts < lower) | (ts >= upper))))

    # unknown items: one broadcast row per item with the days whose catalog lists it
    item_days = (catalog_items.where(F.col("item_id").isNotNull())
                 .groupBy("item_id").agg(F.collect_set(F.to_date(F.col(DT))).alias("_catalog_days")))
    df = events.join(F.broadcast(item_days), on="item_id", how="left")
    in_catalog = F.coalesce(F.array_contains(F.col("_catalog_days"), F.to_date(F.col(DT))), F.lit(False))
    pairs.append((UNKNOWN_ITEM, et.isin(*ITEM_EVENT_TYPES) & F.col("item_id").isNotNull()
                  & (F.trim(F.col("item_id")) != "") & ~in_catalog))
    return _with_reasons(df, pairs).select(*columns, *[c for c in ROW_KEY if c not in columns], REASONS)


def check_catalog_rows(catalog: DataFrame, *, naive_timestamps: str = "utc") -> DataFrame:
    """`catalog_row_reasons`, then `add_repeat_reasons` (`duplicate_item_id`)."""
    return add_repeat_reasons(catalog_row_reasons(catalog, naive_timestamps=naive_timestamps),
                              key=REPEAT_KEYS["catalog"], reason=DUPLICATE_ITEM_ID)


def catalog_row_reasons(catalog: DataFrame, *, naive_timestamps: str = "utc") -> DataFrame:
    """Per-row checks on catalog snapshots: required fields, positive price, margin in 0..1 (one row per item
    is `add_repeat_reasons`' part: the second and later rows of an `item_id` on one day get `duplicate_item_id`).

    Parameters
    ----------
    catalog : DataFrame
        Contract `catalog` columns plus `dt`, optionally the internal columns of `read_normalized`.

    Returns
    -------
    DataFrame
        The input columns, the row key and `reasons`.
    """
    columns = catalog.columns
    if DT not in columns or "item_id" not in columns:
        raise ValueError(f"check_catalog_rows: catalog needs columns item_id and dt; have {columns}")
    pairs = _common_reasons("catalog", columns, naive_timestamps)
    pairs += [(f"{NULL_REQUIRED}:{n}", _missing(n, columns)) for n in load("catalog").required]
    price = F.col("price")
    pairs.append((BAD_PRICE, price.isNotNull() & (F.isnan(price) | (price <= 0) | (price == float("inf")))))
    margin = F.col("margin_rate")
    pairs.append((BAD_MARGIN_RATE, margin.isNotNull() & (F.isnan(margin) | (margin < 0) | (margin > 1))))
    return _with_reasons(catalog, pairs)


def check_profile_rows(profiles: DataFrame, *, naive_timestamps: str = "utc") -> DataFrame:
    """`profile_row_reasons`, then `add_repeat_reasons` (`duplicate_user_id`)."""
    return add_repeat_reasons(profile_row_reasons(profiles, naive_timestamps=naive_timestamps),
                              key=REPEAT_KEYS["profiles"], reason=DUPLICATE_USER_ID)


def profile_row_reasons(profiles: DataFrame, *, naive_timestamps: str = "utc") -> DataFrame:
    """Per-row checks on onboarding profiles: `user_id` present (once per day is `add_repeat_reasons`' part).

    Parameters
    ----------
    profiles : DataFrame
        Contract `profiles` columns plus `dt`.

    Returns
    -------
    DataFrame
        The input columns, the row key and `reasons`.
    """
    columns = profiles.columns
    if DT not in columns or "user_id" not in columns:
        raise ValueError(f"check_profile_rows: profiles need columns user_id and dt; have {columns}")
    pairs = _common_reasons("profiles", columns, naive_timestamps)
    pairs += [(f"{NULL_REQUIRED}:{n}", _missing(n, columns)) for n in load("profiles").required]
    return _with_reasons(profiles, pairs)


def content_hash(dataset: str) -> Column:
    """64-bit fingerprint of a row's contract fields except `event_id` (what a re-delivery under new ids
    repeats). Null flags are hashed too: xxhash64 skips nulls, so (null, "x") and ("x", null) would collide."""
    names = [n for n in load(dataset).names if n != "event_id"]
    return F.xxhash64(*[F.col(n) for n in names], *[F.col(n).isNull() for n in names])


def content_twins(events: DataFrame) -> DataFrame:
    """Per content fingerprint and day: the file of its first delivery and how many of its distinct
    event_ids came in other files (`twins`). Rows repeated under the same id (an exact re-delivery) count
    once; repeats within one file never count (two identical views in one second are plausible).

    Returns `(dt, _content_hash, _first_file, ids, twins)` for the fingerprints with twins.
    """
    ids = (events.where(F.col("event_id").isNotNull()).withColumn(CONTENT_HASH, content_hash("events"))
           .groupBy(DT, CONTENT_HASH, "event_id").agg(F.min(SOURCE_FILE).alias("_file")))
    per_file = ids.groupBy(DT, CONTENT_HASH, "_file").agg(F.count(F.lit(1)).alias("n"))
    per_hash = per_file.groupBy(DT, CONTENT_HASH).agg(F.min("_file").alias("_first_file"),
                                                      F.sum("n").alias("ids"), F.min_by("n", "_file").alias("first"))
    return per_hash.withColumn("twins", F.col("ids") - F.col("first")).where(F.col("twins") > 0).drop("first")


def content_copies(events: DataFrame, twins: DataFrame, days: list[str]) -> DataFrame:
    """`(dt, _content_hash, _source_file)` of the later copies (files other than the first) on `days`."""
    files = (events.where(F.col(DT).isin(days)).withColumn(CONTENT_HASH, content_hash("events"))
             .select(DT, CONTENT_HASH, SOURCE_FILE).distinct())
    first = twins.where(F.col(DT).isin(days)).select(DT, CONTENT_HASH, "_first_file")
    return (files.join(first, on=[DT, CONTENT_HASH]).where(F.col(SOURCE_FILE) != F.col("_first_file"))
            .select(DT, CONTENT_HASH, SOURCE_FILE))


def content_duplicates(events: DataFrame, max_share: float) -> tuple[dict[str, int], DataFrame | None]:
    """Content twins per day (one aggregation of 64-bit fingerprints) and, for the days where they make up
    more than `max_share` of the rows (a re-delivery under new ids), the later copies (`content_copies`)."""
    twins = content_twins(events)
    per_day = twins.groupBy(DT).agg(F.sum("twins").alias("twins"))
    totals = events.groupBy(DT).count().join(per_day, on=DT)
    counts = {str(r[DT]): (int(r["twins"]), int(r["count"])) for r in totals.collect()}
    flagged = sorted(d for d, (n, rows) in counts.items() if rows and n / rows > max_share)
    return {d: n for d, (n, _) in counts.items()}, content_copies(events, twins, flagged) if flagged else None


def _personal(name: str, *, keep_personal: bool, salt: str) -> Column:
    """The quarantined copy of a personal field: a salted 12-hex hash (ids) or `<masked>` (email_hash,
    query). An email_hash that is not a digest (e.g. a raw email) is masked even with `keep_personal`."""
    c = F.col(name)
    if name == "email_hash":
        digest = c.rlike(_DIGEST)
        return F.when(c.isNull(), None).when(digest & F.lit(keep_personal), c).otherwise(F.lit(MASKED))
    if keep_personal:
        return c
    if name in PERSONAL_TEXT:
        return F.when(c.isNotNull(), F.lit(MASKED))
    return F.when(c.isNotNull(), F.concat(F.lit("h:"), F.substring(F.sha2(F.concat(F.lit(salt), c), 256), 1, 12)))


def to_quarantine(checked: DataFrame, dataset: str, *, keep: tuple[str, ...] = (), keep_personal: bool = False,
                  salt: str = "") -> DataFrame:
    """The rows with reasons in the contract `quarantine` schema (and `dt` for partitioning).

    `row_json` holds the row as read (typed contract fields), the raw text of fields that failed
    their type (`_raw`) and the source file (`_file`). Personal fields (`PERSONAL_IDS`,
    `PERSONAL_TEXT`) are replaced by a salted hash or `<masked>` unless `keep_personal`. Columns named
    in `keep` are carried along (the validate stage keeps a few for its metrics and the row key).
    """
    names = load(dataset).names
    parts = [_personal(n, keep_personal=keep_personal, salt=salt).alias(n)
             if n in PERSONAL_IDS + PERSONAL_TEXT else F.col(n) for n in names]
    if RAW in checked.columns:
        # only the fields that failed their type (the map holds a null for the others)
        parts.append(F.map_filter(F.col(RAW), lambda k, v: v.isNotNull()).alias("_raw"))
    if SOURCE_FILE in checked.columns:
        parts.append(F.col(SOURCE_FILE).alias("_file"))
    row_json = F.to_json(F.struct(*parts))
    ident = {n: (F.col(n).cast("string") if n in names else F.lit(None).cast("string")) for n in ("event_id", "item_id")}
    return (checked.where(F.size(REASONS) > 0)
            .select(F.lit(dataset).alias("dataset"), F.col(REASONS).alias("reasons"), row_json.alias("row_json"),
                    ident["event_id"].alias("event_id"), ident["item_id"].alias("item_id"), F.col(DT),
                    *[F.col(c) for c in keep if c not in ("event_id", "item_id", DT)]))
