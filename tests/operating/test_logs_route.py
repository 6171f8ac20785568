"""`GET {base_path}/services/{node}/logs`: a service's log for the web UI and scripts. JSON for
a tail; SSE (`data: <line>`, `event: rotated`) with `follow=1`, new lines as they are written,
ending when flowctl stops; 404 with a did-you-mean for an unknown service, never a path."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from support.fake import fake_vllm_argv
from support.flowctl_up import fake_flow_yaml
from support.flows import chat_nodes, chat_url, server_node
from support.procs import free_port
from support.waiting import async_wait_until, wait_until

from flowctl.engine.flow import load_flow_text
from flowctl.engine.host import FlowHost
from flowctl.nodes import process_log
from flowctl.nodes.process_log import ProcessLog, log_file


def loud_flow(port: int) -> str:
    """The fake server logging every request (a new log line per request)."""
    return "version: 1\nname: loud\nnodes:\n" + server_node("llm", fake_vllm_argv(port), port) + chat_nodes(chat_url(port), needs="llm")


def sse_lines(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each SSE event (comments skipped)."""

    async def events() -> AsyncIterator[tuple[str, str]]:
        event, data = "message", []
        async for line in response.aiter_lines():
            if line == "":
                if data:
                    yield event, "\n".join(data)
                event, data = "message", []
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith("event: "):
                event = line[7:]

    return events()


def test_a_tail_as_json_and_the_refusals(flowctl_up) -> None:
    port = free_port()
    up = flowctl_up(loud_flow(port), api_key="k" * 32)
    with up.client(timeout=5) as client:
        answer = client.get("/services/llm/logs", params={"tail": 2})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
        body = answer.json()
        assert body["node"] == "llm" and len(body["lines"]) == 2
        everything = client.get("/services/llm/logs", params={"tail": 1000}).json()["lines"]
        assert f"fake-vllm listening on http://127.0.0.1:{port}" in everything and everything[-2:] == body["lines"]
        stamped = client.get("/services/llm/logs", params={"tail": 1, "timestamps": 1}).json()["lines"][0]
        assert stamped.endswith(body["lines"][-1]) and stamped[:4].isdigit()
        own = client.get("/services/flowctl/logs", params={"tail": 50}).json()["lines"]
        assert any(line.startswith("serving ") for line in own)

        unknown = client.get("/services/lm/logs")
        assert unknown.status_code == 404 and "did you mean 'llm'" in unknown.json()["error"]
        for bad in ("-1", "10001", "x"):
            assert client.get("/services/llm/logs", params={"tail": bad}).status_code in (400, 422)
        for path in ("/services/..%2F..%2Fup/logs", "/services/%2E%2E/logs", "/services/chat/logs"):
            refused = client.get(path)
            assert refused.status_code in (404, 422), (path, refused.status_code)
    assert httpx.get(up.api + "/services/llm/logs", timeout=5).status_code == 401, "the API key guards it"


async def test_follow_streams_new_lines_and_ends_when_flowctl_stops(flowctl_up) -> None:
    port = free_port()
    up = flowctl_up(loud_flow(port))
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=20.0)) as client:
        async with client.stream("GET", up.api + "/services/llm/logs", params={"tail": 1, "follow": 1}) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            events = sse_lines(response)
            first = await anext(events)
            assert first[0] == "message"
            for _ in range(3):
                await client.get(f"http://127.0.0.1:{port}/v1/models")
            seen = []
            while len(seen) < 3:
                event, data = await asyncio.wait_for(anext(events), timeout=10)
                if "GET /v1/models" in data:
                    seen.append(data)
            up.signal()  # SIGTERM: the stream ends (does not hold the shutdown)
            with contextlib.suppress(StopAsyncIteration, httpx.RemoteProtocolError):
                while True:
                    await asyncio.wait_for(anext(events), timeout=10)
    assert up.wait(20) == 0


async def test_follow_across_rotation_says_rotated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The log is written here (small rotation size); the route runs in a real server in
    this process, over a flow whose service `llm` is not started (only its log is read)."""
    import uvicorn

    from flowctl.server.app import create_app

    monkeypatch.setattr(process_log, "LOG_ROTATE_BYTES", 2048)
    flow_file = tmp_path / "flow.yml"
    host = FlowHost(load_flow_text(fake_flow_yaml(free_port()), str(flow_file)), state_dir=tmp_path / "state")
    writer = ProcessLog()
    writer.open(log_file(host.state_dir, "llm"))
    writer.line("first")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(host), log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await async_wait_until(lambda: server.started, timeout=10)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=20.0)) as client:
            async with client.stream("GET", f"http://127.0.0.1:{port}/api/services/llm/logs", params={"tail": 5, "follow": 1}) as response:
                events = sse_lines(response)
                assert await anext(events) == ("message", "first")
                got: list[tuple[str, str]] = []
                for number in range(120):  # ~50 bytes a line: a rotation every ~40 lines
                    writer.line(f"line {number}")
                    if number % 20 == 19:  # at most one rotation between two looks
                        while not got or got[-1][1] != f"line {number}":
                            got.append(await asyncio.wait_for(anext(events), timeout=10))
        assert [data for event, data in got if event == "message"] == [f"line {n}" for n in range(120)]
        rotations = [data for event, data in got if event == "rotated"]
        assert len(rotations) >= 2 and set(rotations) == {"llm"}
    finally:
        writer.close()
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=10)
        await host.stop(0)
        sock.close()


def test_the_web_ui_port_answers_it_too(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port()))
    answer = wait_until(lambda: (r := httpx.get(f"{up.ui}/api/services/llm/logs", params={"tail": 3}, timeout=5)).status_code == 200 and r, timeout=5)
    assert answer.json()["node"] == "llm"
