#!/usr/bin/env python3
"""A stand-in for vLLM's OpenAI-compatible API server, for flowctl's tests and benchmark.

Standard library only (asyncio streams), so flowctl can launch it as a managed process::

    python tests/servers/fake_vllm.py --port 8123 [--tokens 8] [--token-delay-ms 5] ...

It speaks vLLM's wire format: ``GET /v1/models``, ``GET /health``, ``GET /version``,
``POST /v1/chat/completions`` (streamed as ``text/event-stream`` with HTTP/1.1 chunked
encoding and keep-alive, or as one ``chat.completion`` JSON object).

Replies are deterministic. Token ``i`` (0-based) is ``"w{i}"`` with a leading space for
every token but the first, so the text is ``"w0 w1 w2 ..."`` and every token is unique and
ordered (see :func:`expected_tokens`). If the last user message contains ``echo:``, the
reply is instead the words after ``echo:``, one token per word (see :func:`echo_tokens`);
if it contains ``roles:``, the reply is the role of every message of the request, in order
(``"system user assistant user"``: proof that a whole conversation arrived).
The number of tokens is ``--tokens`` (or the ``x-fake-tokens`` header), cut to the
request's ``max_tokens`` when that is smaller (then ``finish_reason`` is ``"length"``).

Behaviour switches are CLI flags; the per-request ones can be overridden by a request
header ``x-fake-<flag-name>`` (e.g. ``x-fake-token-delay-ms: 20``), so one server can
serve many test cases:

=============================  =========================================================
``--tokens N``                 tokens per reply (default 8)
``--token-delay-ms MS``        pause between tokens (default 0)
``--first-token-delay-ms MS``  pause before the first token (default 0)
``--fail-status N``            answer every completion with status N + OpenAI error body
``--die-after-tokens K``       ``os._exit(3)`` after sending K tokens (a crash)
``--die-signal NAME``          die that way by signal NAME instead (``SIGSEGV``: the
                               native crash of issue 12; no core file is written)
``--hang-after-tokens K``      stop sending after K tokens, keep the connection open
``--close-delimited 1``        stream without chunked encoding: the body ends when the
                               connection closes (as some proxies and servers answer)
``--omit-end 1``               end the stream cleanly but without the ``finish_reason``
                               chunk and ``data: [DONE]`` (a stream cut short upstream)
``--fail-first N``             answer the first N completions with ``--fail-status`` (503
                               if not given), then serve normally (retries that recover)
``--flush-each-token``         hand every token to the socket on its own and let the
                               event loop run before the next (a model server under
                               light load): the client sees one token per network read
                               where it keeps up, instead of bursts at zero delay
=============================  =========================================================

Process-level flags: ``--startup-delay-ms``, ``--startup-lines N`` (a loader's chatter before
listening), ``--exit-before-ready CODE``, ``--model``,
``--served-model-name``, ``--host``, ``--port`` (0 = pick a free one), ``--ignore-sigterm``,
``--quiet`` (no per-request log lines), ``--stats-file PATH``; vLLM's ``--max-model-len``
is accepted and ignored.

On start it prints ``fake-vllm listening on http://HOST:PORT`` (flushed). ``GET /stats``
returns counters (see :class:`Stats`); a "stream" there is one generation, streamed or
not. ``generations`` in it lists the last 1000 generations with when each was active
(``start``/``end`` on the server's monotonic clock, ``end`` null while it runs), its
``outcome`` and its ``tag`` (the ``x-fake-tag`` header, else the last user message): so a
test can tell from the upstream's side whether two requests ran at the same time. A client that goes away before the end of its generation (EOF on the socket or a
failed write) is counted in ``cancelled_streams`` and the generation stops at once.

SIGTERM/SIGINT: close the listener and exit 0 (unless ``--ignore-sigterm``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from typing import Any

DEFAULT_MODEL = "qwen2-7b-instruct"
DEFAULT_TOKENS = 8
DIE_EXIT_CODE = 3
MAX_BODY = 16 * 1024 * 1024
HEADER_LIMIT = 64 * 1024

# Flags a request may override with an ``x-fake-<name>`` header.
PER_REQUEST_FLAGS = (
    "tokens",
    "token-delay-ms",
    "first-token-delay-ms",
    "fail-status",
    "die-after-tokens",
    "hang-after-tokens",
    "close-delimited",
    "omit-end",
    "flush-each-token",
)


# --------------------------------------------------------------------------- pure helpers


def expected_tokens(n: int) -> list[str]:
    """The default reply's first ``n`` tokens: ``["w0", " w1", " w2", ...]``."""
    return [f"w{i}" if i == 0 else f" w{i}" for i in range(n)]


def expected_text(n: int) -> str:
    """The default reply's text for ``n`` tokens: ``"w0 w1 ... w{n-1}"``."""
    return "".join(expected_tokens(n))


def echo_tokens(text: str) -> list[str]:
    """Tokens of an ``echo:`` reply: the words of ``text``, a space leading each word that
    follows another word on its line; each line break is a token of its own (so Markdown
    with lines, lists and code blocks comes back as written, less runs of spaces)."""
    tokens: list[str] = []
    for piece in re.findall(r"[^\s]+|\n", text):
        tokens.append(piece if piece == "\n" or not tokens or tokens[-1] == "\n" else " " + piece)
    return tokens


def reply_tokens(messages: Any, n: int) -> list[str]:
    """The full token list for a request (before ``max_tokens`` is applied)."""
    prompt = last_user_content(messages)
    if prompt is not None and "echo:" in prompt:
        return echo_tokens(prompt.split("echo:", 1)[1])
    if prompt is not None and "roles:" in prompt:
        return echo_tokens(" ".join(str(m.get("role")) if isinstance(m, dict) else "?" for m in messages))
    return expected_tokens(n)


def last_user_content(messages: Any) -> str | None:
    """The text of the last ``user`` message (string content or text parts), if any."""
    if not isinstance(messages, list):
        return None
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
            return None
    return None


def error_body(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    """vLLM's (and OpenAI's) error body."""
    types = {
        400: "BadRequestError",
        401: "AuthenticationError",
        403: "PermissionDeniedError",
        404: "NotFoundError",
        409: "ConflictError",
        422: "UnprocessableEntityError",
        429: "RateLimitError",
        500: "InternalServerError",
        501: "NotImplementedError",
        503: "ServiceUnavailableError",
    }
    return {"error": {"message": message, "type": types.get(status, "InternalServerError"), "param": param, "code": status}}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@lru_cache(maxsize=8192)
def _json_str(s: str) -> bytes:
    return json.dumps(s, ensure_ascii=False).encode()


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (transfer-encoding: chunked) holding ``data``."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def _unframed(data: bytes) -> bytes:
    """``data`` as is, for a body delimited by closing the connection."""
    return data


# --------------------------------------------------------------------------- config, stats


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 0
    model: str = DEFAULT_MODEL
    tokens: int = DEFAULT_TOKENS
    token_delay_ms: float = 0.0
    first_token_delay_ms: float = 0.0
    fail_status: int | None = None
    die_after_tokens: int | None = None
    die_signal: str | None = None
    hang_after_tokens: int | None = None
    close_delimited: int = 0
    omit_end: int = 0
    flush_each_token: bool = False
    fail_first: int = 0
    startup_delay_ms: float = 0.0
    startup_lines: int = 0
    exit_before_ready: int | None = None
    ignore_sigterm: bool = False
    quiet: bool = False
    stats_file: str | None = None


@dataclass
class Behaviour:
    """The per-request switches: the server's config, overridden by ``x-fake-*`` headers."""

    tokens: int
    token_delay: float  # seconds
    first_token_delay: float  # seconds
    fail_status: int | None
    die_after_tokens: int | None
    hang_after_tokens: int | None
    close_delimited: bool = False
    omit_end: bool = False
    flush_each_token: bool = False

    @classmethod
    def for_request(cls, cfg: Config, headers: dict[str, str]) -> Behaviour:
        def num(name: str, default: Any) -> Any:
            raw = headers.get("x-fake-" + name)
            if raw is None or raw.strip() == "":
                return default
            return float(raw) if "delay" in name else int(raw)

        return cls(
            tokens=num("tokens", cfg.tokens),
            token_delay=num("token-delay-ms", cfg.token_delay_ms) / 1000.0,
            first_token_delay=num("first-token-delay-ms", cfg.first_token_delay_ms) / 1000.0,
            fail_status=num("fail-status", cfg.fail_status) or None,
            die_after_tokens=num("die-after-tokens", cfg.die_after_tokens),
            hang_after_tokens=num("hang-after-tokens", cfg.hang_after_tokens),
            close_delimited=bool(num("close-delimited", cfg.close_delimited)),
            omit_end=bool(num("omit-end", cfg.omit_end)),
            flush_each_token=bool(num("flush-each-token", int(cfg.flush_each_token))),
        )


@dataclass
class Stats:
    connections: int = 0  # TCP connections accepted
    requests: int = 0  # POST /v1/chat/completions received (any outcome)
    active_streams: int = 0  # generations in progress
    max_active_streams: int = 0  # peak of active_streams
    completed_streams: int = 0  # generations that reached their end
    cancelled_streams: int = 0  # generations whose client went away first
    tokens_sent: int = 0
    last_request: Any = None  # the last JSON body received on /v1/chat/completions
    last_request_headers: dict[str, str] = field(default_factory=dict)
    #: the last 1000 generations: {"tag", "start", "end", "outcome", "tokens"}
    generations: collections.deque = field(default_factory=lambda: collections.deque(maxlen=1000))

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["generations"] = list(self.generations)
        return out


# --------------------------------------------------------------------------- HTTP plumbing


class BadRequest(Exception):
    pass


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


class Disconnected(Exception):
    """The client went away."""


class Conn:
    """One client connection: reads requests, watches for EOF while a reply is paced."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.prefix = b""  # bytes the EOF watcher consumed (start of a pipelined request)
        self.must_close = False  # the last response's body ends with the connection
        self._eof_task: asyncio.Task[bytes] | None = None

    async def read_request(self) -> Request | None:
        try:
            head = self.prefix + await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            raise BadRequest("request head too large") from None
        self.prefix = b""
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            raise BadRequest("malformed request line") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest("malformed header")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if headers.get("expect", "").lower() == "100-continue":
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            total = 0
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest("malformed chunk size") from None
                if size == 0:
                    # trailers until the empty line
                    while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise BadRequest("body too large")
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise BadRequest("bad content-length") from None
            if length < 0 or length > MAX_BODY:
                raise BadRequest("bad content-length")
            body = await self.reader.readexactly(length)
        return Request(method.upper(), target, version, headers, body)

    # -- disconnect detection while a generation runs

    def watch_eof(self) -> None:
        self._eof_task = asyncio.ensure_future(self.reader.read(1))

    @property
    def gone(self) -> bool:
        t = self._eof_task
        return t is not None and t.done() and (t.cancelled() or t.exception() is not None or t.result() == b"")

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` but raise :class:`Disconnected` as soon as the client leaves."""
        t = self._eof_task
        if t is None or (t.done() and not self.gone):
            # Not watching, or the client already sent more bytes (a pipelined request), so
            # EOF cannot be seen without consuming them: plain pacing.
            if seconds >= 0:
                await asyncio.sleep(seconds)
            else:
                await asyncio.Event().wait()  # hang until cancelled (shutdown)
            return
        if not t.done():
            await asyncio.wait((t,), timeout=seconds if seconds >= 0 else None)
        if self.gone:
            raise Disconnected()

    async def stop_watching(self) -> None:
        t, self._eof_task = self._eof_task, None
        if t is None:
            return
        if not t.done():
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                # Our own cancel of the watcher, unless this task is itself being cancelled.
                ct = asyncio.current_task()
                if ct is not None and ct.cancelling():
                    raise
            return
        if not t.cancelled() and t.exception() is None:
            self.prefix = t.result()  # start of a pipelined request (b"" at EOF)

    def cancel_watch(self) -> None:
        t, self._eof_task = self._eof_task, None
        if t is not None and not t.done():
            t.cancel()

    async def send(self, data: bytes) -> None:
        if self.gone or self.writer.is_closing():
            raise Disconnected()
        self.writer.write(data)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise Disconnected() from e


def _response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}", "date: " + _http_date(), "server: fake-vllm"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)))
    return _date_cache[1]


# --------------------------------------------------------------------------- the server


class FakeVLLM:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stats = Stats()
        self.created = int(time.time())
        self.conns: set[Conn] = set()
        self.failed_first = 0  # completions failed so far under --fail-first
        self.server: asyncio.base_events.Server | None = None
        self.stopping: asyncio.Event | None = None

    # -- logging

    def log(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def log_request(self, conn: Conn, req: Request, status: int) -> None:
        if self.cfg.quiet:
            return
        peer = conn.writer.get_extra_info("peername") or ("?", 0)
        self.log(f'fake-vllm: {peer[0]}:{peer[1]} - "{req.method} {req.target} {req.version}" {status}')

    # -- connection loop

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(reader, writer)
        self.conns.add(conn)
        self.stats.connections += 1
        try:
            while True:
                try:
                    req = await conn.read_request()
                except BadRequest as e:
                    await self.send_json(conn, None, 400, error_body(str(e), 400), close=True)
                    return
                if req is None:
                    return
                keep = await self.dispatch(conn, req)
                if not keep or not req.keep_alive or conn.must_close:
                    return
        except (Disconnected, ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.conns.discard(conn)
            conn.cancel_watch()
            writer.close()

    async def send_json(
        self, conn: Conn, req: Request | None, status: int, obj: Any, close: bool = False
    ) -> bool:
        body = _dumps(obj)
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        if close:
            headers.append(("connection", "close"))
        await conn.send(_response_head(status, headers) + body)
        if req is not None:
            self.log_request(conn, req, status)
        return not close

    async def dispatch(self, conn: Conn, req: Request) -> bool:
        path, method = req.path, req.method
        routes = {
            "/v1/models": ("GET",),
            "/health": ("GET",),
            "/version": ("GET",),
            "/stats": ("GET",),
            "/v1/chat/completions": ("POST",),
        }
        if path not in routes:
            return await self.send_json(conn, req, 404, {"detail": "Not Found"})
        if method not in routes[path]:
            return await self.send_json(conn, req, 405, {"detail": "Method Not Allowed"})
        if path == "/health":
            await conn.send(_response_head(200, [("content-length", "0")]))
            self.log_request(conn, req, 200)
            return True
        if path == "/version":
            return await self.send_json(conn, req, 200, {"version": "0.0.0+fake"})
        if path == "/stats":
            return await self.send_json(conn, req, 200, self.stats.as_dict())
        if path == "/v1/models":
            card = {
                "id": self.cfg.model,
                "object": "model",
                "created": self.created,
                "owned_by": "vllm",
                "root": self.cfg.model,
                "parent": None,
                "max_model_len": 2048,
            }
            return await self.send_json(conn, req, 200, {"object": "list", "data": [card]})
        return await self.chat_completions(conn, req)

    # -- POST /v1/chat/completions

    async def chat_completions(self, conn: Conn, req: Request) -> bool:
        st = self.stats
        st.requests += 1
        st.last_request_headers = dict(req.headers)
        try:
            body = json.loads(req.body or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            st.last_request = None
            return await self.send_json(conn, req, 400, error_body(f"Invalid JSON body: {e}", 400))
        st.last_request = body
        try:
            beh = Behaviour.for_request(self.cfg, req.headers)
        except ValueError as e:
            return await self.send_json(conn, req, 400, error_body(f"bad x-fake-* header: {e}", 400))
        if self.failed_first < self.cfg.fail_first:
            self.failed_first += 1
            status = beh.fail_status or 503
            msg = f"fake-vllm: failing on purpose with status {status} ({self.failed_first} of the first {self.cfg.fail_first})"
            return await self.send_json(conn, req, status, error_body(msg, status))
        if beh.fail_status:
            msg = f"fake-vllm: failing on purpose with status {beh.fail_status}"
            return await self.send_json(conn, req, beh.fail_status, error_body(msg, beh.fail_status))
        if not isinstance(body, dict):
            return await self.send_json(conn, req, 400, error_body("Request body must be a JSON object", 400))
        model = body.get("model")
        if model != self.cfg.model:
            return await self.send_json(
                conn, req, 404, error_body(f"The model `{model}` does not exist.", 404, "model")
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return await self.send_json(conn, req, 400, error_body("`messages` must be a non-empty list", 400, "messages"))
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            return await self.send_json(conn, req, 400, error_body("max_tokens must be at least 1", 400, "max_tokens"))

        tokens = reply_tokens(messages, beh.tokens)
        finish = "stop"
        if max_tokens is not None and max_tokens < len(tokens):
            tokens = tokens[:max_tokens]
            finish = "length"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict)) or 1
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + len(tokens), "completion_tokens": len(tokens)}
        rid = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())

        st.active_streams += 1
        st.max_active_streams = max(st.max_active_streams, st.active_streams)
        generation = {"tag": req.headers.get("x-fake-tag") or (last_user_content(messages) or "")[:80],
                      "start": time.monotonic(), "end": None, "outcome": None, "tokens": len(tokens)}
        st.generations.append(generation)
        conn.watch_eof()
        outcome = "cancelled"
        try:
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                await self.stream(conn, req, beh, rid, created, tokens, finish, usage if include_usage else None)
            else:
                await self.generate_silently(conn, beh, len(tokens))
                message = {"role": "assistant", "content": "".join(tokens), "tool_calls": []}
                choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish, "stop_reason": None}
                obj = {"id": rid, "object": "chat.completion", "created": created, "model": self.cfg.model,
                       "choices": [choice], "usage": usage, "prompt_logprobs": None}
                await conn.stop_watching()
                await self.send_json(conn, req, 200, obj)
            outcome = "completed"
        except Disconnected:
            if not self.cfg.quiet:
                self.log(f"fake-vllm: client went away, aborted request {rid}")
            raise
        finally:
            st.active_streams -= 1
            generation["end"] = time.monotonic()
            generation["outcome"] = outcome
            if outcome == "completed":
                st.completed_streams += 1
            else:
                st.cancelled_streams += 1
            await conn.stop_watching()
        return True

    def _die(self, rid: str) -> None:
        self.log(f"fake-vllm: dying on purpose (die-after-tokens) during {rid}")
        sys.stderr.flush()
        if self.cfg.die_signal:
            import resource

            signum = signal.Signals[self.cfg.die_signal]
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash for the tests, not a core file
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        os._exit(DIE_EXIT_CODE)

    async def _hang(self, conn: Conn) -> None:
        # Send nothing more; keep the connection open until the client leaves.
        await conn.pause(-1)
        raise Disconnected()

    async def generate_silently(self, conn: Conn, beh: Behaviour, n: int) -> None:
        """Non-streamed generation: the same pacing, dying and hanging, no output meanwhile."""
        k = n
        for limit in (beh.die_after_tokens, beh.hang_after_tokens):
            if limit is not None:
                k = min(k, limit)
        total = beh.first_token_delay + beh.token_delay * max(k - 1, 0) if k else 0.0
        if total > 0:
            await conn.pause(total)
        elif conn.gone:
            raise Disconnected()
        self.stats.tokens_sent += k
        if beh.die_after_tokens is not None and beh.die_after_tokens <= n:
            self._die("a non-streamed request")
        if beh.hang_after_tokens is not None and beh.hang_after_tokens <= n:
            await self._hang(conn)

    async def stream(
        self,
        conn: Conn,
        req: Request,
        beh: Behaviour,
        rid: str,
        created: int,
        tokens: list[str],
        finish: str,
        usage: dict[str, int] | None,
    ) -> None:
        head = _dumps({"id": rid, "object": "chat.completion.chunk", "created": created, "model": self.cfg.model})[:-1]
        # Per-token bytes are prefix + json(token) + suffix, framed as one HTTP chunk.
        prefix = b'data: ' + head + b',"choices":[{"index":0,"delta":{"content":'
        suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        role = (b'data: ' + head + b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                b'"logprobs":null,"finish_reason":null}]}\n\n')
        if beh.close_delimited:  # no framing: the connection's end is the body's end
            frame = _unframed
            resp_head = _response_head(200, [("content-type", "text/event-stream; charset=utf-8"), ("connection", "close")])
        else:
            frame = _chunk
            resp_head = _response_head(200, [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("transfer-encoding", "chunked"),
            ])
        await conn.send(resp_head + frame(role))
        self.log_request(conn, req, 200)

        die, hang = beh.die_after_tokens, beh.hang_after_tokens
        if die == 0:
            self._die(rid)
        if hang == 0:
            await self._hang(conn)
        st = self.stats
        loop = asyncio.get_running_loop()
        due = loop.time()  # pacing against a schedule, so per-token overhead does not add up
        for i, tok in enumerate(tokens):
            delay = beh.first_token_delay if i == 0 else beh.token_delay
            if delay > 0:
                due += delay
                remaining = due - loop.time()
                if remaining > 0:
                    await conn.pause(remaining)
            await conn.send(frame(prefix + _json_str(tok) + suffix))
            st.tokens_sent += 1
            if beh.flush_each_token:
                await asyncio.sleep(0)  # the next token is written after the loop ran once
            sent = i + 1
            if die is not None and sent == die:
                self._die(rid)
            if hang is not None and sent == hang:
                await self._hang(conn)

        tail = (b'data: ' + head + b',"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":'
                + _json_str(finish) + b',"stop_reason":null}]}\n\n')
        out = b"" if beh.omit_end else frame(tail)
        if usage is not None:
            out += frame(b'data: ' + head + b',"choices":[],"usage":' + _dumps(usage) + b'}\n\n')
        if not beh.omit_end:
            out += frame(b"data: [DONE]\n\n")
        if not beh.close_delimited:
            out += b"0\r\n\r\n"
        await conn.send(out)
        conn.must_close = beh.close_delimited  # the body ends with the connection

    # -- lifecycle

    async def serve(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()

        def on_term(signame: str) -> None:
            if cfg.ignore_sigterm and signame == "SIGTERM":
                self.log("fake-vllm: ignoring SIGTERM")
                return
            self.log(f"fake-vllm: {signame} received, shutting down")
            self.stopping.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_term, sig.name)

        for number in range(cfg.startup_lines):  # a model loader's chatter, as llama.cpp's
            self.log(f"llama_model_loader: - kv {number:4d}: fake.key.{number} = value {number}")
        if cfg.startup_delay_ms > 0:
            self.log(f"fake-vllm: starting up (waiting {cfg.startup_delay_ms:g} ms before listening)")
            try:
                await asyncio.wait_for(self.stopping.wait(), cfg.startup_delay_ms / 1000.0)
                return  # told to stop while starting
            except TimeoutError:
                pass
        if cfg.exit_before_ready is not None:
            self.log(f"fake-vllm: exiting before ready with code {cfg.exit_before_ready}")
            sys.stderr.write(f"fake-vllm: simulated startup failure (exit {cfg.exit_before_ready})\n")
            sys.stderr.flush()
            raise SystemExit(cfg.exit_before_ready)

        self.server = await asyncio.start_server(
            self.handle, cfg.host, cfg.port, limit=HEADER_LIMIT, backlog=1024, reuse_address=True
        )
        port = self.server.sockets[0].getsockname()[1]
        host = cfg.host if ":" not in cfg.host else f"[{cfg.host}]"
        self.log(f"fake-vllm listening on http://{host}:{port}")
        if cfg.stats_file:
            asyncio.ensure_future(self._write_stats_file())
        try:
            await self.stopping.wait()
        finally:
            self.server.close()
            for conn in list(self.conns):
                conn.writer.transport.abort()
            if cfg.stats_file:
                self._dump_stats_file()

    async def _write_stats_file(self) -> None:
        while True:
            self._dump_stats_file()
            await asyncio.sleep(0.1)  # periodic export, not synchronisation

    def _dump_stats_file(self) -> None:
        path = self.cfg.stats_file
        assert path is not None
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(_dumps(self.stats.as_dict()))
        os.replace(tmp, path)


# --------------------------------------------------------------------------- CLI


def _signal_name(text: str) -> str:
    name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
    if name not in signal.Signals.__members__:
        raise argparse.ArgumentTypeError(f"no such signal: {text}")
    return name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fake_vllm.py", description="A fake vLLM OpenAI-compatible server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="0 picks a free port (printed on start)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="served model name (default %(default)s)")
    p.add_argument("--served-model-name", default=None, help="as vLLM: overrides --model as the served name")
    p.add_argument("--max-model-len", type=int, default=None, help="accepted for vLLM compatibility; ignored")
    p.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    p.add_argument("--token-delay-ms", type=float, default=0.0)
    p.add_argument("--first-token-delay-ms", type=float, default=0.0)
    p.add_argument("--fail-status", type=int, default=None)
    p.add_argument("--die-after-tokens", type=int, default=None)
    p.add_argument("--die-signal", type=_signal_name, default=None, metavar="NAME", help="die by this signal (e.g. SIGSEGV) instead of exit 3")
    p.add_argument("--hang-after-tokens", type=int, default=None)
    p.add_argument("--close-delimited", type=int, default=0, metavar="0|1")
    p.add_argument("--omit-end", type=int, default=0, metavar="0|1")
    p.add_argument("--flush-each-token", action="store_true")
    p.add_argument("--fail-first", type=int, default=0, metavar="N")
    p.add_argument("--startup-delay-ms", type=float, default=0.0)
    p.add_argument("--startup-lines", type=int, default=0, help="print N loader lines before listening")
    p.add_argument("--exit-before-ready", type=int, default=None, metavar="CODE")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no per-request log lines")
    p.add_argument("--stats-file", default=None, metavar="PATH")
    return p


def config_from_args(argv: list[str] | None = None) -> Config:
    a = build_parser().parse_args(argv)
    return Config(
        host=a.host,
        port=a.port,
        model=a.served_model_name or a.model,
        tokens=a.tokens,
        token_delay_ms=a.token_delay_ms,
        first_token_delay_ms=a.first_token_delay_ms,
        fail_status=a.fail_status,
        die_after_tokens=a.die_after_tokens,
        die_signal=a.die_signal,
        hang_after_tokens=a.hang_after_tokens,
        close_delimited=a.close_delimited,
        omit_end=a.omit_end,
        flush_each_token=a.flush_each_token,
        fail_first=a.fail_first,
        startup_delay_ms=a.startup_delay_ms,
        startup_lines=a.startup_lines,
        exit_before_ready=a.exit_before_ready,
        ignore_sigterm=a.ignore_sigterm,
        quiet=a.quiet,
        stats_file=a.stats_file,
    )


def _early_term(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_args(argv)
    # Until the event loop installs its handlers: ignore SIGTERM, or exit 0 on it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN if cfg.ignore_sigterm else _early_term)
    asyncio.run(FakeVLLM(cfg).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
