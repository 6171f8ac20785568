"""Token counts (OpenAI's `usage`) when the model server reports them: a flow that asks its
upstream for them (`stream_options: {include_usage: true}` in the request it sends) passes
them on to OpenAI clients that ask (`stream_options.include_usage`, and every non-streamed
`chat.completion`), to the native API's `done` event and `GET /runs/{id}`, and to /metrics.
A flow whose upstream reports none reports none: flowctl never counts tokens itself."""

from __future__ import annotations

import json

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families
from support.flowctl_up import UpHandle, fake_flow_yaml
from support.procs import free_port

TOKENS = 6


def client(up: UpHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.root + "/v1", api_key="x", max_retries=0, timeout=30.0)


def tokens_counted(up: UpHandle) -> dict[tuple[str, str], float]:
    text = httpx.get(up.root + "/metrics", timeout=5).text
    return {
        (s.name, s.labels["workflow"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in ("flowctl_prompt_tokens_total", "flowctl_completion_tokens_total")
    }


def test_usage_reaches_openai_clients_the_native_api_and_metrics(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port(), tokens=TOKENS, usage=True))
    before = tokens_counted(up)
    assert before[("flowctl_prompt_tokens_total", "chat")] == 0
    messages = [{"role": "user", "content": "three words here"}]
    # streamed, asked for: the usage chunk comes last, with no choices
    chunks = list(client(up).chat.completions.create(model="chat", messages=messages, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == " ".join(f"w{i}" for i in range(TOKENS))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (3, TOKENS, 3 + TOKENS)
    assert all(c.usage is None for c in chunks[:-1])
    # streamed, not asked for: no usage chunk (OpenAI's rule), the run still counts
    plain = list(client(up).chat.completions.create(model="chat", messages=messages, stream=True))
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "stop"
    # not streamed: a chat.completion carries usage (the fake reports it on every whole answer)
    whole = client(up).chat.completions.create(model="complete", messages=[{"role": "user", "content": "one two"}])
    assert whole.usage is not None and (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (2, TOKENS)
    # the native API: the done event, the JSON answer and GET /runs
    with up.client(timeout=10) as native:
        sse = native.post("/workflows/chat/runs", json={"input": {"prompt": "a b c d"}}).text
        done = json.loads(sse.split("event: done\ndata: ", 1)[1].split("\n", 1)[0])
        assert done["usage"] == {"prompt_tokens": 4, "completion_tokens": TOKENS, "total_tokens": 4 + TOKENS}
        assert native.get(f"/runs/{done['run_id']}").json()["usage"]["completion_tokens"] == TOKENS
        collected = native.post("/workflows/chat/runs", json={"input": {"prompt": "a"}}, headers={"Accept": "application/json"}).json()
        assert collected["usage"]["prompt_tokens"] == 1
    after = tokens_counted(up)
    assert after[("flowctl_prompt_tokens_total", "chat")] - before[("flowctl_prompt_tokens_total", "chat")] == 3 + 3 + 4 + 1
    assert after[("flowctl_completion_tokens_total", "chat")] - before[("flowctl_completion_tokens_total", "chat")] == 4 * TOKENS
    assert after[("flowctl_prompt_tokens_total", "complete")] - before[("flowctl_prompt_tokens_total", "complete")] == 2


def test_no_usage_when_the_upstream_reports_none(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port(), tokens=TOKENS))  # the flow does not ask for usage
    chunks = list(client(up).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}))
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    with up.client(timeout=10) as native:
        sse = native.post("/workflows/chat/runs", json={"input": {"prompt": "a"}}).text
        assert '"usage"' not in sse
    assert tokens_counted(up)[("flowctl_completion_tokens_total", "chat")] == 0
