"""Hand-made events for the identity tests (not a test module): one row per dict, read with the contract's schema."""
import datetime as dt

D1 = "2026-03-01"


def ev(event_id, when, anon, user=None, *, session=None, email=None, event_type=None, day=None):
    """One event row as a dict: `when` is 'HH:MM' on `day` (D1 by default)."""
    day = day or D1
    t = dt.datetime.fromisoformat(f"{day}T{when}:00")
    return {"event_id": event_id, "event_time": t, "anonymous_id": anon, "user_id": user, "session_id": session,
            "email_hash": email, "event_type": event_type or ("login" if email else "product_view"),
            "item_id": None if email else "i1"}


def events_df(spark, evs):
    from schemas import load

    schema = load("events").spark()
    return spark.createDataFrame([tuple(e.get(f.name) for f in schema.fields) for e in evs], schema)
