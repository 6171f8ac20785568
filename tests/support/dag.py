"""Run a flow in-process against the fake vLLM server, and read what the upstream saw.

``chat_node(server, tag, **fake)`` is the YAML of an http-stream node that asks the fake for
a reply tagged ``tag`` (the ``x-fake-tag`` header, so the fake's ``generations`` log names
it) with per-request switches (``tokens=4, token_delay_ms=50, fail_status=500``...).
``run_flow(text, inputs)`` compiles the flow and collects its output chunks (and, with
``events=True``, its node events as dicts); ``run_flow_outcome`` keeps what a failed run
produced before its error. ``generations(server, tag)`` is the fake's log
of the generations with that tag; ``overlapped(a, b)`` says whether two were active at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from flowctl.engine.flow import load_flow_text
from flowctl.engine.node_events import NodeEvent
from flowctl.engine.scheduler import new_http_client, run_workflow
from support.fake import FakeServer


def chat_node(server: FakeServer, tag: str, *, prompt: str = "hi", stream: bool = False, extra: str = "", **fake: Any) -> str:
    """An http-stream node over the fake; `stream=False` asks for one whole answer."""
    headers = {"x-fake-tag": tag, **{f"x-fake-{k.replace('_', '-')}": str(v) for k, v in fake.items()}}
    body = {"model": server.model, "stream": stream, "messages": [{"role": "user", "content": prompt}]}
    output = "${response[].choices[0].delta.content}" if stream else "${response.choices[0].message.content}"
    lines = [
        "    type: http-stream",
        f"    url: {server.chat_url}",
        f"    headers: {json.dumps(headers)}",
        f"    body: {json.dumps(body)}",
        f"    stream_format: {'json' if stream else 'null'}",
        f"    output: {json.dumps(output)}",
        "    timeout: {connect: 5, first_byte: 20, idle: 20}",
    ]
    return "\n".join(lines) + ("\n" + extra.rstrip("\n") if extra else "") + "\n"


@dataclass
class Outcome:
    chunks: list[Any]
    events: list[dict[str, Any]]
    error: BaseException | None = None


async def run_flow_outcome(text: str, inputs: dict[str, Any] | None = None, *, workflow: str | None = None, events: bool = False) -> Outcome:
    """Run the flow to its end; what it produced (chunks, node events as dicts) and the error
    it ended with, if any (the events a failed run sent before its error are kept)."""
    flow = load_flow_text(text)
    compiled = flow.workflow(workflow)
    assert compiled is not None
    outcome = Outcome([], [])
    async with new_http_client() as http:
        stream = run_workflow(flow, compiled, inputs or {}, run_id="test", http=http, service_outputs={}, events=events)
        try:
            async for item in stream:
                if isinstance(item, NodeEvent):
                    outcome.events.append(item.as_dict())
                else:
                    outcome.chunks.append(item)
        except Exception as exc:
            outcome.error = exc
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
    return outcome


async def run_flow(text: str, inputs: dict[str, Any] | None = None, *, workflow: str | None = None, events: bool = False) -> tuple[list[Any], list[dict[str, Any]]]:
    """Run the flow; its chunks and node events. Raises what the run failed with."""
    outcome = await run_flow_outcome(text, inputs, workflow=workflow, events=events)
    if outcome.error is not None:
        raise outcome.error
    return outcome.chunks, outcome.events


def generations(server: FakeServer, tag: str) -> list[dict[str, Any]]:
    stats = httpx.get(server.url + "/stats", timeout=5.0).json()
    return [g for g in stats["generations"] if g["tag"] == tag]


def only_generation(server: FakeServer, tag: str) -> dict[str, Any]:
    found = generations(server, tag)
    assert len(found) == 1, f"expected one generation tagged {tag!r}, the upstream saw {found}"
    return found[0]


def overlapped(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Both generations were active at one moment, by the upstream's own clock."""
    assert a["end"] is not None and b["end"] is not None, (a, b)
    return a["start"] < b["end"] and b["start"] < a["end"]


async def consume(flow: Any) -> None:
    """Run a compiled flow's default workflow to its end, dropping its output (a test that
    cancels the task running this checks what closing a run does)."""
    async with new_http_client() as http:
        stream = run_workflow(flow, flow.default_workflow, {}, run_id="t", http=http, service_outputs={})
        try:
            async for _ in stream:
                pass
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
