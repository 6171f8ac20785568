"""The chat flow every test (and the reload benchmark) streams through, written once.

A test flow is YAML text (tests edit and reload it as a user would), built from two parts:
`server_node` (a process-start node running the fake vLLM server, or any command) and
`chat_nodes` (an http-stream node posting an OpenAI chat request and reading each delta,
plus an sse-sink over it). `native_chat_flow` puts them together as the seed's chat flow.
Values are written as JSON, which is valid YAML and keeps `${...}` and numbers as written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from support.fake import DEFAULT_MODEL, fake_vllm_argv

#: per-request sampling inputs, as the seed's flow maps them
SAMPLING = {"max_tokens": "${input.max_tokens as integer | 512}", "temperature": "${input.temperature as number | 0.7}"}


def q(value: Any) -> str:
    """A YAML scalar (or flow collection) for `value`."""
    return json.dumps(value)


def server_node(
    node_id: str,
    command: Sequence[str] | str,
    port: int,
    *,
    needs: Sequence[str] = (),
    description: str | None = None,
    env: Mapping[str, str] | None = None,
    readiness_timeout: float = 20,
    interval: float | None = None,
    restart: str = "never",
    backoff: float | None = None,
    stop_timeout: float = 3,
) -> str:
    """A process-start node (YAML under `nodes:`) running `command` on `port`, ready when
    `GET /v1/models` answers."""
    readiness: dict[str, Any] = {"http": "/v1/models", "timeout": readiness_timeout}
    if interval is not None:
        readiness["interval"] = interval
    policy: dict[str, Any] = {"policy": restart}
    if backoff is not None:
        policy["backoff"] = backoff
    lines = [f"  {node_id}:", "    type: process-start"]
    if description:
        lines.append(f"    description: {q(description)}")
    if needs:
        lines.append(f"    needs: {q(list(needs))}")
    lines.append(f"    command: {q(command if isinstance(command, str) else list(command))}")
    if env:
        lines.append(f"    env: {q(dict(env))}")
    lines += [f"    port: {port}", f"    readiness: {q(readiness)}", f"    restart: {q(policy)}", f"    stop_timeout: {stop_timeout}"]
    return "\n".join(lines) + "\n"


def chat_nodes(
    url: str,
    *,
    needs: str | None = None,
    chat: str = "chat",
    reply: str = "reply",
    content: str = "${input.prompt}",
    headers: Mapping[str, str] | None = None,
    sampling: bool = False,
    timeout: Mapping[str, float] | None = None,
    messages: str | None = None,
    usage: bool = False,
) -> str:
    """The chat pair (YAML under `nodes:`): `chat` streams an OpenAI chat completion from
    `url` (the user message is `content`, or the whole message list is the template
    `messages`; with `usage`, asking for token counts: `stream_options.include_usage`),
    `reply` streams its text."""
    lines = [f"  {chat}:", "    type: http-stream"]
    if needs:
        lines.append(f"    needs: [{needs}]")
    lines.append(f"    url: {q(url)}")
    if headers:
        lines.append(f"    headers: {q(dict(headers))}")
    # the body in block style, one line per value: tests edit it as text (the user message)
    lines += ["    body:", f"      model: {DEFAULT_MODEL}"]
    if messages is not None:
        lines.append(f"      messages: {q(messages)}")
    else:
        lines += ["      messages:", "        - role: user", f"          content: {q(content)}"]
    if sampling:
        lines += [f"      {name}: {q(value)}" for name, value in SAMPLING.items()]
    if usage:
        lines.append("      stream_options: {include_usage: true}")
    lines += ["      stream: true", "    stream_format: json", f"    output: {q('${response[].choices[0].delta.content}')}"]
    if timeout:
        lines.append(f"    timeout: {q(dict(timeout))}")
    lines += [f"  {reply}:", "    type: sse-sink", f"    source: {q('${nodes.' + chat + '.output as stream/text}')}"]
    return "\n".join(lines) + "\n"


def chat_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1/chat/completions"


def native_chat_flow(port: int, *, fake: dict[str, Any] | None = None, restart: str = "never", extra_node_yaml: str = "") -> str:
    """The seed's chat flow in native form, with the fake server as its process-start node."""
    return (
        "version: 1\nname: test-chat\nnodes:\n"
        + server_node("model-server", fake_vllm_argv(port, **(fake or {})), port, restart=restart, backoff=0.2)
        + chat_nodes(chat_url(port), needs="model-server", headers={"Content-Type": "application/json"}, sampling=True, timeout={"connect": 5, "first_byte": 20, "idle": 20})
        + (extra_node_yaml + "\n" if extra_node_yaml else "")
        + "workflows:\n  chat:\n    title: Chat\n    output: reply\n    default: true\n"
    )


def default_flow_over_fake(port: int, **fake: Any) -> str:
    """flows/local_chat.yml as shipped, its llama.cpp server (and the venv it builds) swapped
    for the fake vLLM server on `port`, named `llm` as there and serving the flow's model name:
    the conversation, the request and the workflow's inputs are the real flow's."""
    from support.paths import REPO_ROOT

    text = (REPO_ROOT / "flows" / "local_chat.yml").read_text()
    start, end = text.index("\n  llm-env:\n"), text.index("\n  # The conversation sent to the model")
    services = server_node("llm", fake_vllm_argv(port, served_model_name="smollm2", quiet=True, **fake), port, interval=0.05)
    return (text[:start] + "\n" + services + text[end:]).replace("http://127.0.0.1:8011/", f"http://127.0.0.1:{port}/")
