"""`recs serve`: the key-value lookup over HTTP (stdlib server: the lookup itself is a SQLite point read).

GET /recommendations/{id}?country=&device_type=&k=  -> the same JSON object as `recs lookup --json`
GET /health                                          -> {"status": "ok", "version": ...}
The served version follows CURRENT: a new night's version is picked up without a restart.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

from jobs.serving import kvstore


class _Readers:
    """One reader per published version, reopened when the live version moves."""

    def __init__(self, kv_root: str, redis_url: str | None = None):
        self.kv_root, self.redis_url = kv_root, redis_url
        self._lock = threading.Lock()
        self._reader: kvstore.Lookup | None = None

    def _live_version(self) -> str | None:
        if self.redis_url:
            from jobs.serving.redis_store import live_version

            return live_version(self.redis_url)
        return (kvstore.current(self.kv_root) or {}).get("version")

    def get(self) -> kvstore.Lookup:
        live = self._live_version()
        with self._lock:
            if self._reader is None or self._reader.version != live:
                self._reader = open_reader(self.kv_root, self.redis_url)
            return self._reader


def open_reader(kv_root: str, redis_url: str | None = None) -> kvstore.Lookup:
    """The live version of the Redis store when a URL is given, else of the embedded store."""
    if redis_url:
        from jobs.serving.redis_store import RedisReader

        return RedisReader(redis_url)
    return kvstore.KVReader(kv_root)


def make_server(kv_root: str, host: str = "127.0.0.1", port: int = 8080,
                redis_url: str | None = None) -> ThreadingHTTPServer:
    readers = _Readers(kv_root, redis_url)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            url = urlparse(self.path)
            try:
                if url.path == "/health":
                    return self._send(200, {"status": "ok", "version": readers.get().version})
                if url.path.startswith("/recommendations/"):
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    k = int(q["k"]) if q.get("k") else None
                    if k is not None and k <= 0:
                        return self._send(400, {"error": "k must be a positive integer"})
                    id_ = unquote(url.path[len("/recommendations/"):])
                    if not id_:
                        return self._send(400, {"error": "missing id"})
                    return self._send(200, readers.get().lookup(id_, country=q.get("country") or None,
                                                                 device_type=q.get("device_type") or None, k=k))
                return self._send(404, {"error": f"no route {url.path}"})
            except ValueError as exc:
                return self._send(400, {"error": str(exc)})
            except FileNotFoundError as exc:
                return self._send(503, {"error": str(exc)})

        def log_message(self, fmt, *args):  # keep stdout for the access log only when asked
            pass

    return ThreadingHTTPServer((host, port), Handler)
