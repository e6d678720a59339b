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

from jobs import kvstore


class _Readers:
    """One reader per published version, reopened when CURRENT moves."""

    def __init__(self, kv_root: str):
        self.kv_root = kv_root
        self._lock = threading.Lock()
        self._reader: kvstore.KVReader | None = None

    def get(self) -> kvstore.KVReader:
        pointer = kvstore.current(self.kv_root) or {}
        with self._lock:
            if self._reader is None or self._reader.version != pointer.get("version"):
                self._reader = kvstore.KVReader(self.kv_root)
            return self._reader


def make_server(kv_root: str, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    readers = _Readers(kv_root)

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
