"""`recs forget` on a DATA_ROOT the nightly run filled: no trace of the person is left in any file."""
import json
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.storage.layout import Layout

pytestmark = pytest.mark.spark

START, DAYS, RUN_DATE = "2026-08-01", 10, "2026-08-10"


def _ids_of(root: Path, user_id: str) -> set[str]:
    """The person's ids straight from the identity map and state, independently of jobs.privacy."""
    ident = pq.read_table(root / "identity" / f"dt={RUN_DATE}").to_pandas()
    person = ident[(ident.id_type == "user_id") & (ident.id == user_id)].person_id.iloc[0]
    nodes = pq.read_table(root / "state" / "identity" / f"dt={RUN_DATE}" / "nodes").to_pandas()
    mine = nodes[((nodes.person_id == person) | (nodes.map_person_id == person)) & ~nodes.role.isin(["hub", "email_hub"])]
    return {person, user_id, *ident[ident.person_id == person].id, *mine.id}


def _kv_lists(root: Path) -> dict:
    from jobs.serving.kvstore import current

    version = current(str(root / "exports" / "kv"))["version"]
    with sqlite3.connect(root / "exports" / "kv" / "versions" / version / "store.sqlite") as con:
        return dict(con.execute("SELECT subject_key, items FROM lists"))


@pytest.fixture(scope="module")
def erased(tmp_path_factory, spark):
    """One generated shop, one nightly run, one erasure (the only pipeline run of this module)."""
    from jobs.config import load_config
    from jobs.pipeline import run_all
    from jobs.shop.generator import generate_shop
    from jobs.cli import main

    root = tmp_path_factory.mktemp("forget")
    generate_shop(str(root), start=START, days=DAYS, users=200, items=60, seed=5, defect_rate=0.02)
    cfg = load_config(data_root=str(root), overrides=["spark.master=local[1]", "spark.shuffle_partitions=1"])
    assert run_all(cfg, RUN_DATE, spark=spark)["status"] == "published"

    ident = pq.read_table(root / "identity" / f"dt={RUN_DATE}").to_pandas()
    lists = _kv_lists(root)
    users = ident[ident.id_type == "user_id"]
    # a user with a published list and the most ids (several devices, an email): the hardest case
    users = users[users.person_id.map(lambda p: f"person:{p}" in lists)]
    sizes = users.person_id.map(ident.person_id.value_counts())
    user_id = users.loc[sizes.idxmax(), "id"]
    ids = _ids_of(root, user_id)
    person = ident[ident.id == user_id].person_id.iloc[0]
    assert len(ids) >= 3
    assert main(["forget", "--data-root", str(root), "--user-id", user_id]) == 0
    return {"root": root, "user_id": user_id, "ids": ids, "person": person, "lists_before": lists}


def _strings(table: pa.Table) -> set[str]:
    out = set()
    for col in table.columns:
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            out |= {v for v in col.to_pylist() if v}
        elif pa.types.is_list(t) and pa.types.is_string(t.value_type):
            out |= {v for row in col.to_pylist() if row for v in row if v}
    return out


def _hits(text: str, ids: set[str]) -> set[str]:
    return {i for i in ids if i in text}


def test_no_trace_of_the_person_is_left_anywhere(erased):
    root, ids = erased["root"], erased["ids"]
    found, files = {}, 0
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if not f.is_file() or rel.parts[0] == "truth":
            continue
        files += 1
        if f.suffix == ".parquet":
            values = _strings(pq.read_table(f))
            hit = {i for i in ids if i in values or any(i in v for v in values)}
        elif f.suffix == ".sqlite":
            with sqlite3.connect(f) as con:
                hit = _hits("\n".join(con.iterdump()), ids)
            hit |= _hits(f.read_bytes().decode("latin-1"), ids)  # no deleted page keeps the bytes
        else:
            hit = _hits(f.read_bytes().decode("latin-1"), ids)
        if hit:
            found[str(rel)] = sorted(hit)
    assert files > 100
    assert found == {}


def test_lookup_now_answers_a_segment_list(erased, capsys):
    from jobs.cli import main

    assert main(["lookup", "--data-root", str(erased["root"]), erased["user_id"], "--json"]) == 0
    ans = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ans["person_id"] is None and ans["source"].startswith("segment:") and len(ans["items"]) == 20


def test_other_lists_are_untouched(erased):
    before, after = erased["lists_before"], _kv_lists(erased["root"])
    assert set(before) - set(after) == {f"person:{erased['person']}"}
    assert all(after[k] == v for k, v in before.items() if k != f"person:{erased['person']}")


def test_rewritten_datasets_still_read_with_their_schema(erased, spark):
    from jobs.storage import io

    layout = Layout(str(erased["root"]))
    events = io.read_spark_parquet(spark, layout.validated("events", RUN_DATE), "events")
    assert events.count() > 0 and events.where(events.user_id == erased["user_id"]).count() == 0
    state = spark.read.parquet(layout.identity_state(RUN_DATE) + "/links")
    assert state.count() > 0
    assert spark.read.parquet(layout.interactions(RUN_DATE)).where(f"person_id = '{erased['person']}'").count() == 0


def test_erasure_log_has_a_salted_hash_and_counts_only(erased):
    from jobs.privacy.erasure import was_erased

    root = erased["root"]
    entries = [json.loads(line) for line in (root / "privacy" / "erasures.jsonl").read_text().splitlines()]
    assert len(entries) == 1 and set(entries[0]) == {"time", "subject_sha256", "redis", "counts"}
    assert entries[0]["counts"]["parquet_rows_removed"] > 0 and entries[0]["counts"]["kv_rows_removed"] > 0
    assert was_erased(str(root), erased["user_id"]) == entries
    assert was_erased(str(root), "someone-else") == []


def test_a_second_request_finds_nothing_left(erased):
    from jobs.privacy.erasure import forget

    counts = forget(str(erased["root"]), erased["user_id"])
    assert counts["parquet_rows_removed"] == 0 and counts["kv_rows_removed"] == 0 and counts["text_replacements"] == 0


def test_jsonl_raw_inputs_and_reports_are_covered(tmp_path):
    """Files of a kind the pipeline does not write yet (raw JSON Lines, a hand-made report) are found by the walk."""
    import gzip

    from jobs.privacy.erasure import forget

    day = tmp_path / "raw" / "events" / "dt=2026-01-01"
    day.mkdir(parents=True)
    rows = [{"event_id": "e1", "anonymous_id": "a-1", "user_id": "u-1"}, {"event_id": "e2", "anonymous_id": "a-2"},
            {"event_id": "e3", "anonymous_id": "a-1", "item_id": "u-1x"}]
    (day / "part-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (day / "part-1.jsonl.gz").write_bytes(gzip.compress((json.dumps(rows[0]) + "\n").encode()))
    report = tmp_path / "reports" / "dt=2026-01-01"
    report.mkdir(parents=True)
    (report / "x.html").write_text("<td>u-1</td><td>u-10</td>")
    counts = forget(str(tmp_path), "u-1", anonymous_ids=["a-1"])
    assert counts["jsonl_rows_removed"] == 3
    assert [json.loads(line)["event_id"] for line in (day / "part-0.jsonl").read_text().splitlines()] == ["e2"]
    assert gzip.decompress((day / "part-1.jsonl.gz").read_bytes()) == b""
    assert (report / "x.html").read_text() == "<td>&lt;erased&gt;</td><td>u-10</td>"


@pytest.mark.redis
def test_redis_versions_lose_the_person_fields(spark, redis_url):
    import redis

    redis_url = redis_url.rsplit("/", 1)[0] + "/7"  # a database of its own: other tests' versions stay out of the counts
    redis.Redis.from_url(redis_url).flushdb()

    from jobs.privacy.matching import IdMatcher
    from jobs.privacy.stores import erase_redis
    from jobs.serving import redis_store

    recs = spark.createDataFrame([("person", "p1", 1, "i1", 0.9), ("person", "p2", 1, "i2", 0.8),
                                  ("segment", "global", 1, "i9", 5.0)],
                                 "subject_type string, subject_id string, rank int, item_id string, score double")
    ids = spark.createDataFrame([("user_id", "u1", "p1"), ("anonymous_id", "a1", "p1"), ("user_id", "u2", "p2")],
                                "id_type string, id string, person_id string")
    for v in ("v1", "v2"):
        redis_store.build_version(recs, ids, redis_url, version=v, meta={"run_date": "2026-01-01"})
        redis_store.switch_current(redis_url, v)
    counts = erase_redis(redis_url, IdMatcher({"u1", "a1", "p1"}))
    assert counts == {"redis_hashes_changed": 4, "redis_fields_removed": 6}
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for v in ("v1", "v2"):
        assert client.hgetall(f"recs:{v}:ids") == {"u2": "p2"}
        assert set(client.hgetall(f"recs:{v}:lists")) == {"person:p2", "segment:global"}
    reader = redis_store.RedisReader(redis_url)
    assert reader.lookup("u1")["source"] == "segment:global" and reader.lookup("u2")["source"] == "person"
