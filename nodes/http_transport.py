"""The upstream transport under httpx: plain-`http://` HTTP/1.1 on asyncio protocols, parsed
by httptools; everything else goes to httpx's own transport.

Why: a model server streams one HTTP chunk per token, and every chunk went through httpcore's
connection machinery, h11's pure-Python chunked reader and httpx's stream wrappers; at 32
streams the upstream client was a third to a half of flowctl's CPU, and httpcore's pool scan
(O(N²) in pooled connections) ran on every request start and end. This transport keeps httpx
as the client API (`Request`, `Response`, timeouts, exceptions) and replaces only the wire:

- the request head and body go out in one write;
- httptools (uvicorn's C parser, already a dependency) decodes the response, chunked framing
  included, inside `data_received`;
- a body read yields everything one network read delivered (several tokens in a burst
  become one item, so the SSE splitter above sees them at once);
- idle keep-alive connections wait per origin in a LIFO list: O(1) to take and to give back.

Served here: `http://` requests whose body is already in memory, any method but HEAD (whose
response has no body the parser could know of) and CONNECT. Everything else (https, proxies,
streamed request bodies) goes to `fallback`, by default `httpx.AsyncHTTPTransport`.

It behaves as httpx's own transport does, and its test suite runs against both
(tests/engine/test_upstream_transport.py):

- errors are httpx's own (`ConnectError`, `ReadError`, `RemoteProtocolError`,
  `ReadTimeout`, `WriteTimeout`, `PoolTimeout`...);
- a request is never sent twice: an idle connection is checked before it is reused (a
  socket with an end-of-file or stray bytes waiting is closed, not used), and a connection
  that breaks after the request went out is an error, never a retry (the server may have
  read it: a model server would generate twice);
- timeouts: `connect`, `read` (between reads), `write` (until the request is in the
  kernel's buffers), `pool` (waiting for room under `max_connections`);
- `max_connections` caps open connections, idle ones included (an idle one to another
  origin is closed to make room); None (flowctl's default) means no cap, as each run holds
  one connection and runs are bounded by the workflows' `max_concurrency`.
"""

from __future__ import annotations

import asyncio
import select
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import httptools
import httpx

#: bytes buffered from the socket before reading pauses until the consumer catches up
_HIGH_WATER = 256 * 1024
_FORBIDDEN_IN_HEAD = (b"\r", b"\n", b"\0")


#: (host, port): the key of the keep-alive pool
_Origin = tuple[str, int]


class _Connection(asyncio.Protocol):
    """One TCP connection carrying one request/response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        # per response
        self._parser: httptools.HttpResponseParser | None = None
        self.status_code = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self.complete = False
        self.until_close = False
        self.error: httpx.TransportError | None = None
        self.bytes_received = 0
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not `asyncio.Transport` subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if self._parser is None or self.complete:
            # bytes nobody asked for (a server talking out of turn): this connection
            # cannot be trusted with another request
            self._fail(httpx.RemoteProtocolError("the server sent data outside a response"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response ({exc})"))
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._wake_drain()
        if self._parser is not None and not self.complete and self.error is None:
            if self.headers_done and self.until_close:
                self.complete = True  # a body delimited by the end of the connection
            elif self.headers_done:
                self.error = httpx.RemoteProtocolError("the server closed the connection mid-response")
            else:
                self.error = httpx.RemoteProtocolError("the server closed the connection without a response")
        self._wake()

    # -- httptools callbacks

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        self.status_code = parser.get_status_code()
        self.headers_done = True
        names = {name.lower() for name, _ in self.headers}
        self.until_close = b"content-length" not in names and b"transfer-encoding" not in names

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        self.complete = True
        self.reusable = parser.should_keep_alive() and not self.until_close

    # -- used by the transport

    def begin(self, head_and_body: bytes) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status_code, self.reason, self.headers = 0, b"", []
        self.headers_done = self.complete = self.until_close = self.reusable = False
        self.body.clear()
        self._buffered = 0
        self.error = None
        self.bytes_received = 0
        assert self.transport is not None
        self.transport.write(head_and_body)

    def take_body(self) -> bytes:
        body = self.body
        data = body.popleft() if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def wait(self, timeout: float | None, on_timeout: type[httpx.TimeoutException]) -> None:
        """Until the next parser event (or the connection ends); `on_timeout` after `timeout` s."""
        waiter = self._waiter = self._loop.create_future()
        try:
            if timeout is None:
                await waiter
            else:
                async with asyncio.timeout(timeout):
                    await waiter
        except TimeoutError:
            raise on_timeout(f"no data from the server for {timeout:g}s") from None
        finally:
            self._waiter = None

    async def drained(self, timeout: float | None) -> None:
        """Until the request is out of our buffer (in the kernel's), or WriteTimeout."""
        while self._write_paused and not self.closed:
            waiter = self._drain_waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                raise httpx.WriteTimeout(f"the request was not sent within {timeout:g}s (the server does not read)") from None
            finally:
                self._drain_waiter = None

    def has_pending_input(self) -> bool:
        """An idle connection with bytes or an end-of-file waiting that the event loop has not
        handed us yet: the server closed it (or talks out of turn). Not to be reused."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self.reusable = False
        if self._parser is not None and not self.complete and self.error is None:
            # closed on our side (the client is closing): a read error, as httpx says it
            self.error = httpx.ReadError("the connection was closed while the response was being read")
        if self.transport is not None and not self.closed:
            self.transport.abort()  # an unfinished response: drop it now, do not drain
        self.closed = True

    @property
    def idle_and_open(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def _fail(self, error: httpx.TransportError) -> None:
        if self.error is None:
            self.error = error
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _ResponseBody(httpx.AsyncByteStream):
    """The body of one response, read off its connection; the connection goes back to the
    pool when the body was read to its end, and is closed when the reader stops early."""

    def __init__(self, transport: StreamingTransport, origin: _Origin, conn: _Connection, read_timeout: float | None) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: _Connection | None = conn
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            raise httpx.StreamClosed()
        while True:
            if conn.body:
                yield conn.take_body()
                continue
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                self._release()
                return
            await conn.wait(self._read_timeout, httpx.ReadTimeout)

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._transport._give_back(self._origin, conn)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.complete and not conn.body and conn.error is None:
            self._transport._give_back(self._origin, conn)
        else:
            # the reader stopped early: closing is how a model server learns to stop
            self._transport._drop(conn)


class StreamingTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=StreamingTransport())`; see the module docstring."""

    def __init__(self, *, fallback: httpx.AsyncBaseTransport | None = None, max_idle_per_origin: int = 64, max_connections: int | None = None) -> None:
        self._fallback = fallback if fallback is not None else httpx.AsyncHTTPTransport(trust_env=False)
        self._max_idle = max_idle_per_origin
        self._max_connections = max_connections
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._connecting = 0
        #: set (and replaced) whenever a connection is given back or closed: pool waiters look again
        self._changed = asyncio.Event()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http" or request.method in ("HEAD", "CONNECT"):
            return await self._fallback.handle_async_request(request)
        try:
            body = request.content
        except httpx.RequestNotRead:  # a streamed request body
            return await self._fallback.handle_async_request(request)
        if self._closed:
            raise RuntimeError("the transport is closed")
        head = _request_head(request, len(body))
        payload = head + body if body else head
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        origin = (url.host, url.port or 80)
        conn = await self._acquire(origin, timeouts)
        try:
            conn.begin(payload)
            await conn.drained(timeouts.get("write"))
            # once the request went out, a broken connection is an error, never a retry:
            # the server may have read it
            await self._await_head(conn, timeouts.get("read"))
            if conn.error is not None:
                raise conn.error
        except BaseException:
            self._drop(conn)
            raise
        return httpx.Response(
            conn.status_code,
            headers=conn.headers,
            stream=_ResponseBody(self, origin, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason},
        )

    async def aclose(self) -> None:
        self._closed = True
        try:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()
            self._idle.clear()
            for conn in list(self._busy):
                conn.close()
            self._busy.clear()
        finally:
            await self._fallback.aclose()

    # -- pool

    async def _acquire(self, origin: _Origin, timeouts: dict[str, float | None]) -> _Connection:
        """An idle connection to `origin`, or a new one once there is room under the cap."""
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                while True:
                    conn = self._take(origin)
                    if conn is not None:
                        break
                    if self._has_room() or self._evict_idle():
                        self._connecting += 1
                        try:
                            conn = await self._connect(origin, timeouts.get("connect"))
                        finally:
                            self._connecting -= 1
                        break
                    await self._changed.wait()
        except TimeoutError:
            raise httpx.PoolTimeout(f"no connection free within {timeouts.get('pool'):g}s ({self._max_connections} at most)") from None
        self._busy.add(conn)
        return conn

    def _has_room(self) -> bool:
        if self._max_connections is None:
            return True
        held = len(self._busy) + self._connecting + sum(len(conns) for conns in self._idle.values())
        return held < self._max_connections

    def _evict_idle(self) -> bool:
        """Close one idle connection (to any origin) to make room; False if there is none."""
        for conns in self._idle.values():
            if conns:
                conns.pop(0).close()
                return True
        return False

    def _take(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.idle_and_open and not conn.has_pending_input():
                return conn
            conn.close()
        return None

    def _give_back(self, origin: _Origin, conn: _Connection) -> None:
        self._busy.discard(conn)
        if self._closed or not conn.reusable or not conn.idle_and_open:
            conn.close()
        else:
            idle = self._idle.setdefault(origin, [])
            if len(idle) >= self._max_idle:
                conn.close()
            else:
                idle.append(conn)
        self._signal()

    def _drop(self, conn: _Connection) -> None:
        """Close a connection that is not coming back (broken, or its reader left early)."""
        self._busy.discard(conn)
        conn.close()
        self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _connect(self, origin: _Origin, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = origin
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: _Connection(loop), host, port)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} within {timeout:g}s") from None
        except (OSError, OverflowError) as exc:  # OverflowError: a port out of range
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
        return conn

    @staticmethod
    async def _await_head(conn: _Connection, timeout: float | None) -> None:
        while not conn.headers_done and conn.error is None:
            await conn.wait(timeout, httpx.ReadTimeout)


def _request_head(request: httpx.Request, body_length: int) -> bytes:
    """`METHOD target HTTP/1.1` and the headers httpx built, with the body's length."""
    target = request.url.raw_path or b"/"
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    has_length = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"content-length":
            has_length = True
        elif lowered == b"transfer-encoding":
            continue  # the body is in memory: always sent with a length
        lines.append(name + b": " + value)
    if not has_length and (body_length or request.method in ("POST", "PUT", "PATCH")):
        lines.append(b"Content-Length: " + str(body_length).encode())
    if b" " in target or any(bad in line for line in lines for bad in _FORBIDDEN_IN_HEAD):
        # a template put a line break (or a NUL) into a header or the path: refuse rather
        # than let request data write headers of its own
        raise httpx.LocalProtocolError("a header or the URL contains a line break or NUL; refusing to send it")
    return b"\r\n".join(lines) + b"\r\n\r\n"

