#!/usr/bin/env python3
"""An upstream that works asynchronously, for the listener tests: it takes a job, answers at
once with its task id, and POSTs the result to the `callback_url` it was given. Also
stand-ins for the two hosted APIs of model-compose's Telegram example. Standard library
only, so a flow can start it as a managed component::

    python tests/servers/callback_upstream.py --port 9000

=========================  ==============================================================
``POST /process``          ``{"data", "callback_url", "task_id", "mode"?}``: answers
                           ``{"task_id", "accepted": true}``; the callback ``{"task_id",
                           "result": {"processed": data}}`` goes out after the answer
                           (``mode: "early"``: before it, so it arrives before the job
                           has its answer; ``"never"``: not at all; ``"fail"``: with
                           ``"status": "failed"``)
``POST /v1/chat/           OpenAI's chat completions, stood in: the reply is ``"hello
chat/completions``         <user>: <last message>"`` (the user named in the system message)
``POST /bot<token>/        Telegram's sendMessage, stood in: ``{"ok": true, "result":
sendMessage``              {"message_id": n}}``; each body kept for ``GET /sent``
``GET /sent``              every sendMessage body so far, with the token it came with
=========================  ==============================================================
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SENT: list[dict[str, Any]] = []


def call_back(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
    except OSError as exc:  # the listener refused it (a 4xx is an HTTPError): say so in the log
        print(f"callback to {url} failed: {exc}", flush=True)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def do_GET(self) -> None:
        if self.path == "/sent":
            self._json(200, SENT)
        else:
            self._json(404, {"error": f"no {self.path}"})

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/process":
            mode = body.get("mode", "after")
            callback = {"task_id": body["task_id"], "result": {"processed": body.get("data")}}
            if mode == "fail":
                callback["status"] = "failed"
            if mode == "early":
                call_back(body["callback_url"], callback)
            self._json(200, {"task_id": body["task_id"], "accepted": True})
            if mode in ("after", "fail"):
                threading.Thread(target=call_back, args=(body["callback_url"], callback), daemon=True).start()
        elif self.path == "/v1/chat/completions":
            system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
            user = system.split("The user's name is ", 1)[-1].split(".", 1)[0]
            text = f"hello {user}: {body['messages'][-1]['content']}"
            self._json(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
        elif self.path.startswith("/bot") and self.path.endswith("/sendMessage"):
            SENT.append({"token": urllib.parse.unquote(self.path[4 : -len("/sendMessage")]), **body})
            self._json(200, {"ok": True, "result": {"message_id": len(SENT)}})
        else:
            self._json(404, {"error": f"no {self.path}"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"callback-upstream listening on http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
