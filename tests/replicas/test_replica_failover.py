"""The balancing rules, over real HTTP to real fake servers but with a pool built by hand (so
a member can point at a port nothing listens on while it still counts as ready): a replica
that refuses the connection is cooled down and the run goes to another; a replica that breaks
off after the first byte is never asked again for that run; least in-flight with rotation."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import pytest
from replicas_support import replicas_flow
from support.fake import expected_text
from support.procs import free_port
from support.waiting import async_wait_until

from flowctl.engine.errors import RunError
from flowctl.engine.flow import load_flow_text
from flowctl.engine.scheduler import new_http_client, run_workflow
from flowctl.engine.templating import validate_inputs
from flowctl.nodes.balancer import COOLDOWN, Endpoint, ReplicaPool


class Clock:
    """A monotonic clock the test moves by hand (the cooldown's)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def member(name: str, url: str, clock: Clock | None = None) -> Endpoint:
    endpoint = Endpoint(name, lambda: url, lambda: True)
    if clock is not None:
        endpoint._clock = clock
    return endpoint


async def chat(pool: ReplicaPool, **inputs: Any) -> str:
    """One run of the replica flow's chat workflow, balanced over `pool`."""
    flow = load_flow_text(replicas_flow(2, "unused"))
    workflow = flow.workflow("chat")
    assert workflow is not None
    raw = {"prompt": "hello", **{key: str(value) for key, value in inputs.items()}}
    http = new_http_client()
    try:
        chunks = run_workflow(flow, workflow, validate_inputs(workflow.inputs, raw), run_id="t", http=http, service_outputs={}, pools={"llm": pool})
        return "".join([str(chunk) async for chunk in chunks])
    finally:
        await http.aclose()


def served(servers: Sequence[Any]) -> list[int]:
    return [server.stats()["requests"] for server in servers]


async def test_a_refused_connection_cools_the_replica_down_and_the_run_goes_to_another(fake_vllm) -> None:
    good = fake_vllm(tokens=3)
    clock = Clock()
    dead = member("llm.0", f"http://127.0.0.1:{free_port()}", clock)  # nothing listens there
    alive = member("llm.1", good.url, clock)
    pool = ReplicaPool("llm", lambda: [dead, alive])

    assert await chat(pool) == expected_text(3)  # rotation tried llm.0 first, then llm.1
    assert (dead.requests, dead.failures, dead.cooling) == (1, 1, True)
    assert (alive.requests, alive.failures, alive.in_flight) == (1, 0, 0)
    for _ in range(3):  # cooling: passed over
        assert await chat(pool) == expected_text(3)
    assert dead.requests == 1 and alive.requests == 4 and served([good]) == [4]

    clock.now += COOLDOWN + 0.1  # cooled off: tried again in its turn, and cooled again
    assert await chat(pool) == expected_text(3)
    assert dead.requests == 2 and dead.failures == 2 and dead.cooling and alive.requests == 5


async def test_no_replica_ready_fails_the_run_naming_the_service(fake_vllm) -> None:
    pool = ReplicaPool("llm", lambda: [Endpoint("llm.0", lambda: None, lambda: False)])
    with pytest.raises(RunError, match="service 'llm': no replica is ready"):
        await chat(pool)


async def test_a_replica_that_breaks_off_after_the_first_byte_is_not_asked_again(fake_vllm) -> None:
    first, second = fake_vllm(tokens=20), fake_vllm(tokens=20)
    members = [member("llm.0", first.url), member("llm.1", second.url)]
    pool = ReplicaPool("llm", lambda: members)
    with pytest.raises(RunError, match=r"replica 'llm\.0': POST http://127\.0\.0\.1:\d+/v1/chat/completions: the server closed the connection mid-response"):
        await chat(pool, die_after=3)  # the fake exits after 3 tokens
    first.wait_exit()
    assert served([second]) == [0]  # never resent
    assert (members[0].failures, members[0].in_flight, members[1].requests) == (1, 0, 0)


async def test_least_in_flight_then_rotation() -> None:
    a, b, c = (member(f"llm.{i}", f"http://127.0.0.1:{9000 + i}") for i in range(3))
    pool = ReplicaPool("llm", lambda: [a, b, c])
    picks = [pool.pick() for _ in range(3)]
    assert [p.name for p in picks if p] == ["llm.0", "llm.1", "llm.2"]
    b.release()  # llm.1 is the only one with nothing in flight
    assert (chosen := pool.pick()) is not None and chosen.name == "llm.1"
    for endpoint in (a, b, c):
        endpoint.in_flight = 0
    assert [p.name for p in (pool.pick(), pool.pick()) if p] == ["llm.2", "llm.0"]  # turns go on from the last pick


async def test_a_run_cancelled_before_the_answer_or_closed_mid_stream_gives_its_slot_back(fake_vllm) -> None:
    # a replica that takes the connection and never answers: the run waits for its first byte
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", free_port()))
        silent.listen(8)
        mute = member("llm.0", f"http://127.0.0.1:{silent.getsockname()[1]}")
        pool = ReplicaPool("llm", lambda: [mute])
        waiting = asyncio.ensure_future(chat(pool))
        await async_wait_until(lambda: mute.in_flight == 1, timeout=5)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (mute.in_flight, mute.failures) == (0, 0)

    server = fake_vllm(tokens=50, token_delay_ms=20)
    streaming = member("llm.0", server.url)
    flow = load_flow_text(replicas_flow(2, "unused"))
    workflow = flow.workflow("chat")
    assert workflow is not None
    http = new_http_client()
    try:
        chunks = run_workflow(flow, workflow, validate_inputs(workflow.inputs, {"prompt": "hi"}), run_id="t", http=http, service_outputs={}, pools={"llm": ReplicaPool("llm", lambda: [streaming])})
        async for _ in chunks:
            assert streaming.in_flight == 1
            break
        await chunks.aclose()  # the client went away mid-stream
        assert (streaming.in_flight, streaming.failures, streaming.requests) == (0, 0, 1)
    finally:
        await http.aclose()
