#!/usr/bin/env python3
"""A stand-in for the three Slack Web API methods model-compose's `mcp-servers/slack-bot`
example calls. Standard library only::

    python tests/servers/slack_api.py --port 8125 --token xoxb-test

=============================  ==============================================================
``POST /chat.postMessage``     ``{"ok": true, "channel", "message": {"text"}, "attachments"}``
                               for a JSON body; channel ``C-BROKEN``: HTTP 500 ``{"ok": false,
                               "error": "slack is down"}``
``GET /conversations.list``    ``{"ok": true, "channels": [...]}``: the first ``?limit=`` of
                               three channels, each ``{"id", "name", "is_private"}``
``POST /conversations.join``   ``{"ok": true, "channel": {"id", "name"}}``
=============================  ==============================================================

Every method needs ``Authorization: Bearer TOKEN`` (else 401 ``{"ok": false, "error":
"not_authed"}``), as Slack does. It prints ``slack-api listening on http://HOST:PORT`` once
it listens, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CHANNELS = [
    {"id": "C01", "name": "general", "is_private": False},
    {"id": "C02", "name": "random", "is_private": False},
    {"id": "C03", "name": "ops", "is_private": True},
]

#: a channel whose messages fail upstream (for the tests of a failing tool call)
BROKEN_CHANNEL = "C-BROKEN"


class Handler(BaseHTTPRequestHandler):
    token = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, value: Any) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.token}":
            return True
        self._json(401, {"ok": False, "error": "not_authed"})
        return False

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if not self._authorised():
            return
        if url.path != "/conversations.list":
            self._json(404, {"ok": False, "error": "unknown_method"})
            return
        limit = int(parse_qs(url.query).get("limit", ["200"])[-1])
        self._json(200, {"ok": True, "channels": CHANNELS[:limit]})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self._authorised():
            return
        body = json.loads(raw or b"{}")
        path = urlsplit(self.path).path
        if path == "/chat.postMessage":
            if body.get("channel") == BROKEN_CHANNEL:
                self._json(500, {"ok": False, "error": "slack is down"})
                return
            self._json(200, {"ok": True, "channel": body.get("channel"), "message": {"text": body.get("text")}, "attachments": body.get("attachments")})
        elif path == "/conversations.join":
            name = next((c["name"] for c in CHANNELS if c["id"] == body.get("channel")), "unknown")
            self._json(200, {"ok": True, "channel": {"id": body.get("channel"), "name": name}})
        else:
            self._json(404, {"ok": False, "error": "unknown_method"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    Handler.token = args.token
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"slack-api listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
