"""The OpenAI-compatible facade (SPEC §9), driven by the official `openai` package against a real
`flowctl up` whose model server is the fake vLLM server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from support.fake import echo_tokens, expected_text, expected_tokens
from support.flowctl_up import UpHandle, fake_flow_yaml
from support.paths import FAKE_VLLM, PYTHON
from support.procs import free_port
from support.waiting import async_wait_until

PROMPT_BLOCK = """\
      messages:
        - role: user
          content: "${input.prompt}"
"""


def client(up: UpHandle, api_key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=up.root + "/v1", api_key=up.api_key or api_key, max_retries=0, timeout=30.0)


def assert_openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    return error


def with_openai(flow: str, openai_yaml: str) -> str:
    """`flow` (fake_flow_yaml) with an `openai:` section on its `chat` workflow."""
    marker = "    default: true\n"
    assert marker in flow
    return flow.replace(marker, marker + openai_yaml, 1)


@pytest.fixture
def chat_up(flowctl_up) -> tuple[UpHandle, int]:
    port = free_port()
    return flowctl_up(fake_flow_yaml(port, tokens=12)), port


def test_models_lists_text_workflows(chat_up):
    up, _ = chat_up
    models = client(up).models.list()
    assert sorted(m.id for m in models.data) == ["chat", "complete"]
    assert all(m.object == "model" for m in models.data)
    assert client(up).models.retrieve("chat").id == "chat"
    with pytest.raises(openai.NotFoundError):
        client(up).models.retrieve("nope")


def test_streaming_token_for_token(chat_up):
    up, _ = chat_up
    stream = client(up).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert not chunks[0].choices[0].delta.content
    contents = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert contents == expected_tokens(12)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert {c.model for c in chunks} == {"chat"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}


def test_stream_wire_format_ends_with_done(chat_up):
    up, _ = chat_up
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", up.root + "/v1/chat/completions", json=body, timeout=30.0) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    payloads = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in payloads) == expected_text(12)


def test_non_streaming_one_completion(chat_up):
    up, _ = chat_up
    completion = client(up).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert completion.object == "chat.completion"
    assert completion.model == "chat"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == expected_text(12)
    assert completion.choices[0].finish_reason == "stop"
    # a workflow whose output is a plain value (not a stream) is a model too, either way
    assert client(up).chat.completions.create(model="complete", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content == expected_text(12)
    parts = client(up).chat.completions.create(model="complete", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in parts) == expected_text(12)


def last_request(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5.0).json()["last_request"]


def test_default_mapping_prompt_and_sampling(chat_up):
    up, port = chat_up
    messages = [
        {"role": "system", "content": "echo: not me"},
        {"role": "user", "content": "echo: not me either"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "echo: the last"}, {"type": "text", "text": "user turn"}]},
    ]
    completion = client(up).chat.completions.create(model="chat", messages=messages)
    assert completion.choices[0].message.content == "".join(echo_tokens("the last\nuser turn"))
    # max_tokens (or max_completion_tokens) fills the workflow's max_tokens input
    short = client(up).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=0.1)
    assert short.choices[0].message.content == expected_text(3)
    sent = last_request(port)
    assert (sent["max_tokens"], sent["temperature"]) == (3, 0.1)
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    shorter = client(up).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=2)
    assert shorter.choices[0].message.content == expected_text(2)


def test_explicit_openai_inputs_and_model_name(flowctl_up):
    port = free_port()
    flow = with_openai(
        fake_flow_yaml(port, tokens=12),
        "    openai:\n"
        "      model: echo-bot\n"
        "      inputs:\n"
        '        prompt: "${request.messages[0].content}"\n'
        '        max_tokens: "${request.metadata.budget as integer | 5}"\n',
    )
    up = flowctl_up(flow)
    c = client(up)
    assert sorted(m.id for m in c.models.list().data) == ["complete", "echo-bot"]
    messages = [{"role": "system", "content": "echo: from the system"}, {"role": "user", "content": "ignored"}]
    assert c.chat.completions.create(model="echo-bot", messages=messages).choices[0].message.content == "".join(echo_tokens("from the system"))
    # the template's default, and a value from an extra request key (OpenAI's `metadata`)
    hi = [{"role": "system", "content": "hi"}]
    assert c.chat.completions.create(model="echo-bot", messages=hi).choices[0].message.content == expected_text(5)
    assert c.chat.completions.create(model="echo-bot", messages=hi, metadata={"budget": "2"}).choices[0].message.content == expected_text(2)
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="chat", messages=hi)  # renamed


def test_messages_input_gets_the_whole_list(flowctl_up):
    port = free_port()
    flow = fake_flow_yaml(port, tokens=12)
    assert PROMPT_BLOCK in flow
    flow = flow.replace(PROMPT_BLOCK, '      messages: "${input.messages as list}"\n', 1)
    up = flowctl_up(flow)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "echo: all of it"}]
    stream = client(up).chat.completions.create(model="chat", messages=messages, stream=True)
    assert [c.choices[0].delta.content for c in stream][1:-1] == echo_tokens("all of it")
    assert last_request(port)["messages"] == messages


def test_unknown_model_is_404(chat_up):
    up, _ = chat_up
    with pytest.raises(openai.NotFoundError) as info:
        client(up).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    assert "chat" in info.value.message  # names the models there are
    r = httpx.post(up.root + "/v1/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert assert_openai_error(r, 404)["param"] == "model"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "chat"}, "messages"),
        ({"model": "chat", "messages": []}, "messages"),
        ({"model": "chat", "messages": "hi"}, "messages"),
        ({"model": "chat", "messages": [{"content": "hi"}]}, "messages.0.role"),
        ({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
        ({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
        ({"model": "chat", "messages": [{"role": "system", "content": "no user turn"}]}, "messages"),
    ],
)
def test_bad_body_is_400_in_openai_shape(chat_up, body, param):
    up, _ = chat_up
    r = httpx.post(up.root + "/v1/chat/completions", json=body)
    error = assert_openai_error(r, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_bad_body_through_the_sdk(chat_up):
    up, _ = chat_up
    with pytest.raises(openai.BadRequestError) as info:
        client(up).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], n=3)
    assert info.value.param == "n"
    for raw in (b"not json", b"[1, 2]", b""):
        r = httpx.post(up.root + "/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert_openai_error(r, 400)


def test_input_that_does_not_cast_is_400(flowctl_up):
    port = free_port()
    flow = with_openai(fake_flow_yaml(port, tokens=4), "    openai:\n      inputs:\n        temperature: \"${request.metadata.t | 0.5}\"\n")
    up = flowctl_up(flow)
    with pytest.raises(openai.BadRequestError) as info:
        client(up).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], metadata={"t": "warm"})
    assert info.value.param == "temperature"


async def test_client_closing_mid_stream_cancels_the_run(flowctl_up):
    port = free_port()
    up = flowctl_up(fake_flow_yaml(port, tokens=2000, token_delay_ms=10))
    fake_stats = f"http://127.0.0.1:{port}/stats"
    c = openai.AsyncOpenAI(base_url=up.root + "/v1", api_key="x", max_retries=0)
    stream = await c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)
    seen = []
    async for chunk in stream:
        seen.append(chunk.choices[0].delta.content)
        if len(seen) == 4:
            break
    assert seen[1:] == expected_tokens(3)
    run_id = chunk.id.removeprefix("chatcmpl-")
    await stream.close()

    async with httpx.AsyncClient(timeout=5.0) as http:

        async def upstream_cancelled() -> bool:
            stats = (await http.get(fake_stats)).json()
            return stats["cancelled_streams"] == 1 and stats["active_streams"] == 0

        await async_wait_until(upstream_cancelled, timeout=10.0, message="the upstream generation was not aborted")

        async def run_cancelled() -> bool:
            return (await http.get(f"{up.api}/runs/{run_id}")).json()["status"] == "cancelled"

        await async_wait_until(run_cancelled, timeout=10.0)
        stats = (await http.get(fake_stats)).json()
        assert stats["completed_streams"] == 0
    await c.close()


def test_failure_mid_stream_and_before(flowctl_up):
    port = free_port()
    up = flowctl_up(fake_flow_yaml(port, tokens=4, fail_status=500))
    with pytest.raises(openai.APIStatusError) as info:
        client(up).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert "500" in info.value.message
    stream = client(up).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError) as failed:
        list(stream)
    assert "500" in failed.value.message


def test_api_key_rule(flowctl_up):
    port = free_port()
    up = flowctl_up(fake_flow_yaml(port, tokens=3), api_key="s3cret")
    right = openai.OpenAI(base_url=up.root + "/v1", api_key="s3cret", max_retries=0)
    assert right.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content == expected_text(3)
    wrong = openai.OpenAI(base_url=up.root + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.models.list()
    assert info.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert_openai_error(httpx.get(up.root + "/v1/models"), 401)
    assert httpx.get(up.root + "/metrics").status_code == 401
    assert httpx.get(up.root + "/metrics", headers=up.headers).status_code == 200


MODEL_COMPOSE = """\
controller:
  type: http-server
  port: 8080
  base_path: /api

workflow:
  title: Chat with vLLM server
  input: ${{input}}
  output: ${{output as text;sse-text}}

component:
  type: http-server
  manage:
    start: [{python}, {fake}, --quiet, --port, "{port}", --tokens, "6", --served-model-name, qwen2-7b-instruct]
  port: {port}
  action:
    method: POST
    path: /v1/chat/completions
    headers:
      Content-Type: application/json
    body:
      model: qwen2-7b-instruct
      messages:
        - role: user
          content: ${{input.prompt as text}}
      max_tokens: 512
      temperature: ${{input.temperature as number | 0.7}}
      stream: true
    stream_format: json
    output: ${{response[].choices[0].delta.content}}
"""


def test_model_compose_flow_unchanged(flowctl_up, tmp_path: Path):
    """The seed's model-compose file (its vLLM swapped for the fake) through the facade."""
    port = free_port()
    text = MODEL_COMPOSE.format(python=json.dumps(PYTHON), fake=json.dumps(str(FAKE_VLLM)), port=port)
    up = flowctl_up(text, flow_name="model-compose.yml")
    c = client(up)
    (model,) = [m.id for m in c.models.list().data]
    stream = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], temperature=0.2, stream=True)
    assert [ch.choices[0].delta.content for ch in stream][1:-1] == expected_tokens(6)
    assert c.chat.completions.create(model=model, messages=[{"role": "user", "content": "echo: a b"}]).choices[0].message.content == "a b"
