"""http-stream's timeouts against a real (fake) vLLM server: first byte and idle, measured
as time spent waiting on the upstream only."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from support.fake import expected_tokens
from support.flows import chat_nodes

from flowctl.engine.errors import UpstreamError
from flowctl.engine.flow import load_flow_text
from flowctl.engine.scheduler import new_http_client, run_workflow


def flow_for(url: str, first_byte: float, idle: float) -> str:
    return "nodes:\n" + chat_nodes(f"{url}/v1/chat/completions", content="hi", timeout={"connect": 2, "first_byte": first_byte, "idle": idle})


async def collect(url: str, *, first_byte: float, idle: float, pause: float = 0.0) -> list[str]:
    flow = load_flow_text(flow_for(url, first_byte, idle))
    workflow = flow.default_workflow
    got: list[str] = []
    async with new_http_client() as http:
        chunks = run_workflow(flow, workflow, {}, run_id="t", http=http, service_outputs={})
        try:
            async for chunk in chunks:
                got.append(chunk)
                if pause:
                    await asyncio.sleep(pause)  # a slow client, not synchronisation
        finally:
            await chunks.aclose()
    return got


async def test_idle_upstream_fails_the_run_after_the_idle_timeout(fake_vllm) -> None:
    server = fake_vllm(tokens=10, hang_after_tokens=3)
    got: list[str] = []
    started = time.monotonic()
    with pytest.raises(UpstreamError, match=r"no data for 0\.3s"):
        flow = load_flow_text(flow_for(server.url, 5, 0.3))
        async with new_http_client() as http:
            async for chunk in run_workflow(flow, flow.default_workflow, {}, run_id="t", http=http, service_outputs={}):
                got.append(chunk)
    assert got == expected_tokens(10)[:3]
    assert time.monotonic() - started < 5, "the idle limit, not the first-byte one, applied"


async def test_slow_first_token_fails_after_first_byte_timeout(fake_vllm) -> None:
    """The role chunk comes at once; the first-byte limit runs until a chunk carries output."""
    server = fake_vllm(tokens=3, first_token_delay_ms=3000)
    started = time.monotonic()
    with pytest.raises(UpstreamError, match=r"no data for 0\.4s"):
        await collect(server.url, first_byte=0.4, idle=10)
    assert time.monotonic() - started < 2.5


async def test_an_upstream_that_never_answers_fails_after_first_byte_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(UpstreamError, match=r"no response within 0\.3s"):
            await collect(url, first_byte=0.3, idle=10)


async def test_first_token_may_take_longer_than_idle_within_first_byte(fake_vllm) -> None:
    server = fake_vllm(tokens=3, first_token_delay_ms=600)
    assert await collect(server.url, first_byte=5, idle=0.3) == expected_tokens(3)


async def test_time_spent_by_a_slow_consumer_is_not_upstream_idleness(fake_vllm) -> None:
    server = fake_vllm(tokens=4)
    assert await collect(server.url, first_byte=5, idle=0.2, pause=0.35) == expected_tokens(4)
    assert (await server.astats())["completed_streams"] >= 1
