"""The default flow (flows/local_chat.yml) takes a conversation as well as a prompt: `messages`,
when given, is sent to the model as is; otherwise `system` and `prompt` make a new one; with
neither, a 422 names `prompt`. Run through a real `flowctl up` of the shipped flow with its
llama.cpp server swapped for the fake (tests/support/flows.py: default_flow_over_fake), which
records the request it got (`GET /stats`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from support.fake import expected_text
from support.flowctl_up import UpHandle, start_up
from support.flows import default_flow_over_fake
from support.procs import free_port

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CONVERSATION = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpHandle, int]]:
    port = free_port()
    handle = start_up(default_flow_over_fake(port), tmp_path_factory.mktemp("default-flow"))
    yield handle, port
    handle.stop()


def sent(port: int) -> dict[str, Any]:
    """The last request the model server got."""
    return httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()["last_request"]


def run(up: UpHandle, inputs: dict[str, Any]) -> httpx.Response:
    with up.client(timeout=10) as client:
        return client.post("/workflows/chat/runs", json={"input": inputs}, headers={"Accept": "application/json"})


def test_a_prompt_starts_a_conversation(up) -> None:  # type: ignore[no-untyped-def]
    handle, port = up
    answer = run(handle, {"prompt": "Hi there"})
    assert answer.status_code == 200 and answer.json()["output"] == expected_text(8)
    request = sent(port)
    assert request["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi there"}]
    assert (request["max_tokens"], request["temperature"], request["top_p"]) == (128, 0.2, 0.9)
    run(handle, {"prompt": "Hi", "system": "Be brief.", "max_tokens": 5})
    assert sent(port)["messages"][0] == {"role": "system", "content": "Be brief."} and sent(port)["max_tokens"] == 5


def test_messages_are_sent_as_given(up) -> None:  # type: ignore[no-untyped-def]
    handle, port = up
    assert run(handle, {"messages": CONVERSATION}).status_code == 200
    assert sent(port)["messages"] == CONVERSATION
    # both: the conversation wins (the prompt would be its last user message anyway)
    assert run(handle, {"messages": CONVERSATION, "prompt": "ignored", "system": "ignored"}).status_code == 200
    assert sent(port)["messages"] == CONVERSATION


def test_neither_is_a_422_naming_prompt(up) -> None:  # type: ignore[no-untyped-def]
    handle, _ = up
    for inputs in ({}, {"messages": []}, {"system": "only this"}):
        answer = run(handle, inputs)
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert body["field"] == "prompt" and "prompt" in body["error"], body
    with handle.client(timeout=10) as client:  # streamed (the stream had begun): an error event says it
        streamed = client.post("/workflows/chat/runs", json={"input": {}})
        assert "event: error" in streamed.text and "input 'prompt': is needed by node 'question'" in streamed.text, streamed.text
    assert run(handle, {"messages": "not a list"}).status_code == 422


def test_an_openai_client_sends_the_whole_conversation(up) -> None:  # type: ignore[no-untyped-def]
    handle, port = up
    client = openai.OpenAI(base_url=handle.root + "/v1", api_key="x", max_retries=0, timeout=30.0)
    stream = client.chat.completions.create(model="chat", messages=CONVERSATION, stream=True, temperature=0.5)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected_text(8)
    request = sent(port)
    assert request["messages"] == CONVERSATION and request["temperature"] == 0.5


def test_the_schema_says_so(up) -> None:  # type: ignore[no-untyped-def]
    handle, _ = up
    with handle.client(timeout=10) as client:
        schema = client.get("/workflows/chat").json()["input"]
    assert schema["required"] == []
    assert schema["properties"]["messages"]["type"] == "array" and "conversation" in schema["properties"]["messages"]["description"]
    assert schema["properties"]["system"]["default"] == SYSTEM
    assert json.dumps(schema)  # plain JSON for the UI and OpenAPI
