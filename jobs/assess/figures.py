"""What the raw inputs hold, area by area: pure functions from DataFrames to small figure dicts.

Every big table stays in Spark; what reaches the driver is an aggregate bounded by days x platforms x event
types (a few thousand rows at most) or a handful of numbers, so the same code runs on a cluster.

Platforms are the contract's `device_type` values; `desktop` and `mobile_web` are the web, `ios` and
`android` the apps, and events without a device type count under `unknown`.
"""
from __future__ import annotations

import datetime as dt
import statistics

import pandas as pd
from pyspark.sql import DataFrame, functions as F

from jobs.assess.read import DAY

UNKNOWN_PLATFORM = "unknown"
PLATFORM_FAMILY = {"desktop": "web", "mobile_web": "web", "ios": "app", "android": "app"}
COUNT_BUCKETS = ((0, 0), (1, 1), (2, 2), (3, 5), (6, 10), (11, None))  # for the per-user histograms


def _platform() -> F.Column:
    return F.coalesce(F.col("device_type"), F.lit(UNKNOWN_PLATFORM))


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _days_between(a: str, b: str) -> int:
    return (dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days


def daily_volume(events: DataFrame) -> pd.DataFrame:
    """Events per day, platform and event type (with how many carry a user_id): a small frame, one row each."""
    rows = (events.groupBy(F.col(DAY).alias("day"), _platform().alias("platform"), "event_type")
            .agg(F.count(F.lit(1)).alias("events"), F.count("user_id").alias("logged_in")).toPandas())
    return rows.astype({"day": object, "platform": object, "event_type": object, "events": "int64",
                        "logged_in": "int64"}).sort_values(["day", "platform", "event_type"], ignore_index=True)


def history_figures(daily: pd.DataFrame, *, min_gap_days: int = 2) -> dict:
    """Days covered, days with events, the gaps (runs of days without any event) and events per day."""
    if daily.empty:
        return {"events": 0, "first_day": None, "last_day": None, "span_days": 0, "days_with_events": 0,
                "active_day_share": None, "longest_gap_days": 0, "gaps": [], "events_per_day": {}}
    per_day = daily.groupby("day")["events"].sum().sort_index()
    days = list(per_day.index)
    first, last = days[0], days[-1]
    span = _days_between(first, last) + 1
    gaps = []
    for a, b in zip(days, days[1:]):
        missing = _days_between(a, b) - 1
        if missing >= 1:
            start = (dt.date.fromisoformat(a) + dt.timedelta(days=1)).isoformat()
            end = (dt.date.fromisoformat(b) - dt.timedelta(days=1)).isoformat()
            gaps.append({"from": start, "to": end, "days": missing})
    gaps.sort(key=lambda g: (-g["days"], g["from"]))
    return {"events": int(per_day.sum()), "first_day": first, "last_day": last, "span_days": span,
            "days_with_events": len(days), "active_day_share": len(days) / span,
            "longest_gap_days": gaps[0]["days"] if gaps else 0,
            "gaps": [g for g in gaps if g["days"] >= min_gap_days][:10],
            "days_without_events": sum(g["days"] for g in gaps),
            "events_per_day": {d: int(v) for d, v in per_day.items()}}


def _buckets(column: str) -> list[F.Column]:
    return [F.sum(F.when((F.col(column) >= lo) & (F.col(column) <= (hi if hi is not None else 1 << 62)), 1)
                  .otherwise(0)).alias(f"{column}_{_bucket_label(lo, hi)}") for lo, hi in COUNT_BUCKETS if lo > 0]


def _bucket_label(lo: int, hi: int | None) -> str:
    return f"{lo}+" if hi is None else str(lo) if lo == hi else f"{lo}-{hi}"


def user_figures(events: DataFrame, *, min_purchases: int) -> dict:
    """Per user_id, in one pass: its orders (distinct `order_id`; a purchase without one counts alone) and its
    devices (distinct anonymous_ids); summed up as counts, means, quantiles and histograms."""
    per_user = (events.where(F.col("user_id").isNotNull()).groupBy("user_id").agg(
        F.countDistinct(F.when(F.col("event_type") == "purchase", F.coalesce("order_id", "event_id"))).alias("orders"),
        F.countDistinct("anonymous_id").alias("devices")))
    r = per_user.agg(F.count(F.lit(1)).alias("users"), F.sum((F.col("orders") > 0).cast("int")).alias("buyers"),
                     F.sum((F.col("orders") >= min_purchases).cast("int")).alias("repeat"),
                     F.avg("devices").alias("mean"), F.percentile_approx("devices", 0.5).alias("median"),
                     F.percentile_approx("devices", 0.9).alias("p90"), F.max("devices").alias("max"),
                     *_buckets("orders"), *_buckets("devices")).first().asDict()
    labels = [_bucket_label(lo, hi) for lo, hi in COUNT_BUCKETS if lo > 0]
    users = int(r["users"])
    return {"users": users, "buyers": int(r["buyers"] or 0), "users_with_min_purchases": int(r["repeat"] or 0),
            "orders_per_user": {"0": users - int(r["buyers"] or 0),
                                **{b: int(r[f"orders_{b}"] or 0) for b in labels}},
            "devices_per_user": {"mean": float(r["mean"]) if r["mean"] is not None else None, "median": r["median"],
                                 "p90": r["p90"], "max": r["max"],
                                 "histogram": {b: int(r[f"devices_{b}"] or 0) for b in labels}}}


def anonymous_figures(events: DataFrame) -> dict:
    """Per anonymous_id, in one pass: whether it is ever seen with a user_id, on how many days, and its purchases
    without a user_id; summed up. A purchase is *untied* when it has no user_id and its anonymous_id never logs
    in and is seen on one day only (a one-off id, e.g. a guest checkout); an anonymous id that comes back on
    another day is an anonymous shopper the pipeline can still follow."""
    purchase = F.col("event_type") == "purchase"
    per_anon = events.groupBy("anonymous_id").agg(
        F.max(F.col("user_id").isNotNull().cast("int")).alias("logged"), F.countDistinct(DAY).alias("days"),
        F.sum(purchase.cast("int")).alias("purchases"),
        F.sum((purchase & F.col("user_id").isNull()).cast("int")).alias("anonymous_purchases"))
    one_off = (F.col("logged") == 0) & (F.col("days") == 1)
    r = per_anon.agg(F.count(F.lit(1)).alias("ids"), F.sum("logged").alias("logged"),
                     F.sum(one_off.cast("int")).alias("one_off"), F.sum("purchases").alias("purchases"),
                     F.sum("anonymous_purchases").alias("anonymous_purchases"),
                     F.sum(F.when(one_off, F.col("anonymous_purchases")).otherwise(0)).alias("untied")).first()
    return {k: int(r[k] or 0) for k in ("ids", "logged", "one_off", "purchases", "anonymous_purchases", "untied")}


def people_figures(users: dict, anonymous: dict, daily: pd.DataFrame, *, min_purchases: int,
                   purchases_are_orders: bool) -> dict:
    """Users (user_ids), users with at least `min_purchases` orders, and the share of events from logged-in
    users. When the purchase events are not orders (ratings sent as purchases), nobody counts as a buyer."""
    buyers = users["buyers"] if purchases_are_orders else 0
    histogram = dict(users["orders_per_user"]) if purchases_are_orders else {"0": users["users"]}
    return {"users": users["users"], "anonymous_ids": anonymous["ids"], "buyers": buyers,
            "min_purchases": min_purchases,
            "users_with_min_purchases": users["users_with_min_purchases"] if purchases_are_orders else 0,
            "logged_in_share": _share(int(daily["logged_in"].sum()), int(daily["events"].sum())),
            "orders_per_user": histogram, "purchases_are_orders": purchases_are_orders}


def identity_figures(users: dict, anonymous: dict) -> dict:
    """How fragmented identities are: devices per user, anonymous ids that ever log in, untied purchases."""
    ids, purchases = anonymous["ids"], anonymous["purchases"]
    return {"anonymous_ids": ids, "anonymous_ids_logged_in": anonymous["logged"],
            "anonymous_login_share": _share(anonymous["logged"], ids),
            "one_off_anonymous_ids": anonymous["one_off"], "users": users["users"],
            "devices_per_user": users["devices_per_user"], "purchases": purchases,
            "anonymous_purchases": anonymous["anonymous_purchases"], "untied_purchases": anonymous["untied"],
            "untied_purchase_share": _share(anonymous["untied"], purchases)}


def _has_value(name: str, dtype: str) -> F.Column:
    col = F.col(name)
    if name == "price":
        return col.isNotNull() & (col > 0)
    if dtype == "string":
        return col.isNotNull() & (F.trim(col) != "")
    return col.isNotNull()


def catalog_figures(catalogs: DataFrame | None, events: DataFrame | None, *, attributes: tuple[str, ...],
                    trend_days: int) -> dict:
    """Attribute coverage (share of items with a value) per snapshot and in the latest one, how each attribute's
    coverage moved over `trend_days`, and the latest catalog's items that no event ever touched."""
    if catalogs is None:
        return {"snapshots": 0, "items": 0, "coverage": {}, "trend": {}, "coverage_by_day": {},
                "items_without_interactions": None, "items_without_interactions_share": None}
    types = dict(catalogs.dtypes)
    unknown = [a for a in attributes if a not in types]
    if unknown:
        raise ValueError(f"assess.catalog_attributes: {unknown} not in the catalog contract ({sorted(types)})")
    per_day = (catalogs.groupBy(DAY).agg(F.countDistinct("item_id").alias("items"),
                                         *[F.countDistinct(F.when(_has_value(a, types[a]), F.col("item_id")))
                                           .alias(a) for a in attributes]).toPandas()
               .astype({DAY: object}).sort_values(DAY, ignore_index=True))
    by_day = {r[DAY]: {"items": int(r["items"]), **{a: _share(int(r[a]), int(r["items"])) for a in attributes}}
              for _, r in per_day.iterrows()}
    days = sorted(by_day)
    latest = days[-1]
    earlier = [d for d in days if _days_between(d, latest) >= trend_days]
    base = earlier[-1] if earlier else days[0]
    trend = {a: {"from_day": base, "from": by_day[base][a], "to": by_day[latest][a],
                 "change": (by_day[latest][a] or 0.0) - (by_day[base][a] or 0.0),
                 "peak": max((by_day[d][a] or 0.0) for d in days)} for a in attributes}
    latest_items = catalogs.where(F.col(DAY) == latest).select("item_id").distinct()
    n_items = by_day[latest]["items"]
    if events is not None:
        touched = events.where(F.col("item_id").isNotNull()).select("item_id").distinct()
        idle = latest_items.join(touched, on="item_id", how="left_anti").count()
    else:
        idle = n_items
    return {"snapshots": len(days), "latest_day": latest, "items": n_items,
            "coverage": {a: by_day[latest][a] for a in attributes}, "trend": trend, "coverage_by_day": by_day,
            "items_without_interactions": idle, "items_without_interactions_share": _share(idle, n_items)}


MIN_PRICED_PURCHASES = 100  # fewer priced purchases say nothing about whether they are orders


def purchase_price_figures(events: DataFrame, *, max_mode_share: float) -> dict:
    """How many purchases carry a price and the share of the most common price. Purchases of which more than
    `max_mode_share` carry one price are not orders (ratings or another signal sent as purchases, as in an
    imported MovieLens): `are_orders` false; judged from `MIN_PRICED_PURCHASES` priced purchases."""
    per_price = (events.where((F.col("event_type") == "purchase") & F.col("price").isNotNull())
                 .groupBy("price").count())
    r = per_price.agg(F.sum("count").alias("n"), F.max_by("price", "count").alias("price"),
                      F.max("count").alias("top")).first()
    n = int(r["n"] or 0)
    share = _share(int(r["top"]), n) if n else None
    judged = n >= MIN_PRICED_PURCHASES
    return {"priced_purchases": n, "most_common_price": float(r["price"]) if n else None,
            "most_common_price_share": share, "judged": judged,
            "are_orders": not (judged and share > max_mode_share)}


def _rates(frame: pd.DataFrame) -> dict:
    views = int(frame.loc[frame.event_type == "product_view", "events"].sum())
    purchases = int(frame.loc[frame.event_type == "purchase", "events"].sum())
    searches = int(frame.loc[frame.event_type == "search", "events"].sum())
    return {"events": int(frame["events"].sum()), "product_views": views, "purchases": purchases,
            "searches": searches, "views_per_purchase": views / purchases if purchases else None}


def _wide(daily: pd.DataFrame) -> pd.DataFrame:
    """Events per shop day (rows) and (platform, event type) (columns), zeros filled."""
    return daily.pivot_table(index="day", columns=["platform", "event_type"], values="events", aggfunc="sum",
                             fill_value=0).reindex(sorted(daily["day"].unique()), fill_value=0)


def platform_drops(daily: pd.DataFrame, *, drop_ratio: float, baseline_days: int, min_history_days: int,
                   min_daily_events: int) -> list[dict]:
    """Days on which a platform's share of one event type (its count / every platform's count of that type that
    day) fell below `drop_ratio` x its median share over the `baseline_days` shop days before.

    Shares across platforms, not counts: a quiet day for the whole shop (a holiday, a sale ending, bursty
    returns) moves every platform alike and is no collection gap; with one platform nothing can be compared
    (days without events are history's gaps). A series is judged once it has `min_history_days` days of
    baseline and a median of at least `min_daily_events` events a day."""
    if daily.empty:
        return []
    wide = _wide(daily)
    type_totals = wide.T.groupby(level="event_type").sum().T  # per day and event type, every platform
    out = []
    for key in wide.columns:
        count = wide[key]
        total = type_totals[key[1]]
        share = (count / total).where(total > 0)
        base_count = count.shift(1).rolling(baseline_days, min_periods=min_history_days).median()
        base_share = share.shift(1).rolling(baseline_days, min_periods=min_history_days).median()
        low = (base_count >= min_daily_events) & (share < drop_ratio * base_share)
        for day in share.index[low.to_numpy()]:
            out.append({"platform": key[0], "event_type": key[1], "day": day, "events": int(count[day]),
                        "share": float(share[day]), "usual_share": float(base_share[day])})
    return out


def stopped_series(daily: pd.DataFrame, *, recent_from: str, min_daily_events: int) -> list[dict]:
    """(platform, event type) pairs sent on a typical day before `recent_from` (median daily count at least
    `min_daily_events`) and not once since: a collector that stopped."""
    if daily.empty:
        return []
    wide = _wide(daily)
    before = wide[wide.index < recent_from]
    after = wide[wide.index >= recent_from]
    if before.empty or after.empty:
        return []
    out = []
    for key in wide.columns:
        if before[key].median() >= min_daily_events and after[key].sum() == 0:
            sent = wide.index[(wide[key] > 0).to_numpy()]
            out.append({"platform": key[0], "event_type": key[1],
                        "last_day": sent[-1] if len(sent) else None, "median_before": float(before[key].median())})
    return out


def collection_figures(events: DataFrame, daily: pd.DataFrame, *, recent_days: int, drop_ratio: float,
                       baseline_days: int, min_history_days: int, min_daily_events: int,
                       min_platform_purchases: int) -> dict:
    """Which event types each platform sends, views per purchase and searches per session by platform over the
    last `recent_days` days, platform parity, and the days on which a platform's volume dropped."""
    if daily.empty:
        return {"platforms": {}, "event_types": [], "device_type_share": None, "recent": {}, "parity": None,
                "drops": [], "drop_days": 0, "stopped": []}
    last = max(daily["day"])
    recent_from = (dt.date.fromisoformat(last) - dt.timedelta(days=recent_days - 1)).isoformat()
    recent = daily[daily["day"] >= recent_from]
    sessions = {r["platform"]: int(r["sessions"]) for r in
                events.where(F.col(DAY) >= recent_from).groupBy(_platform().alias("platform"))
                .agg(F.countDistinct("session_id").alias("sessions")).collect()}
    platforms = {}
    for platform, part in daily.groupby("platform"):
        types = part.groupby("event_type")["events"].sum()
        rates = _rates(recent[recent.platform == platform])
        n_sessions = sessions.get(platform, 0)
        rates["sessions"] = n_sessions
        rates["searches_per_session"] = rates["searches"] / n_sessions if n_sessions else None
        platforms[platform] = {"family": PLATFORM_FAMILY.get(platform, UNKNOWN_PLATFORM),
                               "events": int(part["events"].sum()),
                               "event_types": {t: int(v) for t, v in types.items()}, "recent": rates}
    total = int(daily["events"].sum())
    known = int(daily.loc[daily.platform != UNKNOWN_PLATFORM, "events"].sum())
    overall = _rates(recent)
    n_sessions = sum(sessions.values())
    overall["sessions"] = n_sessions
    overall["searches_per_session"] = overall["searches"] / n_sessions if n_sessions else None
    drops = platform_drops(daily, drop_ratio=drop_ratio, baseline_days=baseline_days,
                           min_history_days=min_history_days, min_daily_events=min_daily_events)
    return {"platforms": platforms, "event_types": sorted(daily["event_type"].unique()),
            "device_type_share": _share(known, total), "recent_from": recent_from, "recent": overall,
            "parity": platform_parity(platforms, min_purchases=min_platform_purchases),
            "drops": drops[:200], "drop_days": len({(d["platform"], d["day"]) for d in drops}),
            "stopped": stopped_series(daily, recent_from=recent_from, min_daily_events=min_daily_events)}


def platform_parity(platforms: dict, *, min_purchases: int) -> dict | None:
    """The platform furthest below the others: for views per purchase and searches per session (recent window),
    each known platform's value over the median of the other known platforms'; the lowest ratio wins.
    None when fewer than two platforms can be compared."""
    worst = None
    for metric in ("views_per_purchase", "searches_per_session"):
        values = {}
        for name, p in platforms.items():
            r = p["recent"]
            if name == UNKNOWN_PLATFORM or r[metric] is None:
                continue
            if metric == "views_per_purchase" and r["purchases"] < min_purchases:
                continue
            values[name] = r[metric]
        for name, value in values.items():
            others = [v for n, v in values.items() if n != name]
            if not others:
                continue
            ref = statistics.median(others)
            if ref <= 0:
                continue
            ratio = value / ref
            if worst is None or ratio < worst["ratio"]:
                worst = {"platform": name, "metric": metric, "value": value, "others_median": ref, "ratio": ratio}
    return worst
