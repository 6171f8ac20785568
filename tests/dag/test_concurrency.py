"""Independent branches run at once, proved from the upstream's side (the fake's log of when
each generation was active), never by wall-clock; the first failure cancels the rest and is
named; closing a run closes every branch's request."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from support.dag import chat_node, consume, generations, only_generation, overlapped, run_flow, run_flow_outcome
from support.fake import expected_text, expected_tokens
from support.waiting import async_wait_until

from flowctl.engine.errors import UpstreamError
from flowctl.engine.flow import load_flow_text
from flowctl.engine.scheduler import new_http_client, run_workflow


def tags(*names: str) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{name}-{run}" for name in names]


def fan_in_flow(upstream, a: str, b: str, c: str, *, a_fake: dict | None = None, b_fake: dict | None = None) -> str:
    """a and b (independent, whole answers), then c streams a reply to a prompt made of both."""
    return f"""
nodes:
  a:
{chat_node(upstream, a, **(a_fake or {"tokens": 5, "token_delay_ms": 40}))}
  b:
{chat_node(upstream, b, **(b_fake or {"tokens": 5, "token_delay_ms": 40}))}
  c:
{chat_node(upstream, c, stream=True, prompt="echo: ${nodes.a.output} + ${nodes.b.output}")}
  reply:
    type: sse-sink
    source: ${{nodes.c.output as stream/text}}
"""


async def test_independent_branches_run_at_the_same_time(upstream) -> None:
    a, b, c = tags("a", "b", "c")
    chunks, _ = await run_flow(fan_in_flow(upstream, a, b, c))
    assert "".join(chunks) == f"{expected_text(5)} + {expected_text(5)}"
    ga, gb, gc = only_generation(upstream, a), only_generation(upstream, b), only_generation(upstream, c)
    assert overlapped(ga, gb), f"a and b ran one after the other: {ga}, {gb}"
    assert gc["start"] >= max(ga["end"], gb["end"]), "c started before both of its inputs were there"


async def test_a_chain_still_waits_for_each_step(upstream) -> None:
    first, second = tags("first", "second")
    flow = f"""
nodes:
  first:
{chat_node(upstream, first, tokens=3, token_delay_ms=20)}
  second:
{chat_node(upstream, second, prompt="echo: ${nodes.first.output} again")}
  out:
    type: value
    value: ${{nodes.second.output}}
workflows:
  w: {{output: out}}
"""
    chunks, _ = await run_flow(flow)
    assert chunks == [f"{expected_text(3)} again"]
    assert only_generation(upstream, second)["start"] >= only_generation(upstream, first)["end"]


async def test_the_first_failure_cancels_the_other_branches_and_names_its_node(upstream) -> None:
    a, b, c = tags("a", "b", "c")
    flow = fan_in_flow(upstream, a, b, c, a_fake={"tokens": 3, "token_delay_ms": 100, "fail_status": 500}, b_fake={"tokens": 200, "token_delay_ms": 50})
    with pytest.raises(UpstreamError) as failed:
        await run_flow(flow)
    assert failed.value.node == "a"
    assert "500" in str(failed.value)
    gb = only_generation(upstream, b)
    assert gb["outcome"] == "cancelled", f"b was not stopped when a failed: {gb}"
    assert generations(upstream, c) == [], "c ran although one of its inputs failed"


async def test_closing_the_run_closes_every_open_request(upstream) -> None:
    a, b, c = tags("a", "b", "c")
    flow = load_flow_text(fan_in_flow(upstream, a, b, c, a_fake={"tokens": 10, "hang_after_tokens": 1}, b_fake={"tokens": 10, "hang_after_tokens": 1}))
    task = asyncio.get_running_loop().create_task(consume(flow))
    try:
        await async_wait_until(lambda: len(generations(upstream, a)) == 1 and len(generations(upstream, b)) == 1, message="both branches started")
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ended = await async_wait_until(
        lambda: [g for g in generations(upstream, a) + generations(upstream, b) if g["end"] is not None] or None,
        message="the upstream saw both requests end",
    )
    await async_wait_until(lambda: all(g["end"] is not None for g in generations(upstream, a) + generations(upstream, b)), message="both requests closed")
    assert {g["outcome"] for g in generations(upstream, a) + generations(upstream, b)} == {"cancelled"}, ended


async def test_a_streamed_output_still_goes_token_by_token(upstream) -> None:
    """The stream at the end of a fan-in is opened by its reader only: the client holds its
    first token while the upstream is still generating the rest."""
    a, b, c = tags("a", "b", "c")
    flow = load_flow_text(f"""
nodes:
  a:
{chat_node(upstream, a, tokens=2)}
  b:
{chat_node(upstream, b, tokens=2)}
  c:
{chat_node(upstream, c, stream=True, prompt="${nodes.a.output} ${nodes.b.output}", tokens=6, token_delay_ms=150)}
  reply:
    type: sse-sink
    source: ${{nodes.c.output as stream/text}}
""")
    async with new_http_client() as http:
        stream = run_workflow(flow, flow.default_workflow, {}, run_id="t", http=http, service_outputs={})
        try:
            first = await anext(stream)
            gc = only_generation(upstream, c)
            assert first == expected_tokens(6)[0]
            assert gc["end"] is None, "the first token came only after the whole reply"
            rest = [chunk async for chunk in stream]
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
    assert [first, *rest] == expected_tokens(6)


async def test_node_events_tell_the_story_of_the_run(upstream) -> None:
    a, b, c = tags("a", "b", "c")
    chunks, events = await run_flow(fan_in_flow(upstream, a, b, c), events=True)
    assert "".join(chunks) == f"{expected_text(5)} + {expected_text(5)}"
    at = {(e["node"], e["state"]): e for e in events}
    assert set(at) == {(n, s) for n in ("a", "b", "c", "reply") for s in ("started", "finished")}
    assert at["b", "started"]["at_ms"] <= at["a", "finished"]["at_ms"] and at["a", "started"]["at_ms"] <= at["b", "finished"]["at_ms"]
    assert at["c", "started"]["at_ms"] >= max(at["a", "finished"]["at_ms"], at["b", "finished"]["at_ms"])
    assert all(e["elapsed_ms"] >= 0 for e in events if e["state"] == "finished")


async def test_a_failed_branch_and_the_ones_it_stopped_are_reported(upstream) -> None:
    a, b, c = tags("a", "b", "c")
    flow = fan_in_flow(upstream, a, b, c, a_fake={"tokens": 3, "token_delay_ms": 100, "fail_status": 500}, b_fake={"tokens": 200, "token_delay_ms": 50})
    outcome = await run_flow_outcome(flow, events=True)
    assert isinstance(outcome.error, UpstreamError)
    final = {e["node"]: e["state"] for e in outcome.events if e["state"] != "started"}
    assert final == {"a": "failed", "b": "cancelled"}
