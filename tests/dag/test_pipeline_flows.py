"""The pipeline flows shipped in flows/local_pipelines.yml, run as written against fake model
servers (the real model runs them in tests/local_model/test_pipelines.py, slow)."""

from __future__ import annotations

from typing import Any

import pytest
from support.fake import FakeServer, expected_text, expected_tokens
from support.paths import REPO_ROOT

from flowctl.engine.flow import load_flow
from flowctl.engine.node_events import NodeEvent
from flowctl.engine.scheduler import new_http_client, run_workflow
from flowctl.engine.templating import validate_inputs

FLOW = REPO_ROOT / "flows" / "local_pipelines.yml"


@pytest.fixture
def servers(fake_vllm) -> tuple[FakeServer, FakeServer]:
    """Two fake model servers in place of llm-a and llm-b, with the flow's model name."""
    return fake_vllm(served_model_name="smollm2", token_delay_ms=30, quiet=True), fake_vllm(served_model_name="smollm2", token_delay_ms=30, quiet=True)


async def run(workflow: str, inputs: dict[str, Any], servers: tuple[FakeServer, FakeServer]) -> tuple[list[str], list[NodeEvent]]:
    flow = load_flow(FLOW)
    a, b = servers
    outputs = {"llm-a": {"url": a.url}, "llm-b": {"url": b.url}, "llm-env": {}}
    chunks: list[str] = []
    events: list[NodeEvent] = []
    async with new_http_client() as http:
        compiled = flow.workflows[workflow]
        stream = run_workflow(flow, compiled, validate_inputs(compiled.inputs, inputs), run_id="t", http=http, service_outputs=outputs, events=True)
        async for item in stream:
            (events if isinstance(item, NodeEvent) else chunks).append(item)
    return chunks, events


async def test_drafts_are_written_at_the_same_time_then_merged(servers) -> None:
    a, b = servers
    chunks, events = await run("drafts", {"prompt": "Why is the sky blue?"}, servers)
    assert chunks == expected_tokens(8)
    draft_a, merge = a.stats()["generations"]
    (draft_b,) = b.stats()["generations"]
    # one clock for both servers (CLOCK_MONOTONIC is system-wide): the drafts overlapped
    assert draft_a["start"] < draft_b["end"] and draft_b["start"] < draft_a["end"]
    assert merge["start"] >= max(draft_a["end"], draft_b["end"])
    merge_prompt = a.stats()["last_request"]["messages"][-1]["content"]
    assert merge_prompt.count(expected_text(8)) == 2, merge_prompt
    assert [e.node for e in events if e.state == "finished"][-2:] == ["merge", "merged"]


@pytest.mark.parametrize(("task", "branch"), [("translate", "translate"), ("french", "translate"), ("summarize", "summarize"), ("poem", "answer")])
async def test_route_runs_the_branch_the_task_names(servers, task: str, branch: str) -> None:
    a, b = servers
    chunks, events = await run("route", {"prompt": "Good morning", "task": task}, servers)
    assert chunks == expected_tokens(8)
    assert len(a.stats()["generations"]) == 1
    system = a.stats()["last_request"]["messages"][0]["content"]
    assert {"translate": "Translate", "summarize": "Summarize", "answer": "helpful"}[branch] in system
    assert b.stats()["generations"] == []
    skipped = {e.node for e in events if e.state == "skipped"}
    assert skipped == {"summarize", "translate", "answer"} - {branch}


def test_both_flows_share_one_environment() -> None:
    """Same env-setup spec, so one content-addressed venv serves both files (and a fix to
    the build in one must be made in the other: this fails until it is)."""
    chat = load_flow(REPO_ROOT / "flows" / "local_chat.yml").nodes["llm-env"].spec
    pipelines = load_flow(FLOW).nodes["llm-env"].spec
    assert chat.model_dump(exclude={"description"}) == pipelines.model_dump(exclude={"description"})
