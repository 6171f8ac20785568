"""Streams under load and cut short: 32 at once lose or reorder nothing; a client that goes
away, or a cancel, closes the upstream request (the fake vLLM server counts it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse, connect_sse
from support.fake import expected_tokens
from support.flowctl_up import UpHandle, fake_flow_yaml, start_up
from support.procs import free_port
from support.waiting import async_wait_until, wait_until


@pytest.fixture(scope="module")
def fake_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, fake_port: int) -> Iterator[UpHandle]:
    tmp: Path = tmp_path_factory.mktemp("streams")
    handle = start_up(fake_flow_yaml(fake_port, tokens=8), tmp, env={"FLOWCTL_SSE_KEEPALIVE": "0.2"})
    yield handle
    handle.stop()


def fake_stats(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()


async def test_32_concurrent_streams_lose_and_reorder_nothing(up: UpHandle) -> None:
    n_tokens = 60

    async def one(client: httpx.AsyncClient, i: int) -> None:
        body = {"input": {"prompt": f"stream {i}", "tokens": str(n_tokens), "delay_ms": "1"}}
        async with aconnect_sse(client, "POST", "/workflows/chat/runs", json=body) as source:
            events = [e async for e in source.aiter_sse()]
        chunks = [e for e in events if e.event == "message"]
        assert [e.data for e in chunks] == expected_tokens(n_tokens), f"stream {i}"
        assert [int(e.id) for e in chunks] == list(range(1, n_tokens + 1))
        assert events[-1].event == "done" and json.loads(events[-1].data)["chunks"] == n_tokens

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=up.api, timeout=30, limits=limits) as client:
        await asyncio.gather(*(one(client, i) for i in range(32)))


@contextlib.contextmanager
def long_stream(client: httpx.Client) -> Iterator[tuple[str, Iterator[ServerSentEvent]]]:
    """A run of 5000 tokens 5 ms apart, open and past its first token: (run id, the rest)."""
    body = {"input": {"prompt": "long", "tokens": "5000", "delay_ms": "5"}}
    with connect_sse(client, "POST", "/workflows/chat/runs", json=body) as source:
        events = source.iter_sse()
        assert next(events).data == "w0"
        yield source.response.headers["x-run-id"], events


def test_a_client_that_goes_away_closes_the_upstream(up: UpHandle, fake_port: int) -> None:
    before = fake_stats(fake_port)["cancelled_streams"]
    with httpx.Client(base_url=up.api, timeout=10) as client:
        with long_stream(client) as (run_id, events):
            assert next(events).data == " w1"
        # leaving the block closes the connection mid-stream
    wait_until(lambda: fake_stats(fake_port)["cancelled_streams"] > before, timeout=5, message="the upstream request was not closed")
    with httpx.Client(base_url=up.api, timeout=10) as client:
        run = wait_until(lambda: (lambda r: r if r["status"] != "running" else None)(client.get(f"/runs/{run_id}").json()), timeout=5)
    assert run["status"] == "cancelled" and run["chunks"] < 5000


def test_cancel_ends_the_stream_and_closes_the_upstream(up: UpHandle, fake_port: int) -> None:
    before = fake_stats(fake_port)["cancelled_streams"]
    with httpx.Client(base_url=up.api, timeout=10) as client:
        with long_stream(client) as (run_id, events):
            cancelled = client.post(f"/runs/{run_id}/cancel")
            assert cancelled.status_code == 200
            assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancelled"] is True
            rest = list(events)
        assert rest[-1].event == "done"
        assert json.loads(rest[-1].data)["status"] == "cancelled"
        wait_until(lambda: fake_stats(fake_port)["cancelled_streams"] > before, timeout=5)
        # cancelling a finished run is harmless
        again = client.post(f"/runs/{run_id}/cancel")
        assert again.status_code == 200 and again.json()["cancelled"] is False


def test_an_idle_stream_gets_keep_alive_comments(up: UpHandle) -> None:
    body = {"input": {"prompt": "slow", "tokens": "2", "delay_ms": "700"}}
    with httpx.Client(base_url=up.api, timeout=10) as client:
        with client.stream("POST", "/workflows/chat/runs", json=body) as r:
            lines = list(r.iter_lines())
    assert ": keep-alive" in lines
    assert [line for line in lines if line.startswith("data: ") and not line.startswith("data: {")] == ["data: w0", "data:  w1"]


async def test_a_collecting_client_that_goes_away_cancels_too(up: UpHandle, fake_port: int) -> None:
    """Accept: application/json (collected) runs are cancelled on disconnect as well."""
    before = (await asyncio.to_thread(fake_stats, fake_port))["cancelled_streams"]
    body = {"input": {"prompt": "long", "tokens": "5000", "delay_ms": "5"}}
    async with httpx.AsyncClient(base_url=up.api, timeout=10) as client:
        tokens_before = (await asyncio.to_thread(fake_stats, fake_port))["tokens_sent"]
        request = asyncio.ensure_future(client.post("/workflows/chat/runs", json=body, headers={"Accept": "application/json"}))
        # wait until the fake is streaming this run's tokens, then hang up
        await async_wait_until(lambda: fake_stats(fake_port)["tokens_sent"] > tokens_before + 5, timeout=5)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    await async_wait_until(lambda: fake_stats(fake_port)["cancelled_streams"] > before, timeout=5, message="collected run was not cancelled")


def test_a_token_reaches_the_client_before_the_next_one_exists(up: UpHandle, fake_port: int) -> None:
    """Bursts are written together, but nothing waits for a burst: with a second between
    tokens, the client reads the first while the upstream has sent only that one."""
    body = {"input": {"prompt": "paced", "tokens": "3", "delay_ms": "1000"}}
    before = fake_stats(fake_port)["tokens_sent"]
    with httpx.Client(base_url=up.api, timeout=10) as client:
        with connect_sse(client, "POST", "/workflows/chat/runs", json=body) as source:
            assert next(source.iter_sse()).data == "w0"
            assert fake_stats(fake_port)["tokens_sent"] - before == 1
