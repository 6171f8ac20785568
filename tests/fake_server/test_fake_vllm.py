"""The fake vLLM server itself: real process, real HTTP (httpx), real SSE."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess

import httpx
import pytest
from httpx_sse import aconnect_sse
from support.fake import DEFAULT_MODEL, DIE_EXIT_CODE, expected_text, expected_tokens
from support.paths import FAKE_VLLM, PYTHON
from support.procs import cpu_seconds, free_port, pid_alive, port_in_use
from support.waiting import async_wait_until, wait_until

pytestmark = pytest.mark.timeout(30)

CHUNK_RE = re.compile(
    r'^\{"id":"(chatcmpl-[0-9a-f]+)","object":"chat\.completion\.chunk","created":\d+,'
    r'"model":"([^"]+)","choices":\[\{"index":0,"delta":(\{.*\}),"logprobs":null,'
    r'"finish_reason":(null|"stop"|"length")(,"stop_reason":null)?\}\]\}$'
)


def chat(prompt: str = "hello", *, stream: bool = True, **extra) -> dict:
    return {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": prompt}], "stream": stream, **extra}


def parse_events(body: str) -> list[str]:
    """SSE body -> list of ``data`` payloads; asserts vLLM's framing (one data line per event)."""
    assert body.endswith("\n\n"), body[-200:]
    events = body[:-2].split("\n\n")
    out = []
    for ev in events:
        assert ev.startswith("data: ") and "\n" not in ev, repr(ev)
        out.append(ev[len("data: "):])
    return out


def stats_where(srv, **want):
    async def check():
        s = await srv.astats()
        return s if all(s[k] == v for k, v in want.items()) else None

    return check


def check_stream(payloads: list[str], tokens: list[str], finish: str = "stop") -> None:
    """The exact event sequence vLLM sends: role chunk, one chunk per token, finish chunk, [DONE]."""
    assert payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    assert len(chunks) == len(tokens) + 2
    ids = set()
    for raw in chunks:
        m = CHUNK_RE.match(raw)
        assert m, raw
        ids.add(m[1])
        assert m[2] == DEFAULT_MODEL
    assert len(ids) == 1, "one completion id per stream"
    objs = [json.loads(c) for c in chunks]
    first, *middle, last = (o["choices"][0] for o in objs)
    assert first == {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    assert [c["delta"] for c in middle] == [{"content": t} for t in tokens]
    assert all(c["finish_reason"] is None for c in middle)
    assert last["delta"] == {} and last["finish_reason"] == finish


async def test_models_health_and_version(fake_vllm):
    srv = fake_vllm()
    async with httpx.AsyncClient(base_url=srv.url, timeout=5) as c:
        r = await c.get("/v1/models")
        assert r.status_code == 200
        body = r.json()
        assert body["object"] == "list"
        [card] = body["data"]
        assert card["id"] == DEFAULT_MODEL and card["object"] == "model" and card["owned_by"] == "vllm"
        assert isinstance(card["created"], int)
        r = await c.get("/health")
        assert r.status_code == 200 and r.content == b""
        assert (await c.get("/nope")).status_code == 404
        assert (await c.get("/v1/chat/completions")).status_code == 405
    assert f"fake-vllm listening on http://127.0.0.1:{srv.port}" in srv.log_text()


async def test_stream_wire_format_is_chunked_one_event_per_chunk(fake_vllm):
    """Raw socket: HTTP/1.1 chunked encoding, each chunk exactly one SSE event, then 0-chunk."""
    srv = fake_vllm(tokens=5)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    body = json.dumps(chat()).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    status, *header_lines = head.strip().split("\r\n")
    headers = dict(h.lower().split(": ", 1) for h in header_lines)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers
    chunks = []
    while True:
        size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).strip(), 16)
        data = await asyncio.wait_for(reader.readexactly(size + 2), 5)
        assert data.endswith(b"\r\n")
        if size == 0:
            break
        chunks.append(data[:-2].decode())
    # Keep-alive: the connection is still usable after the terminating chunk.
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200 OK\r\n")
    writer.close()
    assert all(c.startswith("data: ") and c.endswith("\n\n") and c.count("\n") == 2 for c in chunks), chunks
    check_stream([c[6:-2] for c in chunks], expected_tokens(5))


async def test_every_token_arrives_once_and_in_order(fake_vllm):
    srv = fake_vllm()
    n = 300
    async with httpx.AsyncClient(timeout=10) as c:
        async with aconnect_sse(c, "POST", srv.chat_url, json=chat(), headers={"x-fake-tokens": str(n)}) as es:
            assert es.response.status_code == 200
            assert es.response.headers["content-type"] == "text/event-stream; charset=utf-8"
            payloads = [ev.data async for ev in es.aiter_sse()]
    check_stream(payloads, expected_tokens(n))
    text = "".join(json.loads(p)["choices"][0]["delta"].get("content", "") for p in payloads[:-1])
    assert text == expected_text(n)
    assert text.split() == [f"w{i}" for i in range(n)]
    stats = srv.stats()
    assert stats["completed_streams"] == 1 and stats["active_streams"] == 0
    assert stats["last_request"]["messages"][0]["content"] == "hello"


async def test_max_tokens_cuts_with_finish_reason_length_and_echo(fake_vllm):
    srv = fake_vllm(tokens=20)
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(srv.chat_url, json=chat(max_tokens=3))
        check_stream(parse_events(r.text), expected_tokens(3), finish="length")
        # max_tokens larger than the reply: normal stop.
        r = await c.post(srv.chat_url, json=chat(max_tokens=50))
        check_stream(parse_events(r.text), expected_tokens(20), finish="stop")
        # echo: the words after "echo:" in the last user message.
        body = chat(stream=True)
        body["messages"] = [
            {"role": "system", "content": "echo: not me"},
            {"role": "user", "content": "please echo: the quick  brown fox"},
        ]
        r = await c.post(srv.chat_url, json=body)
        check_stream(parse_events(r.text), ["the", " quick", " brown", " fox"])


async def test_non_stream_completion(fake_vllm):
    srv = fake_vllm(tokens=6)
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(srv.chat_url, json=chat(stream=False, temperature=0.7))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == DEFAULT_MODEL
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == expected_text(6)
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 6
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 6
    assert srv.stats()["last_request"]["temperature"] == 0.7


async def test_errors_unknown_model_bad_json_and_fail_status(fake_vllm):
    srv = fake_vllm()
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(srv.chat_url, json={**chat(), "model": "gpt-4o"})
        assert r.status_code == 404
        assert r.json() == {"error": {"message": "The model `gpt-4o` does not exist.", "type": "NotFoundError",
                                      "param": "model", "code": 404}}
        r = await c.post(srv.chat_url, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "BadRequestError"
        r = await c.post(srv.chat_url, json=chat(), headers={"x-fake-fail-status": "503"})
        assert r.status_code == 503
        err = r.json()["error"]
        assert err["code"] == 503 and err["type"] == "ServiceUnavailableError" and err["message"]
        # The header applies to that request only.
        r = await c.post(srv.chat_url, json=chat(stream=False))
        assert r.status_code == 200
    assert srv.stats()["requests"] == 4


async def test_fail_status_flag(fake_vllm):
    srv = fake_vllm(fail_status=500)
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(srv.chat_url, json=chat())
        assert r.status_code == 500 and r.json()["error"]["code"] == 500
        assert (await c.get(srv.url + "/v1/models")).status_code == 200


async def test_die_after_tokens_kills_process_mid_stream(fake_vllm):
    srv = fake_vllm(die_after_tokens=3, tokens=10)
    got = []
    async with httpx.AsyncClient(timeout=10) as c:
        # A peer that vanishes mid-body: httpx reports an incomplete chunked read (or a reset).
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            async with aconnect_sse(c, "POST", srv.chat_url, json=chat()) as es:
                async for ev in es.aiter_sse():
                    got.append(ev.data)
    assert [json.loads(p)["choices"][0]["delta"].get("content") for p in got] == ["", *expected_tokens(3)]
    assert srv.wait_exit(10) == DIE_EXIT_CODE
    assert not pid_alive(srv.pid)


async def test_client_disconnect_counts_cancelled_stream(fake_vllm):
    srv = fake_vllm(token_delay_ms=20, tokens=10_000)
    async with httpx.AsyncClient(timeout=10) as c:
        async with c.stream("POST", srv.chat_url, json=chat()) as r:
            lines = r.aiter_lines()
            seen = 0
            async for line in lines:
                if line.startswith("data: ") and '"content":"' in line and "role" not in line:
                    seen += 1
                    if seen == 2:
                        break
            assert (await srv.astats())["active_streams"] == 1
        # Leaving the block closed the response (and its connection): the server must notice.
    stats = await async_wait_until(
        stats_where(srv, cancelled_streams=1, active_streams=0), timeout=5,
        message="server did not see the disconnect",
    )
    assert stats["completed_streams"] == 0
    assert stats["tokens_sent"] < 10_000
    assert "client went away" in srv.log_text()


async def test_hang_after_tokens_keeps_connection_open(fake_vllm):
    srv = fake_vllm(tokens=10)
    got = []
    timeout = httpx.Timeout(10, read=0.5)
    async with httpx.AsyncClient(timeout=timeout) as c:
        with pytest.raises(httpx.ReadTimeout):
            async with aconnect_sse(c, "POST", srv.chat_url, json=chat(), headers={"x-fake-hang-after-tokens": "2"}) as es:
                async for ev in es.aiter_sse():
                    got.append(json.loads(ev.data)["choices"][0]["delta"].get("content"))
    assert got == ["", *expected_tokens(2)]
    stats = await async_wait_until(
        stats_where(srv, cancelled_streams=1, active_streams=0), timeout=5, message="hung stream not cancelled"
    )
    assert stats["tokens_sent"] == 2


async def test_keep_alive_reuses_one_connection(fake_vllm):
    srv = fake_vllm(tokens=4)
    before = srv.stats()["connections"]
    async with httpx.AsyncClient(timeout=10) as c:
        for stream in (True, False, True):
            r = await c.post(srv.chat_url, json=chat(stream=stream))
            assert r.status_code == 200
    # One connection for the three requests, plus the one the stats call below opens.
    assert srv.stats()["connections"] - before == 2


async def test_concurrent_streams_are_cheap(fake_vllm):
    srv = fake_vllm(quiet=True, tokens=200, token_delay_ms=2)
    n = 64
    start_cpu = cpu_seconds(srv.pid)
    limits = httpx.Limits(max_connections=n)

    async def one(c):
        async with c.stream("POST", srv.chat_url, json=chat()) as r:
            body = b"".join([b async for b in r.aiter_raw()])
        return body.decode()

    async with httpx.AsyncClient(timeout=30, limits=limits) as c:
        bodies = await asyncio.gather(*(one(c) for _ in range(n)))
    used = cpu_seconds(srv.pid) - start_cpu
    for body in bodies:
        payloads = parse_events(body)
        assert len(payloads) == 203 and payloads[-1] == "[DONE]"
        assert [json.loads(p)["choices"][0]["delta"].get("content") for p in payloads[1:-2]] == expected_tokens(200)
    stats = srv.stats()
    assert stats["completed_streams"] == n and stats["cancelled_streams"] == 0
    assert stats["max_active_streams"] > 1
    # 12,800 token events: the fake must stay far from being the bottleneck.
    assert used < 2.0, f"fake vllm used {used:.2f}s CPU for {n} streams"


def test_sigterm_exits_zero_promptly_even_with_open_stream(fake_vllm):
    srv = fake_vllm(hang_after_tokens=1)
    with httpx.Client(timeout=5) as c, c.stream("POST", srv.chat_url, json=chat()) as r:
        for line in r.iter_lines():  # bounded by the client's read timeout
            if '"content":"w0"' in line:
                break
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait_exit(5) == 0
    assert not port_in_use(srv.port)
    assert "SIGTERM received" in srv.log_text()


def test_ignore_sigterm_needs_sigkill(fake_vllm):
    srv = fake_vllm(ignore_sigterm=True)
    srv.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "ignoring SIGTERM" in srv.log_text(), timeout=5, message="SIGTERM not seen")
    assert srv.alive()
    assert httpx.get(srv.url + "/health", timeout=5).status_code == 200
    assert srv.stop(grace=0.3) == -signal.SIGKILL


def test_exit_before_ready():
    port = free_port()
    proc = subprocess.run(
        [PYTHON, str(FAKE_VLLM), "--port", str(port), "--exit-before-ready", "7"],
        capture_output=True, text=True, timeout=10,
    )
    assert proc.returncode == 7
    assert "exiting before ready with code 7" in proc.stdout
    assert "listening" not in proc.stdout
    assert not port_in_use(port)


def test_startup_delay_then_ready(fake_vllm):
    srv = fake_vllm(wait_ready=False, startup_delay_ms=800)
    wait_until(lambda: "starting up" in srv.log_text(), timeout=5, message="no startup line")
    assert not port_in_use(srv.port)
    wait_until(
        lambda: httpx.get(srv.url + "/v1/models", timeout=1).status_code == 200,
        timeout=10, ignore=(httpx.TransportError,), message="never became ready",
    )
    assert f"listening on http://127.0.0.1:{srv.port}" in srv.log_text()


def test_model_flag_and_port_zero(fake_vllm):
    srv = fake_vllm(served_model_name="my-model")
    assert srv.port > 0
    assert httpx.get(srv.url + "/v1/models", timeout=5).json()["data"][0]["id"] == "my-model"
    r = httpx.post(srv.chat_url, json={**chat(stream=False), "model": "my-model"}, timeout=5)
    assert r.status_code == 200 and r.json()["model"] == "my-model"
