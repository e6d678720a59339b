"""`recs serve`: the key-value lookup over HTTP, an ASGI app (Starlette) on uvicorn (uvloop, httptools).

GET /recommendations/{id}?country=&device_type=&entry_source=&...&k=  -> the same JSON object as `recs lookup --json`
    (context: any segment dimension of `jobs.coldstart.KNOWN_DIMENSIONS`)
GET /health    -> 200 only when a real lookup (an unknown id, so the `global` list) succeeds, else 503
GET /metrics   -> request counts and latency histograms in the Prometheus text format, summed over workers

Why this stack: one event loop per worker process and no thread per connection, so idle or slow sockets cost a file
descriptor, not a thread; the embedded store's lookup is a SQLite point read of a few microseconds, cheaper than a
hop to a thread pool, so it runs on the loop itself; Redis is read with the asyncio client over one bounded pool.
Figures against the stdlib server it replaced are in bench/RESULTS.md (`bench_lookup.py`).

Every answer is JSON with a status: 400 for a bad request (`k` not an integer in 1..top_n, a `country` not ISO
3166-1 alpha-2, a `device_type` outside the contract's, an unknown parameter), 404/405 for a wrong route or method,
503 when the store cannot answer or the worker is at its concurrency bound, 504 when the store is too slow, 500 for
a bug. The live version is re-read at most every `refresh_seconds`; a version that cannot be opened is not switched
to (the one being served stays, and the failure is counted), so a broken publish never takes the lookups down.
No message, log line or metric carries the Redis password.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import mmap
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import msgspec

from jobs.segments import KNOWN_DIMENSIONS
from jobs.serving import kvstore
from schemas.vocabulary import COUNTRY_CODES, DEVICE_TYPES

_encode = msgspec.json.Encoder().encode
log = logging.getLogger("recs.serve")
access_log = logging.getLogger("recs.access")

HEALTH_PROBE_ID = "__recs_health_probe__"  # no shopper has it, so the probe exercises the `global` fallback
QUERY_PARAMETERS = (*KNOWN_DIMENSIONS, "k")
MAX_CONTEXT_LENGTH = 128
MAX_ID_LENGTH = 256


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """What `recs serve` is given; `redis_url` (which may carry the password) is never printed or logged."""
    kv_root: str
    redis_url: str = ""
    max_in_flight: int = 256           # requests one worker handles at once; more are answered 503 at once
    timeout_seconds: float = 0.25      # a Redis call (connect, command, pool wait) and the whole store lookup
    refresh_seconds: float = 1.0       # how often a worker checks which version is live
    redis_max_connections: int = 32    # per worker
    access_log: bool = False
    metrics_dir: str = ""              # shared by the workers of one server; a private temp folder when empty

    def public(self) -> dict:
        """The options as they may be shown: the Redis URL without its password."""
        from jobs.serving.redis_store import redact

        d = dataclasses.asdict(self)
        d["redis_url"] = redact(self.redis_url) if self.redis_url else ""
        return d


def open_reader(kv_root: str, redis_url: str | None = None) -> kvstore.Lookup:
    """The live version of the Redis store when a URL is given, else of the embedded store (`recs lookup`)."""
    if redis_url:
        from jobs.serving.redis_store import RedisReader

        return RedisReader(redis_url)
    return kvstore.KVReader(kv_root)


class BadRequest(ValueError):
    pass


class StoreUnavailable(RuntimeError):
    """The store could not answer: no published version, an unreadable file, Redis down or too slow."""


# -- the served version ---------------------------------------------------------------------------------------------

class _EmbeddedSource:
    """The embedded store's live version for one worker: the reader is swapped when CURRENT moves."""

    def __init__(self, opts: ServeOptions, metrics: "Metrics"):
        self.kv_root, self.refresh, self.metrics = opts.kv_root, opts.refresh_seconds, metrics
        self.reader: kvstore.KVReader | None = None
        self._checked = float("-inf")

    def _current_reader(self) -> kvstore.KVReader:
        now = time.monotonic()
        if now - self._checked >= self.refresh or self.reader is None:
            self._checked = now
            try:
                live = (kvstore.current(self.kv_root) or {}).get("version")
                if live is None:
                    raise FileNotFoundError(f"no published key-value version under {self.kv_root} (CURRENT missing)")
                if self.reader is None or self.reader.version != live:
                    self.reader = kvstore.KVReader(self.kv_root, version=live)
                    self.metrics.version_switched()
            except (OSError, ValueError, sqlite3.Error) as exc:
                self.metrics.version_switch_failed()
                log.error("cannot open the live key-value version: %s", exc)
                if self.reader is None:
                    raise StoreUnavailable(str(exc)) from exc
        return self.reader

    async def lookup(self, id_: str, context: dict, k: int | None) -> dict:
        reader = self._current_reader()
        _check_k(k, reader.meta)
        try:  # a point read of microseconds: on the loop itself, no thread hop
            return reader.lookup(id_, context=context, k=k)
        except (sqlite3.Error, LookupError) as exc:
            raise StoreUnavailable(f"key-value version {reader.version}: {exc}") from exc

    async def close(self) -> None:
        pass


class _RedisSource:
    """Redis's live version for one worker, over one bounded asyncio pool with timeouts."""

    def __init__(self, opts: ServeOptions, metrics: "Metrics"):
        from jobs.serving.redis_store import connect

        self.client = connect(opts.redis_url, timeout=opts.timeout_seconds,
                              max_connections=opts.redis_max_connections, asynchronous=True)
        self.refresh, self.timeout, self.metrics = opts.refresh_seconds, opts.timeout_seconds, metrics
        self.reader = None
        self._checked = float("-inf")

    async def _current_reader(self):
        import redis

        from jobs.serving.redis_store import PREFIX, AsyncRedisReader

        now = time.monotonic()
        if now - self._checked >= self.refresh or self.reader is None:
            self._checked = now
            try:
                live = await self.client.get(f"{PREFIX}:current")
                if self.reader is None or self.reader.version != live:
                    self.reader = await AsyncRedisReader.open(self.client, live)
                    self.metrics.version_switched()
            except (redis.RedisError, OSError, asyncio.TimeoutError) as exc:
                self.metrics.version_switch_failed()
                log.error("cannot open the live Redis version: %s", type(exc).__name__)
                if self.reader is None:
                    raise StoreUnavailable(_redis_error(exc)) from exc
        return self.reader

    async def lookup(self, id_: str, context: dict, k: int | None) -> dict:
        import redis

        reader = await self._current_reader()
        _check_k(k, reader.meta)
        try:
            return await asyncio.wait_for(reader.lookup(id_, context=context, k=k), self.timeout)
        except (redis.RedisError, OSError, LookupError) as exc:
            raise StoreUnavailable(_redis_error(exc)) from exc

    async def close(self) -> None:
        await self.client.aclose()


def _redis_error(exc: BaseException) -> str:
    # redis-py's messages name host and port, never the password; still, only our own words and the error's kind
    if isinstance(exc, FileNotFoundError | LookupError):
        return str(exc)
    return f"Redis is unavailable ({type(exc).__name__})"


# -- request checks -------------------------------------------------------------------------------------------------

def _check_k(k: int | None, meta: dict) -> None:
    top_n = meta.get("top_n")
    if k is not None and top_n and k > int(top_n):
        raise BadRequest(f"k must be an integer from 1 to {top_n} (this version's top_n), got {k}")


def parse_query(query: dict[str, str]) -> tuple[dict, int | None]:
    """(context, k): `country`, `device_type`, `k` checked against the contract, the other context dimensions
    (`entry_source`, `age_band`, `gender`, `declared_category`) for length; an empty value means absent."""
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}; allowed: {', '.join(QUERY_PARAMETERS)}")
    country = query.get("country") or None
    if country is not None and country not in COUNTRY_CODES:
        raise BadRequest(f"country must be an ISO 3166-1 alpha-2 code in upper case (e.g. DE), got {country!r}")
    device_type = query.get("device_type") or None
    if device_type is not None and device_type not in DEVICE_TYPES:
        raise BadRequest(f"device_type must be one of {', '.join(DEVICE_TYPES)}, got {device_type!r}")
    context = {"country": country, "device_type": device_type}
    for dim in KNOWN_DIMENSIONS:
        if dim not in context and query.get(dim):
            if len(query[dim]) > MAX_CONTEXT_LENGTH:
                raise BadRequest(f"{dim} longer than {MAX_CONTEXT_LENGTH} characters")
            context[dim] = query[dim]
    raw_k = query.get("k") or None
    k = None
    if raw_k is not None:
        if not (raw_k.isascii() and raw_k.isdigit()) or int(raw_k) < 1:
            raise BadRequest(f"k must be an integer from 1 to top_n, got {raw_k!r}")
        k = int(raw_k)
    return {d: v for d, v in context.items() if v}, k


# -- metrics --------------------------------------------------------------------------------------------------------

ROUTES = ("recommendations", "health", "metrics", "other")
STATUSES = ("200", "400", "404", "405", "500", "503", "504", "other")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_PER_ROUTE = len(STATUSES) + len(BUCKETS) + 1 + 1  # status counts, cumulative-free bucket counts, +Inf, sum
_OVERLOADED, _SWITCHES, _SWITCH_FAILURES, _IN_FLIGHT = range(len(ROUTES) * _PER_ROUTE, len(ROUTES) * _PER_ROUTE + 4)
_SLOTS = _IN_FLIGHT + 1


class Metrics:
    """Counters of one worker in a small shared-memory file, `<metrics_dir>/<pid>.bin`, that only it writes (8-byte
    aligned doubles, so a reader never sees half a value); /metrics sums every worker's file, so a scrape that lands
    on any worker gives the server's totals (counters of a worker that died still count; in-flight only live ones)."""

    def __init__(self, metrics_dir: str = ""):
        self._owns_dir = not metrics_dir  # a worker alone (tests, `make_app`) keeps its own folder and removes it
        self.dir = Path(metrics_dir or tempfile.mkdtemp(prefix="recs-metrics-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{os.getpid()}.bin"
        with open(path, "wb") as f:
            f.write(b"\0" * (8 * _SLOTS))
        self._file = open(path, "r+b")
        self._map = mmap.mmap(self._file.fileno(), 8 * _SLOTS)
        self.values = memoryview(self._map).cast("d")

    def observe(self, route: int, status: int, seconds: float) -> None:
        v, base = self.values, route * _PER_ROUTE
        s = str(status)
        v[base + (STATUSES.index(s) if s in STATUSES else len(STATUSES) - 1)] += 1
        bucket = next((i for i, le in enumerate(BUCKETS) if seconds <= le), len(BUCKETS))
        v[base + len(STATUSES) + bucket] += 1
        v[base + _PER_ROUTE - 1] += seconds

    def overloaded(self) -> None:
        self.values[_OVERLOADED] += 1

    def version_switched(self) -> None:
        self.values[_SWITCHES] += 1

    def version_switch_failed(self) -> None:
        self.values[_SWITCH_FAILURES] += 1

    def in_flight(self, delta: int) -> None:
        self.values[_IN_FLIGHT] += delta

    def _totals(self) -> list[float]:
        total = [0.0] * _SLOTS
        for path in self.dir.glob("*.bin"):
            try:
                data = memoryview(path.read_bytes()).cast("d")
                pid = int(path.stem)
            except (OSError, ValueError, TypeError):
                continue
            alive = _alive(pid)
            for i in range(min(_SLOTS, len(data))):
                if i != _IN_FLIGHT or alive:
                    total[i] += data[i]
        return total

    def render(self, version: str | None) -> str:
        t = self._totals()
        out = ["# HELP recs_requests_total Requests answered, by route and status.",
               "# TYPE recs_requests_total counter"]
        for r, route in enumerate(ROUTES):
            for s, status in enumerate(STATUSES):
                out.append(f'recs_requests_total{{route="{route}",status="{status}"}} {t[r * _PER_ROUTE + s]:.0f}')
        out += ["# HELP recs_request_duration_seconds Time from the request's arrival to its answer.",
                "# TYPE recs_request_duration_seconds histogram"]
        for r, route in enumerate(ROUTES):
            base, cumulative = r * _PER_ROUTE + len(STATUSES), 0.0
            for b, le in enumerate((*BUCKETS, "+Inf")):
                cumulative += t[base + b]
                out.append(f'recs_request_duration_seconds_bucket{{route="{route}",le="{le}"}} {cumulative:.0f}')
            out.append(f'recs_request_duration_seconds_sum{{route="{route}"}} {t[r * _PER_ROUTE + _PER_ROUTE - 1]:.6f}')
            out.append(f'recs_request_duration_seconds_count{{route="{route}"}} {cumulative:.0f}')
        out += ["# HELP recs_rejected_overload_total Requests answered 503 at once because a worker was at max_in_flight.",
                "# TYPE recs_rejected_overload_total counter", f"recs_rejected_overload_total {t[_OVERLOADED]:.0f}",
                "# HELP recs_version_switches_total Times a worker opened a newly live version.",
                "# TYPE recs_version_switches_total counter", f"recs_version_switches_total {t[_SWITCHES]:.0f}",
                "# HELP recs_version_switch_failures_total Live versions that could not be opened (the old one stayed).",
                "# TYPE recs_version_switch_failures_total counter",
                f"recs_version_switch_failures_total {t[_SWITCH_FAILURES]:.0f}",
                "# HELP recs_in_flight Requests being handled now.", "# TYPE recs_in_flight gauge",
                f"recs_in_flight {t[_IN_FLIGHT]:.0f}",
                "# HELP recs_served_version_info The version the answering worker serves.",
                "# TYPE recs_served_version_info gauge",
                f'recs_served_version_info{{version="{version or ""}"}} 1']
        return "\n".join(out) + "\n"

    def close(self) -> None:
        self.values.release()
        self._map.close()
        self._file.close()
        if self._owns_dir:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# -- the app --------------------------------------------------------------------------------------------------------

def _json(status: int, body: dict, headers: dict | None = None):
    from starlette.responses import Response

    # msgspec encodes a 50-item answer in ~3 us where json.dumps takes ~34 us, a third of a request's whole cost
    return Response(_encode(body), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str):
    return _json(status, {"error": message, "status": status})


class _Guard:
    """Outermost ASGI layer: bounds the requests in flight (503 JSON beyond), times every request into the metrics,
    and writes the access log when it is switched on. Pure ASGI: no per-request task or body buffering."""

    def __init__(self, app, metrics: Metrics, opts: ServeOptions):
        self.app, self.metrics, self.max_in_flight, self.log = app, metrics, opts.max_in_flight, opts.access_log
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = (0 if path.startswith("/recommendations/") else 1 if path == "/health" else 2 if path == "/metrics"
                 else 3)
        started = time.perf_counter()
        bounded = route != 2  # /metrics touches no store and must answer under overload: outside the bound
        if bounded and self.in_flight >= self.max_in_flight:
            self.metrics.overloaded()
            response = _json(503, {"error": f"overloaded: {self.in_flight} requests in flight", "status": 503},
                             {"Retry-After": "1"})
            await response(scope, receive, send)
            return self._done(scope, route, 503, started)
        status = [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.in_flight += bounded
        self.metrics.in_flight(+bounded)
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.in_flight -= bounded
            self.metrics.in_flight(-bounded)
            self._done(scope, route, status[0], started)

    def _done(self, scope, route: int, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        self.metrics.observe(route, status, seconds)
        if self.log:
            client = scope.get("client") or ("-", 0)
            query = scope.get("query_string", b"").decode("latin-1")
            access_log.info('%s "%s %s%s" %d %.2fms', client[0], scope["method"], scope["path"],
                            f"?{query}" if query else "", status, seconds * 1000)


def make_app(opts: ServeOptions):
    """The ASGI app of one worker (its store reader, Redis pool and metrics file are opened at startup)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    if opts.access_log and not access_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False
    metrics = Metrics(opts.metrics_dir)
    source = _RedisSource(opts, metrics) if opts.redis_url else _EmbeddedSource(opts, metrics)

    async def lookup_answer(id_: str, context: dict, k):
        try:
            return await source.lookup(id_, context, k)
        except BadRequest as exc:
            return _error(400, str(exc))
        except StoreUnavailable as exc:
            return _error(503, str(exc))
        except asyncio.TimeoutError:
            return _error(504, f"the store did not answer within {opts.timeout_seconds:g} s")

    async def recommendations(request):
        id_ = request.path_params["id"]
        if not id_:
            return _error(400, "missing id: GET /recommendations/{id}")
        if len(id_) > MAX_ID_LENGTH:
            return _error(400, f"id longer than {MAX_ID_LENGTH} characters")
        try:
            context, k = parse_query(request.query_params)
        except BadRequest as exc:
            return _error(400, str(exc))
        body = await lookup_answer(id_, context, k)
        return body if not isinstance(body, dict) else _json(200, body)

    async def health(request):
        body = await lookup_answer(HEALTH_PROBE_ID, {}, 1)
        if not isinstance(body, dict):
            return _json(503, {"status": "unavailable", "error": json.loads(body.body)["error"]})
        return _json(200, {"status": "ok", "version": body["version"], "source": body["source"]})

    async def metrics_page(request):
        from starlette.responses import Response

        version = source.reader.version if source.reader is not None else None
        return Response(metrics.render(version), media_type="text/plain; version=0.0.4")

    async def http_error(request, exc: HTTPException):
        return _error(exc.status_code, exc.detail if isinstance(exc.detail, str) else str(exc.detail))

    async def server_error(request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, f"internal error ({type(exc).__name__})")

    @asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            await source.close()
            metrics.close()

    app = Starlette(routes=[Route("/recommendations/{id:path}", recommendations), Route("/health", health),
                            Route("/metrics", metrics_page)],
                    exception_handlers={HTTPException: http_error, Exception: server_error}, lifespan=lifespan)
    return _Guard(app, metrics, opts)


ENV_OPTIONS = "RECS_SERVE_OPTIONS"      # the options without the Redis URL, as JSON
ENV_REDIS_URL = "RECS_SERVE_REDIS_URL"  # the Redis URL, handed to the workers outside of anything printed


def app_from_env():
    """uvicorn's factory in each worker process: the options come through the environment."""
    opts = json.loads(os.environ[ENV_OPTIONS])
    opts["redis_url"] = os.environ.get(ENV_REDIS_URL, "")
    return make_app(ServeOptions(**opts))


def serve(opts: ServeOptions, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 2,
          max_connections: int = 2048, keep_alive_seconds: float = 5.0) -> None:
    """Runs uvicorn until interrupted. `workers` processes share the port (2 on this 2-core machine held the most
    requests/s at p99 under 10 ms); at most `max_connections` open connections per worker (uvicorn answers 503
    beyond), idle keep-alive connections are closed after `keep_alive_seconds`."""
    import shutil

    import uvicorn

    metrics_dir = tempfile.mkdtemp(prefix="recs-metrics-")
    public = dataclasses.asdict(dataclasses.replace(opts, redis_url="", metrics_dir=metrics_dir))
    os.environ[ENV_OPTIONS] = json.dumps(public)
    if opts.redis_url:
        os.environ[ENV_REDIS_URL] = opts.redis_url
    try:
        uvicorn.run("jobs.serving.http:app_from_env", factory=True, host=host, port=port, workers=workers,
                    loop="uvloop", http="httptools", access_log=False, log_level="warning",
                    limit_concurrency=max_connections, timeout_keep_alive=keep_alive_seconds,
                    timeout_graceful_shutdown=5)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
