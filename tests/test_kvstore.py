import json
from pathlib import Path

import pytest

from jobs.serving import kvstore

pytestmark = pytest.mark.spark

RECS = [("person", "p1", 1, "i1", 0.9), ("person", "p1", 2, "i2", 0.5),
        ("segment", "global", 1, "i9", 5.0), ("segment", "global", 2, "i8", 4.0),
        ("segment", "country=DE", 1, "i7", 3.0), ("segment", "country=DE/device_type=ios", 1, "i6", 2.0)]
IDS = [("user_id", "u1", "p1"), ("anonymous_id", "a1", "p1")]


def publish(spark, kv_root, recs, run_date="2026-01-01"):
    r = spark.createDataFrame(recs, "subject_type string, subject_id string, rank int, item_id string, score double")
    i = spark.createDataFrame(IDS, "id_type string, id string, person_id string")
    version = kvstore.build_version(spark, r, i, kv_root, meta={"run_date": run_date, "top_n": 2,
                                                                 "segment_dimensions": ["country", "device_type"]})
    kvstore.switch_current(kv_root, version)
    return version


def test_lookup_by_user_anonymous_and_unknown_id(spark, tmp_path):
    kv = str(tmp_path / "kv")
    publish(spark, kv, RECS)
    reader = kvstore.KVReader(kv)
    by_user = reader.lookup("u1")
    assert by_user["person_id"] == "p1" and by_user["source"] == "person"
    assert [x["item_id"] for x in by_user["items"]] == ["i1", "i2"]
    assert reader.lookup("a1")["items"] == by_user["items"]
    assert reader.lookup("nobody")["source"] == "segment:global"
    assert reader.lookup("nobody", country="DE")["source"] == "segment:country=DE"
    assert reader.lookup("nobody", country="DE", device_type="ios")["items"][0]["item_id"] == "i6"
    assert reader.lookup("nobody", country="FR", device_type="ios")["source"] == "segment:global"
    assert len(reader.lookup("nobody", k=1)["items"]) == 1


def test_new_version_switches_atomically_and_keeps_previous(spark, tmp_path):
    kv = str(tmp_path / "kv")
    first = publish(spark, kv, RECS)
    second = publish(spark, kv, [r if r[1] != "p1" or r[2] != 1 else ("person", "p1", 1, "i3", 0.99) for r in RECS],
                     run_date="2026-01-02")
    assert kvstore.current(kv) == {"version": second, "previous": first}
    assert kvstore.KVReader(kv).lookup("u1")["items"][0]["item_id"] == "i3"
    assert kvstore.KVReader(kv, version=first).lookup("u1")["items"][0]["item_id"] == "i1"  # rollback readable


def test_missing_export_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no published key-value version"):
        kvstore.KVReader(str(tmp_path / "kv"))


@pytest.mark.redis
def test_redis_export_answers_like_the_embedded_store_and_switches_atomically(spark, tmp_path, redis_url):
    from jobs.serving import redis_store

    r = spark.createDataFrame(RECS, "subject_type string, subject_id string, rank int, item_id string, score double")
    i = spark.createDataFrame(IDS, "id_type string, id string, person_id string")
    meta = {"run_date": "2026-01-01", "segment_dimensions": ["country", "device_type"]}
    redis_store.build_version(r, i, redis_url, version="v1", meta=meta)
    assert redis_store.live_version(redis_url) is None  # written but not yet live
    redis_store.switch_current(redis_url, "v1")
    kv = str(tmp_path / "kv")
    publish(spark, kv, RECS)
    embedded, served = kvstore.KVReader(kv), redis_store.RedisReader(redis_url)
    for id_, ctx in [("u1", {}), ("a1", {}), ("zz", {"country": "DE", "device_type": "ios"}), ("zz", {})]:
        answer, expected = served.lookup(id_, **ctx), embedded.lookup(id_, **ctx)
        assert answer.pop("version") == "v1" and expected.pop("version") == embedded.version
        assert answer == expected
    r2 = spark.createDataFrame([("segment", "global", 1, "i1", 1.0)],
                               "subject_type string, subject_id string, rank int, item_id string, score double")
    redis_store.build_version(r2, i, redis_url, version="v2", meta=meta)
    assert redis_store.switch_current(redis_url, "v2") == {"version": "v2", "previous": "v1"}
    assert redis_store.RedisReader(redis_url).lookup("u1")["source"] == "segment:global"
    assert redis_store.RedisReader(redis_url, version="v1").lookup("u1")["source"] == "person"  # rollback


def test_prune_follows_publish_time_and_keeps_live_previous_and_newest(spark, tmp_path):
    kv = str(tmp_path / "kv")
    yesterday = publish(spark, kv, RECS, run_date="2026-03-09")
    live = publish(spark, kv, RECS, run_date="2026-03-10")
    r = spark.createDataFrame(RECS, "subject_type string, subject_id string, rank int, item_id string, score double")
    i = spark.createDataFrame(IDS, "id_type string, id string, person_id string")
    backfill = kvstore.build_version(spark, r, i, kv, meta={"run_date": "2026-01-01"})  # oldest name, newest build
    assert [v["version"] for v in kvstore.versions(kv)] == [yesterday, live, backfill]
    assert kvstore.prune(kv, keep=1) == []  # live, previous and newest: all protected
    kvstore.switch_current(kv, backfill, reason="test")
    assert kvstore.prune(kv, keep=1) == [yesterday]
    incomplete = Path(kv) / "versions" / "2026-03-11-deadbeef"
    incomplete.mkdir()
    (incomplete / "store.sqlite").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="incomplete"):
        kvstore.switch_current(kv, incomplete.name)
    assert [e["to"] for e in kvstore.switch_log(kv)] == [yesterday, live, backfill]


def test_lookup_carries_the_variant_of_the_list_and_old_versions_read_as_control(spark, tmp_path):
    import sqlite3

    kv = str(tmp_path / "kv")
    recs = [(*r, "margin" if r[0] == "person" else "control") for r in RECS]
    frame = spark.createDataFrame(recs, "subject_type string, subject_id string, rank int, item_id string, "
                                        "score double, variant string")
    ids = spark.createDataFrame(IDS, "id_type string, id string, person_id string")
    version = kvstore.build_version(spark, frame, ids, kv, meta={"run_date": "2026-01-01", "top_n": 2,
                                                                 "segment_dimensions": ["country", "device_type"]})
    kvstore.switch_current(kv, version)
    reader = kvstore.KVReader(kv)
    assert reader.lookup("u1")["variant"] == "margin" and reader.lookup("nobody")["variant"] == "control"
    # a version written before lists carried their variant holds bare item arrays
    store = tmp_path / "kv" / "versions" / version / "store.sqlite"
    con = sqlite3.connect(store)
    con.execute("UPDATE lists SET items = ? WHERE subject_key = 'person:p1'", (json.dumps([["i4", "0.7"]]),))
    con.commit()
    con.close()
    old = kvstore.KVReader(kv).lookup("u1")
    assert old["variant"] == "control" and old["items"] == [{"item_id": "i4", "score": 0.7}]
