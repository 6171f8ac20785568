#!/usr/bin/env python3
"""A tiny HTTP API for the model-compose tests: what an `http-client` or managed `http-server`
component calls. Standard library only, so a flow can start it with `manage.start`::

    python tests/servers/echo_http.py --port 8124

=====================  =================================================================
``POST /echo``         ``{"echo": <the JSON body>, "path", "query", "headers"}`` (the
                       headers named ``x-*``, ``authorization`` and ``content-type``)
``POST /speech``       ``audio/mpeg`` bytes: ``ID3`` and the body's ``text`` (a binary
                       answer, as a text-to-speech API gives)
``GET /items``         ``{"items": [{"id": i, "score": 10*i}, ...]}`` for ``?n=`` items
``GET /slow``          waits ``?ms=`` milliseconds, then answers ``{"waited": ms}``
``GET /log``           every request so far: ``[{"path", "start", "end"}, ...]`` (server
                       clock), so a test can tell which requests overlapped
=====================  =================================================================

Any other path is a 404 with a JSON error body. It prints ``echo-http listening on
http://HOST:PORT`` (flushed) once it listens, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_LOG: list[dict[str, Any]] = []
_LOG_LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _handle(self) -> None:
        start = time.monotonic()
        split = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        body = self._body() if self.command in ("POST", "PUT", "PATCH") else None
        try:
            self._route(split.path, query, body)
        finally:
            with _LOG_LOCK:
                _LOG.append({"path": split.path, "query": query, "start": start, "end": time.monotonic()})

    def _route(self, path: str, query: dict[str, str], body: Any) -> None:
        if path == "/echo" and self.command == "POST":
            headers = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-") or k.lower() in ("authorization", "content-type")}
            self._json(200, {"echo": body, "path": path, "query": query, "headers": headers})
        elif path == "/speech" and self.command == "POST":
            text = body.get("text", "") if isinstance(body, dict) else str(body or "")
            self._send(200, b"ID3" + str(text).encode(), "audio/mpeg")
        elif path == "/items" and self.command == "GET":
            count = int(query.get("n", "3"))
            self._json(200, {"items": [{"id": i, "score": 10 * i} for i in range(count)]})
        elif path == "/slow" and self.command == "GET":
            ms = float(query.get("ms", "100"))
            time.sleep(ms / 1000)
            self._json(200, {"waited": ms, "tag": query.get("tag")})
        elif path == "/log" and self.command == "GET":
            with _LOG_LOCK:
                self._json(200, list(_LOG))
        else:
            self._json(404, {"error": f"no route {self.command} {path}"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"echo-http listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
