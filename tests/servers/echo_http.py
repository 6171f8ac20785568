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
``GET /status``        a job that is ready on its ``?ready_after=``-th poll (default 3):
                       ``{"job_id", "status": "pending"|"ready", "attempt"}``, counted per
                       ``?job=``
``GET /pages``         three pages of three numbers: ``{"page_number", "items",
                       "next_cursor"}`` for ``?cursor=`` (none: the first; ``cur-3``: none)
``POST /form``         the body parsed by its Content-Type, ``multipart/form-data`` or
                       ``application/x-www-form-urlencoded``: ``{"content_type", "fields":
                       {name: text}, "files": {name: {"filename", "content_type", "size",
                       "sha256"}}}``; a 400 naming what is wrong with any other body
``POST /v1/audio/     OpenAI's transcription endpoint, stood in: the multipart form's
transcriptions``       ``file`` and ``model`` (400 without them) answered as ``{"text": "heard
                       N bytes of TYPE in NAME with MODEL", "usage": {"seconds": N}}``
=====================  =================================================================

Any other path is a 404 with a JSON error body. It prints ``echo-http listening on
http://HOST:PORT`` (flushed) once it listens, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
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
_POLLS: dict[str, int] = {}


def parse_form(content_type: str, raw: bytes) -> dict[str, Any]:
    """A form body as a receiving server sees it, or ValueError saying what is wrong."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        fields = {key: values[-1] for key, values in parse_qs(raw.decode("ascii"), keep_blank_values=True, strict_parsing=bool(raw)).items()}
        return {"content_type": kind, "fields": fields, "files": {}}
    if kind != "multipart/form-data" or "boundary=" not in content_type:
        raise ValueError(f"not a form: content-type {content_type!r}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart() or message.defects:
        raise ValueError(f"a malformed multipart body: {message.defects or 'no parts'}")
    fields: dict[str, str] = {}
    files: dict[str, dict[str, Any]] = {}
    for part in message.iter_parts():
        if part.get_content_disposition() != "form-data" or not part.get_param("name", header="content-disposition"):
            raise ValueError("a part without `Content-Disposition: form-data; name=...`")
        name = str(part.get_param("name", header="content-disposition"))
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            fields[name] = data.decode("utf-8")
        else:
            files[name] = {"filename": filename, "content_type": part.get_content_type(), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return {"content_type": kind, "fields": fields, "files": files}


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

    def _raw(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _body(self, raw: bytes) -> Any:
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
        raw = self._raw() if self.command in ("POST", "PUT", "PATCH") else b""
        try:
            if split.path in ("/form", "/v1/audio/transcriptions") and self.command == "POST":
                self._form(raw, transcribe=split.path != "/form")
            else:
                self._route(split.path, query, self._body(raw))
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
        elif path == "/status" and self.command == "GET":
            job = query.get("job", "")
            with _LOG_LOCK:
                _POLLS[job] = attempt = _POLLS.get(job, 0) + 1
            ready = attempt >= int(query.get("ready_after", "3"))
            self._json(200, {"job_id": job, "status": "ready" if ready else "pending", "attempt": attempt})
        elif path == "/pages" and self.command == "GET":
            number = int(query["cursor"].removeprefix("cur-")) + 1 if query.get("cursor") else 1
            start = (number - 1) * 3 + 1
            self._json(200, {"page_number": number, "items": [start, start + 1, start + 2], "next_cursor": f"cur-{number}" if number < 3 else None})
        elif path == "/log" and self.command == "GET":
            with _LOG_LOCK:
                self._json(200, list(_LOG))
        else:
            self._json(404, {"error": f"no route {self.command} {path}"})

    def _form(self, raw: bytes, transcribe: bool = False) -> None:
        try:
            form = parse_form(self.headers.get("content-type") or "", raw)
        except (ValueError, UnicodeDecodeError) as exc:
            self._json(400, {"error": str(exc)})
            return
        if not transcribe:
            self._json(200, form)
        elif "file" not in form["files"] or "model" not in form["fields"]:
            self._json(400, {"error": {"message": "a transcription needs a `file` part and a `model` field"}})
        else:
            file = form["files"]["file"]
            text = f"heard {file['size']} bytes of {file['content_type']} in {file['filename']} with {form['fields']['model']}"
            self._json(200, {"text": text, "usage": {"type": "duration", "seconds": file["size"]}})

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
