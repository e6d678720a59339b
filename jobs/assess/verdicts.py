"""Figures against thresholds: a verdict per check and per area, and the fixes in the order to make them.

Each check compares one figure with a `[ready, usable]` pair from `cfg.assess`: at least as good as `ready`
is *ready*, at least as good as `usable` is *usable with caveats*, worse is *not ready*. An area's verdict is
its worst check's. A figure that cannot be computed (no purchases to divide by, one platform only) is not judged.

The fixes are the checks that are not ready, then those usable with caveats; within each, by area in the order
that matters most to personalization and is in the data team's hands (event collection, identity, catalog, then
people and history, which mostly take time), then by how far the figure misses its ready threshold.
"""
from __future__ import annotations

from jobs.config import AssessConfig

READY, CAVEATS, NOT_READY, NOT_JUDGED = "ready", "usable with caveats", "not ready", "not judged"
RANK = {READY: 0, NOT_JUDGED: 0, CAVEATS: 1, NOT_READY: 2}
AREAS = ("history", "people", "identity", "catalog", "event_collection")
FIX_ORDER = ("event_collection", "identity", "catalog", "people", "history")


def judge(value: float | None, pair: tuple[float, float], *, higher_is_better: bool) -> str:
    if value is None:
        return NOT_JUDGED
    ready, usable = pair
    if higher_is_better:
        return READY if value >= ready else CAVEATS if value >= usable else NOT_READY
    return READY if value <= ready else CAVEATS if value <= usable else NOT_READY


def _check(area: str, name: str, value, pair, *, higher_is_better: bool, fix: str, subject: str | None = None,
           verdict: str | None = None) -> dict:
    op = ">=" if higher_is_better else "<="
    v = verdict or judge(value, pair, higher_is_better=higher_is_better)
    if value is None or pair[0] == 0:
        miss = 0.0
    elif higher_is_better:
        miss = max(0.0, (pair[0] - value) / abs(pair[0]))
    else:
        miss = max(0.0, (value - pair[0]) / abs(pair[0]))
    return {"area": area, "check": name, "subject": subject, "value": value, "verdict": v,
            "ready": f"{op} {_fmt(pair[0])}", "usable": f"{op} {_fmt(pair[1])}", "miss": miss,
            "fix": fix if v in (CAVEATS, NOT_READY) else None}


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.3g}"
    return f"{int(x):,}" if isinstance(x, (int, float)) else str(x)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def history_checks(h: dict, t: AssessConfig) -> list[dict]:
    gap = h["gaps"][0] if h["gaps"] else None
    gap_where = f" ({gap['from']} to {gap['to']})" if gap else ""
    return [
        _check("history", "history_days", h["span_days"], t.history_days, higher_is_better=True,
               fix=f"Only {h['span_days']} days of events ({h['first_day']} to {h['last_day']}); a full seasonal "
                   f"cycle is {_fmt(t.history_days[0])} days: backfill older events (order history, server logs) "
                   f"or keep collecting before relying on seasonal patterns."),
        _check("history", "longest_gap_days", h["longest_gap_days"], t.longest_gap_days, higher_is_better=False,
               fix=f"{h['longest_gap_days']} days in a row without any event{gap_where}: re-deliver those days' "
                   f"raw files if the shop was open."),
        _check("history", "active_day_share", h["active_day_share"], t.active_day_share, higher_is_better=True,
               fix=f"Events on only {_pct(h['active_day_share'])} of the days covered: find the days the collector "
                   f"missed and re-deliver them."),
    ]


def people_checks(p: dict, t: AssessConfig) -> list[dict]:
    fix_buyers = (f"Only {p['users_with_min_purchases']:,} users have at least {p['min_purchases']} purchases "
                  f"(ready at {_fmt(t.users_with_min_purchases[0])}): personal lists will rest on few buyers; send "
                  f"user_id on every purchase and collect longer; popularity and segment lists fill in meanwhile.")
    if not p["purchases_are_orders"]:
        fix_buyers = ("No real purchases: the purchase events are not orders (see event collection), so nobody "
                      "counts as a buyer; send the shop's orders as purchase events.")
    return [
        _check("people", "users_with_min_purchases", p["users_with_min_purchases"], t.users_with_min_purchases,
               higher_is_better=True, fix=fix_buyers),
        _check("people", "logged_in_share", p["logged_in_share"], t.logged_in_share, higher_is_better=True,
               fix=f"Only {_pct(p['logged_in_share'])} of events carry a user_id: send user_id on every event once "
                   f"a shopper is logged in, on web and in the apps."),
    ]


def identity_checks(i: dict, t: AssessConfig) -> list[dict]:
    mean = i["devices_per_user"]["mean"]
    return [
        _check("identity", "devices_per_user", mean, t.devices_per_user, higher_is_better=False,
               fix=f"Users average {_fmt(mean)} anonymous ids each (p90 {i['devices_per_user']['p90']}): the "
                   f"anonymous_id is not kept (a new cookie or app id per session); persist one id per browser "
                   f"and app install."),
        _check("identity", "anonymous_login_share", i["anonymous_login_share"], t.anonymous_login_share,
               higher_is_better=True,
               fix=f"Only {_pct(i['anonymous_login_share'])} of anonymous ids ever log in: send a login event "
                   f"(with email_hash) whenever a shopper signs in, on every platform, so devices can be stitched."),
        _check("identity", "untied_purchase_share", i["untied_purchase_share"], t.untied_purchase_share,
               higher_is_better=False,
               fix=f"{_pct(i['untied_purchase_share'])} of purchases come from one-off anonymous ids that never log "
                   f"in (guest checkouts): send email_hash with guest orders, or the customer's user_id, so they "
                   f"can be tied to a person."),
    ]


def catalog_checks(c: dict, t: AssessConfig) -> list[dict]:
    if not c["snapshots"]:
        return [_check("catalog", "catalog_snapshots", 0, (1, 1), higher_is_better=True,
                       fix="No catalog snapshot: export the catalog daily to raw/catalog/dt=D/.")]
    out = []
    for a, cov in c["coverage"].items():
        out.append(_check("catalog", "attribute_coverage", cov, t.attribute_coverage, higher_is_better=True,
                          subject=a, fix=f"{a} is set on only {_pct(cov)} of the {c['items']:,} catalog items: fill "
                                         f"it in the catalog export (content-based lists and new items need it)."))
    for a, tr in c["trend"].items():
        fall = -tr["change"]
        out.append(_check("catalog", "attribute_coverage_drop", fall, t.attribute_coverage_drop,
                          higher_is_better=False, subject=a,
                          fix=f"{a} coverage fell from {_pct(tr['from'])} ({tr['from_day']}) to {_pct(tr['to'])} "
                              f"({c['latest_day']}): the catalog export is losing it; find the change that "
                              f"dropped it."))
    out.append(_check("catalog", "items_without_interactions_share", c["items_without_interactions_share"],
                      t.items_without_interactions_share, higher_is_better=False,
                      fix=f"{_pct(c['items_without_interactions_share'])} of catalog items never had an event: "
                          f"item views are not tracked everywhere, or the catalog lists dead stock."))
    return out


def collection_checks(e: dict, prices: dict, t: AssessConfig) -> list[dict]:
    out = []
    share = prices["most_common_price_share"]
    if prices["judged"]:
        out.append(_check("event_collection", "purchases_are_orders", share, (t.max_price_mode_share,) * 2,
                          higher_is_better=False, verdict=READY if prices["are_orders"] else NOT_READY,
                          fix=f"{_pct(share)} of purchase events carry the same price "
                              f"({prices['most_common_price']}): they are not orders (ratings or another signal "
                              f"sent as purchases); send real orders with order_id, price and quantity."))
    recent = e.get("recent") or {}
    vpp = recent.get("views_per_purchase")
    no_views = recent.get("purchases", 0) > 0 and not recent.get("product_views")
    out.append(_check("event_collection", "views_per_purchase", 0.0 if no_views else vpp, t.views_per_purchase,
                      higher_is_better=True,
                      fix=(f"No product views at all (event types sent: {', '.join(e.get('event_types', []))}): "
                           f"track product_view on every platform; behaviour between purchases is the main signal."
                           if no_views else
                           f"{_fmt(vpp)} product views per purchase in the last {t.recent_days} days: views are "
                           f"under-collected; track product_view on every product page and app screen.")))
    out.append(_check("event_collection", "device_type_share", e.get("device_type_share"), t.device_type_share,
                      higher_is_better=True,
                      fix=f"Only {_pct(e.get('device_type_share'))} of events carry a device_type: send it "
                          f"(desktop, mobile_web, ios, android) so web and apps can be compared and segmented."))
    parity = e.get("parity")
    if parity:
        metric = parity["metric"].replace("_", " ")
        out.append(_check("event_collection", "platform_parity", parity["ratio"], t.platform_parity,
                          higher_is_better=True, subject=parity["platform"],
                          fix=f"{parity['platform']} sends {_fmt(parity['value'])} {metric} against "
                              f"{_fmt(parity['others_median'])} on the other platforms (last {t.recent_days} "
                              f"days): its collector misses events; compare its tracking plan with the web's."))
    drops = e.get("drops") or []
    stopped = e.get("stopped") or []
    example = (f" (e.g. {stopped[0]['platform']} {stopped[0]['event_type']} stopped after {stopped[0]['last_day']})"
               if stopped else f" (e.g. {drops[0]['platform']} {drops[0]['event_type']} on {drops[0]['day']})"
               if drops else "")
    out.append(_check("event_collection", "platform_drop_days", e.get("drop_days", 0) if e.get("platforms") else None,
                      t.platform_drop_days, higher_is_better=False,
                      verdict=NOT_READY if stopped else None,
                      fix=f"{e.get('drop_days', 0)} platform-days on which an event type fell below "
                          f"{_fmt(t.drop_ratio)} x its usual volume{example}: fix that platform's collector and "
                          f"re-deliver the days."))
    return out


def assess(figures: dict, t: AssessConfig) -> dict:
    """Checks per area, the area verdicts and the ordered fixes, from the figures of `jobs.assess.figures`."""
    checks = {"history": history_checks(figures["history"], t), "people": people_checks(figures["people"], t),
              "identity": identity_checks(figures["identity"], t), "catalog": catalog_checks(figures["catalog"], t),
              "event_collection": collection_checks(figures["event_collection"], figures["purchase_prices"], t)}
    verdicts = {a: max((c["verdict"] for c in checks[a]), key=RANK.get, default=READY) for a in AREAS}
    verdicts = {a: READY if v == NOT_JUDGED else v for a, v in verdicts.items()}
    failing = [c for a in AREAS for c in checks[a] if c["verdict"] in (CAVEATS, NOT_READY)]
    failing.sort(key=lambda c: (-RANK[c["verdict"]], FIX_ORDER.index(c["area"]), -c["miss"]))
    fixes = [{"area": c["area"], "check": c["check"], "subject": c["subject"], "verdict": c["verdict"],
              "fix": c["fix"]} for c in failing]
    return {"verdicts": verdicts, "checks": checks, "fixes": fixes}
