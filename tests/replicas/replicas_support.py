"""Flows and helpers for the replica tests: a process-start node running N copies of the fake
vLLM server on `port: auto` (each reads its port as `${replica.port}`), every copy carrying the
test's marker in its environment, and a chat workflow balanced over them with `service:`.

Per-request switches of the fake ride on inputs, as headers: `tag` (how the fake files the
generation, so a test can tell which replica served which run), `tokens`, `delay_ms`
(between tokens), `die_after` (the replica dies after that many tokens)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from supervision.supervision_support import MARK_ENV
from support.fake import flags_to_args
from support.flows import q
from support.paths import FAKE_VLLM, PYTHON

#: the fake's per-request switches, from the chat workflow's inputs
FAKE_HEADERS = {
    "x-fake-tag": '${input.tag as text | ""}',
    "x-fake-tokens": '${input.tokens as text | ""}',
    "x-fake-token-delay-ms": '${input.delay_ms as text | ""}',
    "x-fake-die-after-tokens": '${input.die_after as text | ""}',
}


def replica_argv(**fake: Any) -> list[str]:
    """The fake server's argv on the replica's own port."""
    return [PYTHON, str(FAKE_VLLM), "--port", "${replica.port}", "--quiet", *flags_to_args(fake)]


def replicas_flow(
    replicas: int,
    mark: str,
    *,
    command: Sequence[str] | str | None = None,
    restart: str = "never",
    backoff: float | None = None,
    placement: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
    **fake: Any,
) -> str:
    """A flow: `llm` (`replicas` copies of the fake, `port: auto`) and the `chat` workflow
    balanced over them (`service: llm`)."""
    policy: dict[str, Any] = {"policy": restart}
    if backoff is not None:
        policy["backoff"] = backoff
    lines = ["version: 1", "name: replicas", "description: a chat balanced over replicas of the fake vLLM server"]
    if server:
        lines += ["server:", *(f"  {key}: {q(value)}" for key, value in server.items())]
    lines += [
        "nodes:",
        "  llm:",
        "    type: process-start",
        f"    command: {q(command if command is not None else replica_argv(**fake))}",
        f"    env: {q({MARK_ENV: mark})}",
        "    port: auto",
        f"    replicas: {replicas}",
        f"    readiness: {q({'http': '/v1/models', 'timeout': 30, 'interval': 0.05})}",
        f"    restart: {q(policy)}",
        "    stop_timeout: 3",
    ]
    if placement is not None:
        lines.append(f"    placement: {q(dict(placement))}")
    lines += [
        "  generate:",
        "    type: http-stream",
        "    service: llm",
        "    path: /v1/chat/completions",
        f"    headers: {q(FAKE_HEADERS)}",
        f"    body: {q({'model': 'qwen2-7b-instruct', 'messages': [{'role': 'user', 'content': '${input.prompt}'}], 'stream': True})}",
        f"    output: {q('${response[].choices[0].delta.content}')}",
        "  chat:",
        "    type: sse-sink",
        f"    source: {q('${nodes.generate.output as stream/text}')}",
    ]
    return "\n".join(lines) + "\n"


def replica_rows(ready: Mapping[str, Any], service: str = "llm") -> list[dict[str, Any]]:
    """The replicas of `service` as /ready lists them."""
    rows: list[dict[str, Any]] = ready["services"][service]["replicas"]
    return rows


def stats(url: str) -> dict[str, Any]:
    answer = httpx.get(url + "/stats", timeout=5.0)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


async def run_chat(client: httpx.AsyncClient, **inputs: Any) -> httpx.Response:
    """One chat run, collected as JSON."""
    body = {"input": {"prompt": "hello", **{key: str(value) for key, value in inputs.items()}}}
    return await client.post("/workflows/chat/runs", json=body, headers={"Accept": "application/json"})


async def run_many(api: str, runs: Sequence[Mapping[str, Any]]) -> list[httpx.Response]:
    """Several chat runs at once (each a mapping of inputs)."""
    async with httpx.AsyncClient(base_url=api, timeout=60.0) as client:
        return list(await asyncio.gather(*(run_chat(client, **inputs) for inputs in runs)))
