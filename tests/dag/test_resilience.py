"""Retry before the first byte of the answer only, and fallbacks used when a node fails
before it produced anything."""

from __future__ import annotations

import socket
import uuid

import pytest
from support.dag import chat_node, generations, run_flow, run_flow_outcome
from support.fake import expected_tokens

from flowctl.engine.errors import RunError, UpstreamError

RETRY = "    retry: {max_attempts: 3, initial_interval: 0.01, jitter: false}"


def tag(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def single(node_yaml: str) -> str:
    return f"""
nodes:
  chat:
{node_yaml}
  reply: {{type: sse-sink, source: "${{nodes.chat.output as stream/text}}"}}
"""


async def test_5xx_before_the_answer_is_retried_with_backoff(fake_vllm) -> None:
    server = fake_vllm(fail_first=2, quiet=True)
    chunks, events = await run_flow(single(chat_node(server, "r", stream=True, tokens=4, extra=RETRY)), events=True)
    assert chunks == expected_tokens(4)
    assert server.stats()["requests"] == 3
    retries = [e for e in events if e["state"] == "retrying"]
    assert [e["attempt"] for e in retries] == [2, 3]
    assert "503" in retries[0]["error"]


async def test_retries_end_after_max_attempts_with_the_last_error(upstream) -> None:
    name = tag("always")
    with pytest.raises(UpstreamError, match=r"node 'chat': .* answered 502") as failed:
        await run_flow(single(chat_node(upstream, name, stream=True, fail_status=502, extra=RETRY)))
    assert failed.value.status == 502
    assert upstream.stats()["last_request_headers"]["x-fake-tag"] == name


async def test_a_4xx_is_not_retried(fake_vllm) -> None:
    server = fake_vllm(quiet=True)
    with pytest.raises(UpstreamError, match="answered 400"):
        await run_flow(single(chat_node(server, "bad", stream=True, fail_status=400, extra=RETRY)))
    assert server.stats()["requests"] == 1


async def test_a_refused_connection_is_retried() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    flow = single(f"""    type: http-stream
    url: http://127.0.0.1:{port}/v1/chat/completions
    body: {{model: m, stream: true, messages: [{{role: user, content: hi}}]}}
{RETRY}""")
    outcome = await run_flow_outcome(flow, events=True)
    assert isinstance(outcome.error, UpstreamError) and "cannot connect" in str(outcome.error)
    assert [e["attempt"] for e in outcome.events if e["state"] == "retrying"] == [2, 3]
    assert [e["state"] for e in outcome.events if e["node"] == "chat"][-1] == "failed"


async def test_a_stream_that_broke_after_its_first_token_is_never_generated_again(fake_vllm) -> None:
    server = fake_vllm(quiet=True)
    node = chat_node(server, "mid", stream=True, tokens=10, hang_after_tokens=2, extra=RETRY).replace("idle: 20", "idle: 0.3")
    with pytest.raises(UpstreamError, match=r"no data for 0\.3s"):
        await run_flow(single(node))
    assert server.stats()["requests"] == 1, "a half-streamed answer was asked for a second time"


# -- fallback ------------------------------------------------------------------------------------


async def test_a_fallback_value_stands_in_for_a_node_that_failed(upstream) -> None:
    name = tag("primary")
    flow = f"""
nodes:
  primary:
{chat_node(upstream, name, fail_status=500, extra="    fallback: sorry")}
  sorry: {{type: value, value: "unavailable (${{nodes.primary.error.message}})"}}
  out: {{type: value, value: "answer: ${{nodes.primary.output}}"}}
workflows:
  w: {{output: out}}
"""
    chunks, events = await run_flow(flow, events=True)
    assert len(chunks) == 1 and chunks[0].startswith("answer: unavailable (") and "answered 500" in chunks[0]
    states = [(e["node"], e["state"]) for e in events]
    assert states.index(("primary", "failed")) < states.index(("sorry", "started")) < states.index(("sorry", "finished"))


async def test_a_streamed_node_falls_back_to_another_stream(upstream) -> None:
    primary, backup = tag("primary"), tag("backup")
    flow = f"""
nodes:
  chat:
{chat_node(upstream, primary, stream=True, fail_status=503, extra="    fallback: backup")}
  backup:
{chat_node(upstream, backup, stream=True, tokens=3)}
  reply: {{type: sse-sink, source: "${{nodes.chat.output as stream/text}}"}}
"""
    chunks, _ = await run_flow(flow)
    assert chunks == expected_tokens(3)
    assert len(generations(upstream, backup)) == 1


async def test_no_fallback_once_the_node_has_produced_output(fake_vllm) -> None:
    server = fake_vllm(quiet=True)
    node = chat_node(server, "mid", stream=True, tokens=10, hang_after_tokens=2, extra="    fallback: backup").replace("idle: 20", "idle: 0.3")
    flow = f"""
nodes:
  chat:
{node}
  backup: {{type: value, value: never}}
  reply: {{type: sse-sink, source: "${{nodes.chat.output as stream/text}}"}}
"""
    outcome = await run_flow_outcome(flow)
    assert isinstance(outcome.error, RunError) and "no data for" in str(outcome.error)
    assert outcome.chunks == expected_tokens(2)


async def test_a_fallback_that_fails_too_names_itself(upstream) -> None:
    flow = f"""
nodes:
  a:
{chat_node(upstream, tag("a"), fail_status=500, extra="    fallback: b")}
  b:
{chat_node(upstream, tag("b"), fail_status=503)}
workflows:
  w: {{output: a}}
"""
    with pytest.raises(UpstreamError, match="node 'b'.*503"):
        await run_flow(flow)
