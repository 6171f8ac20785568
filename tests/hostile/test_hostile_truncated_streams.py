"""A stream cut short is never a success (issue 15, point 1).

An upstream whose body ends when its connection closes (no chunked encoding) cannot tell a
crash from a finish on the wire; an OpenAI stream tells by its end marker (`data: [DONE]`,
or a chunk with a `finish_reason`). Without it the run fails naming the node, the OpenAI
facade sends an error (never `finish_reason: "stop"`), and `/metrics` counts a failure. A
3xx is no success either, and a run whose service died meanwhile fails even when its
stream looked whole (`require_end: false`)."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.fake import expected_tokens, fake_vllm_argv
from support.flowctl_up import UpHandle, fake_flow_yaml
from support.procs import free_port

from flowctl.engine.errors import ServiceError, UpstreamError
from flowctl.engine.flow import load_flow_text
from flowctl.engine.host import FlowHost
from flowctl.engine.scheduler import new_http_client, run_workflow

pytestmark = pytest.mark.timeout(90)


def chat_flow(url: str, *, require_end: bool | None = None, headers: dict[str, int] | None = None) -> str:
    extra = "" if require_end is None else f"    require_end: {str(require_end).lower()}\n"
    head = "".join(f"      x-fake-{name}: '{value}'\n" for name, value in (headers or {}).items())
    return f"""
nodes:
  chat:
    type: http-stream
    url: {url}/v1/chat/completions
    headers:
      content-type: application/json
{head}    body: {{model: qwen2-7b-instruct, stream: true, messages: [{{role: user, content: hi}}]}}
    output: ${{response[].choices[0].delta.content}}
{extra}  reply:
    type: sse-sink
    source: ${{nodes.chat.output as stream/text}}
"""


async def collect(flow_text: str) -> list[str]:
    flow = load_flow_text(flow_text)
    got: list[str] = []
    async with new_http_client() as http:
        chunks = run_workflow(flow, flow.default_workflow, {}, run_id="t", http=http, service_outputs={})
        try:
            async for chunk in chunks:
                got.append(chunk)
        finally:
            await chunks.aclose()
    return got


async def test_a_close_delimited_stream_that_ends_properly_is_whole(fake_vllm) -> None:
    server = fake_vllm(tokens=30)
    assert await collect(chat_flow(server.url, headers={"close-delimited": 1})) == expected_tokens(30)


async def test_a_close_delimited_upstream_dying_mid_answer_is_an_error_naming_the_node(fake_vllm) -> None:
    server = fake_vllm(tokens=400, die_after_tokens=46, close_delimited=1)
    with pytest.raises(UpstreamError, match="cut short") as caught:
        await collect(chat_flow(server.url))
    assert caught.value.node == "chat"


async def test_a_stream_without_done_or_finish_reason_is_an_error(fake_vllm) -> None:
    server = fake_vllm(tokens=10)
    with pytest.raises(UpstreamError, match=r"no `data: \[DONE\]` and no finish_reason"):
        await collect(chat_flow(server.url, headers={"omit-end": 1}))


async def test_require_end_false_accepts_a_stream_without_an_end_marker(fake_vllm) -> None:
    server = fake_vllm(tokens=10)
    assert await collect(chat_flow(server.url, require_end=False, headers={"omit-end": 1})) == expected_tokens(10)


async def test_a_redirect_is_not_a_success(fake_vllm) -> None:
    server = fake_vllm(tokens=10)
    with pytest.raises(UpstreamError, match="answered 302: a redirect") as caught:
        await collect(chat_flow(server.url, headers={"fail-status": 302}))
    assert caught.value.status == 302


async def test_a_service_that_died_during_the_run_fails_it_even_when_the_stream_looked_whole(tmp_path) -> None:
    """`require_end: false` and a close-delimited body: only the service's death tells."""
    port = free_port()
    argv = json.dumps(fake_vllm_argv(port, tokens=40, die_after_tokens=20, close_delimited=1, quiet=True))
    text = chat_flow(f"http://127.0.0.1:{port}", require_end=False).replace(
        "nodes:\n",
        f"nodes:\n  llm:\n    type: process-start\n    command: {argv}\n    port: {port}\n"
        "    readiness: {http: /v1/models, timeout: 20, interval: 0.05}\n    restart: never\n    stop_timeout: 2\n",
        1,
    ).replace("  chat:\n    type: http-stream\n", "  chat:\n    type: http-stream\n    needs: [llm]\n", 1)
    host = FlowHost(load_flow_text(text, str(tmp_path / "flow.yml")), state_dir=tmp_path / "state")
    await host.start()
    try:
        run = host.prepare(None, {})
        got = []
        with pytest.raises(ServiceError, match="went down during the run"):
            async for chunk in host.stream(run):
                got.append(chunk)
        assert got == expected_tokens(20)
        assert run.record.status.value == "failed"
    finally:
        await host.stop(0)


# -- end to end: the native SSE route, the OpenAI facade and /metrics ------------------------------


def runs_total(up: UpHandle, status: str) -> float:
    text = httpx.get(up.root + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "flowctl_runs_total" and sample.labels == {"workflow": "chat", "status": status}:
                return sample.value
    return 0.0


def sse_events(response: httpx.Response) -> list[tuple[str, str]]:
    events, kind = [], "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, line[6:]))
            kind = "message"
    return events


def test_a_cut_stream_is_an_error_everywhere_a_client_looks(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port(), tokens=40, omit_end=1))
    with httpx.stream("POST", up.api + "/workflows/chat/runs", json={"input": {"prompt": "hi"}}, timeout=30) as response:
        events = sse_events(response)
    assert events[-1][0] == "error", events[-3:]
    assert "node 'chat'" in json.loads(events[-1][1])["message"]
    assert not any(kind == "done" for kind, _ in events)

    body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", up.root + "/v1/chat/completions", json=body, timeout=30) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert '"finish_reason":"stop"' not in "".join(lines)
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][6:])["error"]
    assert "cut short" in error["message"]

    complete = httpx.post(up.root + "/v1/chat/completions", json={**body, "stream": False}, timeout=30)
    assert complete.status_code == 502, complete.text
    assert runs_total(up, "failed") == 3 and runs_total(up, "succeeded") == 0


def test_a_close_delimited_model_server_dying_mid_answer_is_reported_as_its_death(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port(), tokens=400, die_after_tokens=46, close_delimited=1))
    with httpx.stream("POST", up.api + "/workflows/chat/runs", json={"input": {"prompt": "hi"}}, timeout=30) as response:
        events = sse_events(response)
    kind, data = events[-1]
    assert kind == "error"
    message = json.loads(data)["message"]
    # whichever is seen first, the cut stream or the exit, the error names the service
    assert "service 'llm'" in message, message
    assert len([e for e in events if e[0] == "message"]) == 46
    assert runs_total(up, "succeeded") == 0
