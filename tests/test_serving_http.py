"""`recs serve` on a real uvicorn server over loopback, against real stores (SQLite versions built by Spark, a real
redis-server): answers, JSON errors, health, version pick-up, metrics, bounds, timeouts and secrets."""
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from jobs.serving import kvstore
from jobs.storage import io
from jobs.serving.http import ServeOptions, make_app

pytestmark = pytest.mark.spark

RECS = [("person", "p1", 1, "i1", 0.9), ("person", "p1", 2, "i2", 0.5),
        ("segment", "global", 1, "i9", 5.0), ("segment", "global", 2, "i8", 4.0),
        ("segment", "country=DE", 1, "i7", 3.0), ("segment", "country=DE/device_type=ios", 1, "i6", 2.0)]
IDS = [("user_id", "u1", "p1"), ("anonymous_id", "a1", "p1")]
META = {"top_n": 2, "segment_dimensions": ["country", "device_type"]}
REPO = Path(__file__).resolve().parents[1]


def frames(spark, recs=RECS):
    r = spark.createDataFrame(recs, "subject_type string, subject_id string, rank int, item_id string, score double")
    return r, spark.createDataFrame(IDS, "id_type string, id string, person_id string")


def publish(spark, kv_root, recs=RECS, run_date="2026-01-01"):
    version = kvstore.build_version(spark, *frames(spark, recs), kv_root, meta={"run_date": run_date, **META})
    kvstore.switch_current(kv_root, version)
    return version


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(opts: ServeOptions):
    """The app on a real uvicorn server in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(opts), host="127.0.0.1", port=port, log_level="error",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def get(url: str) -> tuple[int, dict | str]:
    """Status and body (parsed JSON when it is JSON) of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            status, raw, kind = resp.status, resp.read(), resp.headers.get_content_type()
    except urllib.error.HTTPError as err:
        status, raw, kind = err.code, err.read(), err.headers.get_content_type()
    return status, json.loads(raw) if kind == "application/json" else raw.decode()


def test_answers_like_lookup_with_the_version(spark, tmp_path):
    kv = str(tmp_path / "kv")
    version = publish(spark, kv)
    with serving(ServeOptions(kv_root=kv)) as base:
        status, body = get(f"{base}/recommendations/u1?k=1")
        assert status == 200
        assert body == {"id": "u1", "person_id": "p1", "source": "person", "variant": "control", "version": version,
                        "items": [{"item_id": "i1", "score": 0.9}]}
        assert body == kvstore.KVReader(kv).lookup("u1", k=1)
        status, body = get(f"{base}/recommendations/zz?country=DE&device_type=ios")
        assert (status, body["source"], body["person_id"]) == (200, "segment:country=DE/device_type=ios", None)
        assert get(f"{base}/recommendations/a%2Fb")[1]["source"] == "segment:global"  # an id with a slash


@pytest.mark.parametrize("query, message", [
    ("k=0", "k must be an integer from 1"), ("k=3", "from 1 to 2"), ("k=two", "k must be an integer"),
    ("k=-1", "k must be an integer"), ("k=1.5", "k must be an integer"),
    ("country=de", "ISO 3166-1 alpha-2"), ("country=XX", "ISO 3166-1 alpha-2"), ("country=DEU", "ISO 3166-1"),
    ("device_type=tablet", "device_type must be one of desktop, mobile_web, ios, android"),
    ("devicetype=ios", "unknown query parameter 'devicetype'")])
def test_bad_requests_get_a_json_400(spark, tmp_path, query, message):
    kv = str(tmp_path / "kv")
    publish(spark, kv)
    with serving(ServeOptions(kv_root=kv)) as base:
        status, body = get(f"{base}/recommendations/u1?{query}")
    assert status == 400 and body["status"] == 400 and message in body["error"]


def test_any_configured_dimension_and_a_stored_profile_reach_both_stores_over_http(spark, tmp_path, redis_url):
    """A new segment dimension (entry_source) and a profile dimension (age_band) end to end: the query parameter,
    the profile context a version keeps for a user_id with no person, the request overriding the profile."""
    from jobs.serving import redis_store

    recs = [("person", "p1", 1, "i1", 0.9), ("segment", "global", 1, "i9", 5.0),
            ("segment", "entry_source=email", 1, "i5", 4.0), ("segment", "age_band=25-34", 1, "i4", 3.0),
            ("segment", "entry_source=email/age_band=25-34", 1, "i3", 2.0)]
    r, ids = frames(spark, recs)
    contexts = spark.createDataFrame([("profile:newbie", '{"age_band": "25-34", "gender": null}')],
                                     "subject_key string, items string")
    meta = {"run_date": "2026-01-01", "top_n": 2, "segment_dimensions": ["entry_source", "age_band"]}
    kv = str(tmp_path / "kv")
    version = kvstore.build_version(spark, r, ids, kv, meta=meta, contexts=contexts)
    kvstore.switch_current(kv, version)
    redis_store.build_version(r, ids, redis_url, version=version, meta=meta, manifest=kvstore.manifest(kv, version),
                              contexts=contexts)
    redis_store.switch_current(redis_url, version)
    expected = {"zz?entry_source=email": "segment:entry_source=email", "newbie": "segment:age_band=25-34",
                "newbie?entry_source=email": "segment:entry_source=email/age_band=25-34",
                "zz": "segment:global", "u1": "person"}
    for opts in (ServeOptions(kv_root=kv), ServeOptions(kv_root=kv, redis_url=redis_url)):
        with serving(opts) as base:
            for path, source in expected.items():
                status, body = get(f"{base}/recommendations/{path}")
                assert (status, body["source"]) == (200, source), (opts.redis_url, path, body)
    assert kvstore.KVReader(kv).lookup("newbie", age_band="45-54")["source"] == "segment:global"  # request wins


def test_wrong_route_method_and_missing_id_are_json(spark, tmp_path):
    kv = str(tmp_path / "kv")
    publish(spark, kv)
    with serving(ServeOptions(kv_root=kv)) as base:
        assert get(f"{base}/nothing-here") == (404, {"error": "Not Found", "status": 404})
        assert get(f"{base}/recommendations/")[0] == 400
        req = urllib.request.Request(f"{base}/health", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 405 and json.loads(err.value.read())["status"] == 405


def test_a_version_without_a_global_list_is_a_503_and_health_is_red(spark, tmp_path):
    kv = str(tmp_path / "kv")
    publish(spark, kv, recs=[r for r in RECS if r[1] != "global"])
    with serving(ServeOptions(kv_root=kv)) as base:
        assert get(f"{base}/recommendations/u1")[0] == 200  # the person's own list is still there
        status, body = get(f"{base}/recommendations/nobody")
        assert status == 503 and "no global segment list" in body["error"]
        status, body = get(f"{base}/health")
        assert status == 503 and body["status"] == "unavailable"


def test_no_published_version_is_a_503_not_a_closed_connection(tmp_path):
    with serving(ServeOptions(kv_root=str(tmp_path / "kv"))) as base:
        status, body = get(f"{base}/recommendations/u1")
        assert status == 503 and "CURRENT missing" in body["error"]
        assert get(f"{base}/health")[0] == 503


def test_new_version_is_served_without_restart_and_a_missing_one_is_not_switched_to(spark, tmp_path):
    kv = str(tmp_path / "kv")
    first = publish(spark, kv)
    with serving(ServeOptions(kv_root=kv, refresh_seconds=0)) as base:
        assert get(f"{base}/health")[1]["version"] == first
        second = publish(spark, kv, recs=[("person", "p1", 1, "i3", 0.99), *RECS[2:]], run_date="2026-01-02")
        status, body = get(f"{base}/recommendations/u1")
        assert (status, body["version"], body["items"][0]["item_id"]) == (200, second, "i3")
        # a pointer at a folder that is not there (switch_current refuses that; a hand edit or a lost disk does not)
        io.write_json(f"{kv}/CURRENT", {"version": "2026-01-03-gone", "previous": second})
        status, body = get(f"{base}/recommendations/u1")
        assert (status, body["version"]) == (200, second)  # the lists stay up
        metrics = get(f"{base}/metrics")[1]
        assert metric(metrics, "recs_version_switch_failures_total") >= 1
        assert metric(metrics, "recs_version_switches_total") == 2


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    found = [float(m.group(1)) for m in re.finditer(pattern, text, re.M)]
    assert len(found) == 1, f"{name}{{{labels}}} not in /metrics"
    return found[0]


def test_metrics_count_requests_and_latency_in_prometheus_format(spark, tmp_path):
    kv = str(tmp_path / "kv")
    publish(spark, kv)
    with serving(ServeOptions(kv_root=kv)) as base:
        for _ in range(5):
            get(f"{base}/recommendations/u1")
        get(f"{base}/recommendations/u1?k=0")
        text = get(f"{base}/metrics")[1]
    assert metric(text, "recs_requests_total", 'route="recommendations",status="200"') == 5
    assert metric(text, "recs_requests_total", 'route="recommendations",status="400"') == 1
    assert metric(text, "recs_request_duration_seconds_count", 'route="recommendations"') == 6
    assert metric(text, "recs_request_duration_seconds_bucket", 'route="recommendations",le="+Inf"') == 6
    buckets = [float(v) for v in re.findall(r'_bucket\{route="recommendations",le="[^"]+"\} (\S+)', text)]
    assert buckets == sorted(buckets)  # cumulative, as Prometheus wants
    assert "# TYPE recs_request_duration_seconds histogram" in text


def test_idle_connections_take_no_threads(spark, tmp_path):
    kv = str(tmp_path / "kv")
    publish(spark, kv)
    with serving(ServeOptions(kv_root=kv)) as base:
        threads = threading.active_count()
        port = int(base.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        try:
            assert get(f"{base}/recommendations/u1")[0] == 200
            assert threading.active_count() == threads
        finally:
            for s in idle:
                s.close()


@contextmanager
def silent_redis():
    """A TCP server that accepts connections and never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(5)
        for s in held:
            s.close()
        listener.close()


def test_a_hung_redis_times_out_into_a_503_and_in_flight_is_bounded(tmp_path):
    with silent_redis() as url:
        # a long timeout, so that the first request is surely still waiting when the second arrives on a busy host
        opts = ServeOptions(kv_root=str(tmp_path / "kv"), redis_url=url, timeout_seconds=8.0, max_in_flight=1)
        with serving(opts) as base:
            first: list = []
            slow = threading.Thread(target=lambda: first.append(get(f"{base}/recommendations/u1")))
            slow.start()
            for _ in range(400):  # until the first request is inside, waiting on the silent Redis
                if metric(get(f"{base}/metrics")[1], "recs_in_flight") >= 1:
                    break
                time.sleep(0.01)
            status, body = get(f"{base}/recommendations/u2")
            assert status == 503 and body["error"].startswith("overloaded")
            slow.join(30)
            assert first[0][0] == 503 and "Redis is unavailable (TimeoutError)" in first[0][1]["error"]


@pytest.mark.redis
def test_redis_over_http_answers_like_the_embedded_store_and_never_shows_the_password(spark, tmp_path, redis_url):
    import redis

    from jobs.serving import redis_store

    kv = str(tmp_path / "kv")
    version = publish(spark, kv)
    redis_store.build_version(*frames(spark), redis_url, version=version, meta={"run_date": "2026-01-01", **META})
    redis_store.switch_current(redis_url, version)
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("requirepass", "s3cret-pw")
    try:
        with_password = redis_url.replace("redis://", "redis://:s3cret-pw@")
        wrong_password = redis_url.replace("redis://", "redis://:wr0ng-pw@")
        with serving(ServeOptions(kv_root=kv, redis_url=with_password)) as base:
            for path in ["u1", "a1?k=1", "zz?country=DE&device_type=ios", "zz?country=FR"]:
                status, body = get(f"{base}/recommendations/{path}")
                id_, _, query = path.partition("?")
                ctx = dict(p.split("=") for p in query.split("&")) if query else {}
                expected = kvstore.KVReader(kv).lookup(id_, country=ctx.get("country"),
                                                       device_type=ctx.get("device_type"), k=int(ctx.pop("k", 0)) or None)
                assert (status, body) == (200, expected)
            assert get(f"{base}/health")[0] == 200
        with serving(ServeOptions(kv_root=kv, redis_url=wrong_password)) as base:
            for path in ["/recommendations/u1", "/health", "/metrics"]:
                status, body = get(base + path)
                assert "wr0ng-pw" not in json.dumps(body)
            assert get(f"{base}/recommendations/u1")[0] == 503
        assert "s3cret-pw" not in json.dumps(ServeOptions(kv_root=kv, redis_url=with_password).public())
        assert redis_store.redact(with_password) == redis_url.replace("redis://", "redis://***@")
    finally:
        redis.Redis.from_url(with_password).config_set("requirepass", "")
        admin.flushdb()  # the server is shared by the session's tests


def test_recs_serve_with_two_workers_sums_metrics_over_workers(spark, tmp_path):
    root = tmp_path / "data"
    kv = str(root / "exports" / "kv")
    publish(spark, kv)
    port = free_port()
    env = {**os.environ, "RECS_REDIS_URL": ""}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "serve", "--data-root", str(root), "--port", str(port),
                             "--workers", "2"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        for _ in range(30):  # a new connection each: the kernel spreads them over both workers
            assert get(f"{base}/recommendations/u1")[0] == 200
        text = get(f"{base}/metrics")[1]
        assert metric(text, "recs_requests_total", 'route="recommendations",status="200"') == 30
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"on http://127.0.0.1:{port} (2 workers)" in out


def test_switching_versions_under_load_gives_no_errors_and_no_mixed_answers(spark, tmp_path):
    kv = str(tmp_path / "kv")
    expected = {}  # version -> the item ids u1 must get from it
    for night, item in enumerate(["i1", "i3", "i5"]):
        recs = [("person", "p1", 1, item, 0.9), ("person", "p1", 2, f"{item}b", 0.5), *RECS[2:]]
        expected[kvstore.build_version(spark, *frames(spark, recs), kv, meta={"run_date": f"2026-01-0{night + 1}",
                                                                               **META})] = [item, f"{item}b"]
    versions = list(expected)
    kvstore.switch_current(kv, versions[0])
    answers, stop = [], threading.Event()
    with serving(ServeOptions(kv_root=kv, refresh_seconds=0)) as base:
        def load():
            while not stop.is_set():
                answers.append(get(f"{base}/recommendations/u1"))

        client = threading.Thread(target=load)
        client.start()
        for version in [*versions[1:], versions[0], *versions[1:]]:
            seen = len(answers)
            kvstore.switch_current(kv, version)
            while len(answers) < seen + 20 and client.is_alive():
                time.sleep(0.005)
        stop.set()
        client.join(10)
    assert answers and all(status == 200 for status, _ in answers)
    assert all([i["item_id"] for i in body["items"]] == expected[body["version"]] for _, body in answers)
    assert {body["version"] for _, body in answers} == set(versions)
