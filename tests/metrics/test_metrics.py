"""`GET /metrics` (SPEC §9): parsed with prometheus_client's own parser, the counters move by
exactly the runs made, whatever route made them."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.fake import expected_tokens
from support.flowctl_up import UpHandle, fake_flow_yaml
from support.procs import free_port
from support.waiting import async_wait_until, wait_until

from flowctl.engine.errors import FlowError
from flowctl.engine.flow import load_flow_text
from flowctl.engine.host import FlowHost
from flowctl.engine.runs import RunRecord, RunStatus
from flowctl.server.metrics import FlowMetrics

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def scrape(up: UpHandle) -> Samples:
    r = httpx.get(up.root + "/metrics", headers=up.headers, timeout=5.0)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def native_stream(up: UpHandle, prompt: str = "hi") -> list[str]:
    with httpx.stream("POST", up.api + "/workflows/chat/runs", json={"input": {"prompt": prompt}}, timeout=30.0) as r:
        assert r.status_code == 200
        return [line[6:] for line in r.iter_lines() if line.startswith("data: ") and not line.startswith("data: {")]


def test_counters_move_by_exactly_the_runs_made(flowctl_up):
    tokens = 7
    up = flowctl_up(fake_flow_yaml(free_port(), tokens=tokens))
    before = scrape(up)
    assert value(before, "flowctl_service_up", node="llm") == 1.0
    assert value(before, "flowctl_service_restarts_total", node="llm") == 0.0
    assert value(before, "flowctl_runs_in_flight", workflow="chat") == 0.0
    assert ("flowctl_runs_total", frozenset({"workflow": "chat", "status": "succeeded"}.items())) in before

    c = openai.OpenAI(base_url=up.root + "/v1", api_key="x", max_retries=0)
    facade = 3
    for _ in range(facade):
        chunks = [ch.choices[0].delta.content for ch in c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)]
        assert chunks[1:-1] == expected_tokens(tokens)
    native = 2
    for _ in range(native):
        assert native_stream(up) == expected_tokens(tokens)
    # a collected run (not streamed to the client) counts the same
    assert c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content
    runs = facade + native + 1

    after = scrape(up)
    assert moved(before, after, "flowctl_runs_total", workflow="chat", status="succeeded") == runs
    assert moved(before, after, "flowctl_runs_total", workflow="chat", status="failed") == 0
    assert moved(before, after, "flowctl_runs_total", workflow="chat", status="cancelled") == 0
    assert moved(before, after, "flowctl_chunks_total", workflow="chat") == runs * tokens
    assert moved(before, after, "flowctl_run_duration_seconds_count", workflow="chat") == runs
    assert moved(before, after, "flowctl_time_to_first_chunk_seconds_count", workflow="chat") == runs
    assert value(after, "flowctl_run_duration_seconds_bucket", workflow="chat", le="+Inf") == runs
    assert 0 < value(after, "flowctl_time_to_first_chunk_seconds_sum", workflow="chat") <= value(after, "flowctl_run_duration_seconds_sum", workflow="chat")
    assert value(after, "flowctl_runs_in_flight", workflow="chat") == 0
    assert value(after, "flowctl_service_up", node="llm") == 1.0
    # other workflows did not move
    assert moved(before, after, "flowctl_runs_total", workflow="complete", status="succeeded") == 0
    # /metrics is not a run
    assert moved(after, scrape(up), "flowctl_runs_total", workflow="chat", status="succeeded") == 0


def test_failed_run_counts_as_failed(flowctl_up):
    up = flowctl_up(fake_flow_yaml(free_port(), tokens=3, fail_status=500))
    before = scrape(up)
    c = openai.OpenAI(base_url=up.root + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError):
        c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIError):
        list(c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True))
    after = scrape(up)
    assert moved(before, after, "flowctl_runs_total", workflow="chat", status="failed") == 2
    assert moved(before, after, "flowctl_runs_total", workflow="chat", status="succeeded") == 0
    assert moved(before, after, "flowctl_chunks_total", workflow="chat") == 0
    assert moved(before, after, "flowctl_run_duration_seconds_count", workflow="chat") == 2
    assert moved(before, after, "flowctl_time_to_first_chunk_seconds_count", workflow="chat") == 0
    assert value(after, "flowctl_service_up", node="llm") == 1.0  # the server answered, it is up


async def test_in_flight_and_cancelled(flowctl_up):
    up = flowctl_up(fake_flow_yaml(free_port(), tokens=5000, token_delay_ms=10))
    before = scrape(up)
    c = openai.AsyncOpenAI(base_url=up.root + "/v1", api_key="x", max_retries=0)
    streams = [await c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True) for _ in range(3)]
    for stream in streams:  # each has started: its role chunk and a first token arrived
        await anext(stream)
        await anext(stream)
    assert value(scrape(up), "flowctl_runs_in_flight", workflow="chat") == 3
    for stream in streams:
        await stream.close()

    async def all_cancelled() -> bool:
        now = await asyncio.to_thread(scrape, up)
        return moved(before, now, "flowctl_runs_total", workflow="chat", status="cancelled") == 3 and value(now, "flowctl_runs_in_flight", workflow="chat") == 0

    await async_wait_until(all_cancelled, timeout=10.0)
    after = scrape(up)
    assert moved(before, after, "flowctl_runs_total", workflow="chat", status="succeeded") == 0
    assert moved(before, after, "flowctl_time_to_first_chunk_seconds_count", workflow="chat") == 3
    assert moved(before, after, "flowctl_chunks_total", workflow="chat") >= 3
    await c.close()


def test_service_down_and_restarts(flowctl_up):
    """A model server that dies is seen as down at once, and its restart is counted."""
    port = free_port()
    up = flowctl_up(fake_flow_yaml(port, tokens=3, restart="always"))
    pid = httpx.get(up.api + "/ready").json()["services"]["llm"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: value(scrape(up), "flowctl_service_restarts_total", node="llm") >= 1, timeout=20.0)
    wait_until(lambda: value(scrape(up), "flowctl_service_up", node="llm") == 1.0, timeout=20.0)


# -- in process: reloads, and one registry per app ------------------------------------------------

PER_RUN_ONLY = """\
version: 1
nodes:
  ask:
    type: http-stream
    url: "http://127.0.0.1:9/v1/chat/completions"
    body: {prompt: "${input.prompt}"}
    stream_format: json
    output: "${response[].text}"
  reply:
    type: sse-sink
    source: "${nodes.ask.output as stream/text}"
"""


async def test_reloads_by_result_and_separate_registries(tmp_path: Path):
    flow = load_flow_text(PER_RUN_ONLY, str(tmp_path / "flow.yml"))
    host = FlowHost(flow, state_dir=tmp_path / "state")
    try:
        first, second = FlowMetrics(host), FlowMetrics(host)
        await host.reload(load_flow_text(PER_RUN_ONLY, str(tmp_path / "flow.yml")))
        host.reload_failed(FlowError("bad flow"))
        host.reload_failed(FlowError("still bad"))
        for metrics in (first, second):
            samples = parse(metrics.render().decode())
            assert value(samples, "flowctl_reloads_total", result="ok") == 1
            assert value(samples, "flowctl_reloads_total", result="error") == 2
        # a run that never got a slot (queue full) is counted, but not as in flight or timed
        record = RunRecord(id="r1", workflow="reply", status=RunStatus.FAILED)
        first.on_event("run.finished", {"run": record})
        samples = parse(first.render().decode())
        assert value(samples, "flowctl_runs_total", workflow="reply", status="failed") == 1
        assert value(samples, "flowctl_runs_in_flight", workflow="reply") == 0
        assert value(samples, "flowctl_run_duration_seconds_count", workflow="reply") == 0
        assert value(parse(second.render().decode()), "flowctl_runs_total", workflow="reply", status="failed") == 0
    finally:
        await host.http.aclose()
