"""The upstream transport (`nodes/http_transport.py`) under a real `httpx.AsyncClient`:
against the fake vLLM server for the streaming path, and against small scripted TCP servers
on 127.0.0.1 for the wire's edge cases (bodies without a length, stale keep-alive, garbage,
large bodies, a request the server read but did not answer, timeouts, the connection cap).

Every behaviour test runs twice: over flowctl's transport and over httpx's own
(`httpx.AsyncHTTPTransport`), so the two cannot drift apart. Only the messages (and the
white-box tests at the end) are flowctl's own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from support.fake import DEFAULT_MODEL, expected_tokens
from support.waiting import async_wait_until

from flowctl.engine.scheduler import new_http_client
from flowctl.nodes.http_transport import StreamingTransport
from flowctl.nodes.sse_parser import iter_sse_data_bytes

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(params=["streaming", "httpx"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def make_client(kind: str, max_connections: int | None = None) -> httpx.AsyncClient:
    """flowctl's upstream client, over its own transport or over httpx's."""
    if kind == "streaming":
        return new_http_client(StreamingTransport(max_connections=max_connections))
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=64)
    return new_http_client(httpx.AsyncHTTPTransport(limits=limits, trust_env=False))


def ours(kind: str, pattern: str) -> str | None:
    """A message `pytest.raises` checks only on flowctl's transport (httpx words it its way)."""
    return pattern if kind == "streaming" else None


def chat_body() -> dict:
    return {"model": DEFAULT_MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def stream_tokens(client: httpx.AsyncClient, url: str, **kwargs) -> list[str]:
    async with client.stream("POST", url, json=chat_body(), **kwargs) as response:
        assert response.status_code == 200
        tokens = []
        async for data in iter_sse_data_bytes(response.aiter_raw()):
            if data == "[DONE]":
                continue
            delta = json.loads(data)["choices"][0]["delta"]
            if delta.get("content"):
                tokens.append(delta["content"])
        return tokens


class ScriptedServer:
    """A TCP server on 127.0.0.1 whose connection handler is the test's; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Handler], Awaitable[ScriptedServer]]]:
    servers: list[ScriptedServer] = []

    async def start(handler: Handler) -> ScriptedServer:
        served = ScriptedServer(handler)
        served.server = await asyncio.start_server(served._on_connect, "127.0.0.1", 0)
        servers.append(served)
        return served

    try:
        yield start
    finally:
        for served in servers:
            assert served.server is not None
            served.server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
    return head


# -- the streaming path ------------------------------------------------------------------------


async def test_streams_reuse_one_keep_alive_connection(fake_vllm, kind) -> None:
    server = fake_vllm(tokens=6)
    before = (await server.astats())["connections"]
    async with make_client(kind) as client:
        for _ in range(5):
            assert await stream_tokens(client, server.chat_url) == expected_tokens(6)
    stats = await server.astats()
    assert stats["requests"] == 5 and stats["completed_streams"] == 5
    # the other connection is the stats request's own
    assert stats["connections"] - before == 2, "each run opened its own connection: keep-alive is broken"


async def test_stopping_early_closes_the_connection_and_the_next_request_gets_a_new_one(fake_vllm, kind) -> None:
    server = fake_vllm(tokens=200, token_delay_ms=5)
    async with make_client(kind) as client:
        async with client.stream("POST", server.chat_url, json=chat_body()) as response:
            async for _ in response.aiter_raw():
                break  # the consumer leaves after the first read
        stats = await async_wait_until(
            lambda: _when(server.astats(), lambda s: s["cancelled_streams"] == 1),
            message="the upstream never saw the stream cancelled",
        )
        assert stats["completed_streams"] == 0
        checked = stats["connections"]
        assert await stream_tokens(client, server.chat_url) == expected_tokens(200)
    stats = await server.astats()
    # one for the next stream (the cancelled connection was not reused), one for this check
    assert stats["connections"] - checked == 2


async def _when(stats: Awaitable[dict], ok: Callable[[dict], bool]) -> dict | None:
    value = await stats
    return value if ok(value) else None


async def test_a_server_dying_mid_stream_is_a_remote_protocol_error(fake_vllm, kind) -> None:
    server = fake_vllm(tokens=50, die_after_tokens=3)
    async with make_client(kind) as client:
        with pytest.raises(httpx.RemoteProtocolError, match=ours(kind, "mid-response")):
            await stream_tokens(client, server.chat_url)


async def test_read_timeout_when_the_server_goes_quiet(fake_vllm, kind) -> None:
    server = fake_vllm(tokens=50, hang_after_tokens=2)
    async with make_client(kind) as client:
        with pytest.raises(httpx.ReadTimeout):
            await stream_tokens(client, server.chat_url, timeout=httpx.Timeout(5.0, read=0.3))


async def test_nothing_listening_is_a_connect_error(scripted, kind) -> None:
    served = await scripted(read_request)
    url = served.url
    assert served.server is not None
    served.server.close()
    await served.server.wait_closed()
    async with make_client(kind) as client:
        with pytest.raises(httpx.ConnectError, match=ours(kind, "cannot connect")):
            await client.get(url)


async def test_a_line_break_in_a_header_is_refused_before_anything_is_sent(fake_vllm, kind) -> None:
    server = fake_vllm(tokens=2)
    async with make_client(kind) as client:
        with pytest.raises(httpx.LocalProtocolError, match=ours(kind, "line break")):
            await client.post(server.chat_url, json=chat_body(), headers={"x-note": "a\r\nx-injected: 1"})
    stats = await server.astats()
    assert stats["requests"] == 0


# -- the wire's edge cases ---------------------------------------------------------------------


async def test_a_body_delimited_by_closing_the_connection(scripted, kind) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ")
        await writer.drain()
        writer.write(b"world")
        await writer.drain()

    served = await scripted(handler)
    async with make_client(kind) as client:
        first = await client.get(served.url)
        second = await client.get(served.url)
    assert first.text == second.text == "hello world"
    assert served.connections == 2, "a connection whose end was the body's end was reused"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_keep_alive_connection_the_server_closed_is_not_reused(scripted, kind, method) -> None:
    """The idle connection's end-of-file is seen before reuse: nothing is sent on it (a POST
    is never sent twice, so it must not go out on a dead connection)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # then close without saying `Connection: close`, as an idle timeout would

    served = await scripted(handler)
    async with make_client(kind) as client:
        for _ in range(3):
            response = await client.request(method, served.url, json={"n": 1} if method == "POST" else None)
            assert response.text == "ok"
    assert served.connections == 3


async def test_a_post_the_server_read_but_did_not_answer_is_not_sent_again(scripted, kind) -> None:
    """The server reads the second request on a kept-alive connection, then closes it. It may
    have acted on it (a model server would generate twice): an error, never a resend."""
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        requests.append(await read_request(reader))
        # then close without a word

    served = await scripted(handler)
    async with make_client(kind) as client:
        assert (await client.post(served.url, json={"n": 1})).text == "ok"
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(served.url, json={"n": 2})
    assert len(requests) == 2, "the request was sent again"
    assert served.connections == 1


async def test_a_server_that_does_not_read_the_request_is_a_write_timeout(scripted, kind) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # never reads: the request fills every buffer on the way

    served = await scripted(handler)
    try:
        async with make_client(kind) as client:
            with pytest.raises(httpx.WriteTimeout):
                async with asyncio.timeout(20):  # a transport that ignores `write` would wait on
                    await client.post(served.url, content=b"x" * (32 * 1024 * 1024), timeout=httpx.Timeout(5.0, write=0.3))
    finally:
        release.set()


async def test_the_connection_cap_makes_a_request_wait_then_a_pool_timeout(scripted, kind) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")
            await writer.drain()
            await release.wait()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    served = await scripted(handler)
    try:
        async with make_client(kind, max_connections=1) as client:
            async with client.stream("GET", served.url) as held:
                assert held.status_code == 200
                with pytest.raises(httpx.PoolTimeout):
                    await client.get(served.url, timeout=httpx.Timeout(5.0, pool=0.2))
                waiting = asyncio.ensure_future(client.get(served.url, timeout=httpx.Timeout(10.0)))
                release.set()
                assert await held.aread() == b"ok"
            assert (await waiting).text == "ok"  # it got the connection once the first was done
    finally:
        release.set()
    assert served.connections == 1


async def test_cookies_set_by_the_upstream_are_not_sent_on_later_runs(scripted, kind) -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: session=user-a; Path=/\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    served = await scripted(handler)
    async with make_client(kind) as client:
        for _ in range(2):
            assert (await client.get(served.url)).text == "ok"
    assert len(seen) == 2
    assert b"cookie:" not in seen[1].lower(), "one run's cookie went out with the next run"


async def test_garbage_instead_of_a_response_is_a_protocol_error(scripted, kind) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await reader.read()

    served = await scripted(handler)
    async with make_client(kind) as client:
        with pytest.raises(httpx.RemoteProtocolError, match=ours(kind, "malformed")):
            await client.get(served.url)


async def test_a_reader_that_falls_behind_pauses_the_socket_and_still_gets_every_byte(scripted) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB, far past the transport's pause threshold

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(payload), 65536):
            piece = payload[start : start + 65536]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await read_request(reader)  # the same connection carries the next request
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    served = await scripted(handler)
    received = bytearray()
    async with new_http_client() as client:
        transport = client._transport
        assert isinstance(transport, StreamingTransport)
        async with client.stream("GET", served.url) as response:
            pieces = response.aiter_raw()
            received += await anext(pieces)
            (conn,) = transport._busy  # the one connection, white-box: is reading paused?
            await async_wait_until(lambda: conn._paused, message="the socket was read on while the reader fell behind")
            async with asyncio.timeout(10):  # reading must resume once the reader catches up
                async for piece in pieces:
                    received += piece
        assert (await client.get(served.url)).status_code == 204
    assert bytes(received) == payload
    assert served.connections == 1


async def test_other_schemes_go_to_the_fallback_transport() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, text="via fallback")

    transport = StreamingTransport(fallback=httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("https://model.example/v1/models")).text == "via fallback"
        assert (await client.head("http://127.0.0.1:9/")).status_code == 200
    assert seen == ["https://model.example/v1/models", "http://127.0.0.1:9/"]


async def test_closing_the_client_closes_streams_in_flight(fake_vllm, kind) -> None:
    server = fake_vllm(tokens=500, token_delay_ms=5)
    client = make_client(kind)
    response = await client.send(client.build_request("POST", server.chat_url, json=chat_body()), stream=True)
    try:
        await client.aclose()
        with pytest.raises(httpx.ReadError):
            async for _ in response.aiter_raw():
                pass
    finally:
        await response.aclose()
    await async_wait_until(
        lambda: _when(server.astats(), lambda s: s["cancelled_streams"] == 1),
        message="the upstream stream outlived the client",
    )
