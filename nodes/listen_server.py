"""A small HTTP server that a listener service runs beside flowctl's API for the flow's lifetime.

model-compose's `listener:` serves its own port (callbacks from upstreams, webhooks that
start runs). This is that port: a few fixed routes (`(method, path)` → handler), each
request's body read whole (at most `max_body` bytes) and parsed as model-compose does (JSON,
a form, else text), each answer JSON. uvicorn serves it on a socket bound before the
service reports itself started, so a port that is taken fails the start, naming the port.

    server = ListenServer("callbacks", "127.0.0.1", 8090, {("POST", "/callback"): handler})
    await server.start()   # bound and serving
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

#: largest request body a listener reads, in bytes (a callback or webhook is small)
MAX_BODY = 1_048_576
#: seconds a client gets to send a request's body
BODY_TIMEOUT = 15.0
#: seconds the server gets to start listening, and to stop
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Incoming:
    """One request as the listener's templates read it: `${body...}`, `${query...}`, `${headers...}`."""

    body: Any
    query: dict[str, str]
    headers: dict[str, str]

    def scope(self) -> dict[str, Any]:
        return {"body": self.body, "query": self.query, "headers": self.headers}


#: a route's handler: the request in, (status, JSON body) out
Handler = Callable[[Incoming], Awaitable[tuple[int, Any]]]


def parse_body(content_type: str, raw: bytes) -> Any:
    """A callback's body as model-compose reads it: JSON for a JSON type, a mapping for a
    form, else text (None when empty). ValueError for a JSON body that does not parse.

    >>> parse_body("application/json", b'{"a": 1}'), parse_body("application/x-www-form-urlencoded", b"a=1&b=x")
    ({'a': 1}, {'a': '1', 'b': 'x'})
    """
    if not raw.strip():
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    text = raw.decode("utf-8", errors="replace")
    if media == "application/json" or media.endswith("+json"):
        return json.loads(text)
    if media == "application/x-www-form-urlencoded":
        return dict(parse_qsl(text, keep_blank_values=True))
    return text


class ListenServer:
    def __init__(self, name: str, host: str, port: int, routes: Mapping[tuple[str, str], Handler], *, max_body: int = MAX_BODY) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.routes = {(method.upper(), path): handler for (method, path), handler in routes.items()}
        self.max_body = max_body
        self._server: Any = None
        self._task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        """Bind and serve; OSError when the port cannot be bound."""
        import uvicorn

        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # flowctl handles the signals itself
                yield

        config = uvicorn.Config(self._app, interface="asgi3", log_level="warning", access_log=False, lifespan="off", server_header=False, timeout_graceful_shutdown=2)
        self._server = server = Server(config)
        self._task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name=f"flowctl-listener-{self.name}")
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                while not server.started:
                    if self._task.done():
                        break
                    await asyncio.sleep(0.01)  # uvicorn offers no event for "listening"
        except TimeoutError:
            pass
        if not server.started:
            sock.close()
            await self.stop()
            raise OSError(f"the listener on port {self.port} did not start")

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        server, task, self._server, self._task = self._server, self._task, None, None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            async with asyncio.timeout(_STOP_TIMEOUT):
                await asyncio.shield(task)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        except Exception:  # the server's own failure: it is stopped either way
            pass

    async def _app(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return
        handler = self.routes.get((scope["method"], scope["path"]))
        if handler is None:
            allowed = [method for method, path in self.routes if path == scope["path"]]
            if allowed:
                await _answer(send, 405, {"error": f"{scope['path']} takes {', '.join(allowed)}"})
            else:
                await _answer(send, 404, {"error": f"no route {scope['path']} on this listener; routes: " + ", ".join(sorted({path for _, path in self.routes}))})
            return
        raw = bytearray()
        size = 0
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size <= self.max_body:
                        raw += chunk
                    # past the limit the rest is read and dropped, so the client (still
                    # sending) hears the 413 instead of a reset connection
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            await _answer(send, 408, {"error": f"the body did not arrive within {BODY_TIMEOUT:g}s"})
            return
        if size > self.max_body:
            await _answer(send, 413, {"error": f"the body is larger than {self.max_body:,} bytes"})
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            body = parse_body(headers.get("content-type", ""), bytes(raw))
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than Python parses
            await _answer(send, 400, {"error": f"the body is not valid JSON: {exc}"})
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        status, answer = await handler(Incoming(body, query, headers))
        await _answer(send, status, answer)


async def _answer(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, body: Any) -> None:
    data = json.dumps(body, ensure_ascii=False, default=str).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.set_inheritable(False)
    except BaseException:
        sock.close()
        raise
    return sock
