"""Node events over the API (`?events=nodes`), `flowctl run -v`, and `flowctl graph` drawing
branches, conditions, maps and fallbacks."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.fake import expected_text, fake_vllm_argv
from support.flowctl_up import UpHandle, start_up
from support.paths import PYTHON, REPO_ROOT
from support.procs import free_port

from flowctl.engine.export import to_dot, to_json
from flowctl.engine.flow import load_flow
from flowctl.nodes.sse_parser import iter_sse_events


def fan_in_flow(port: int) -> str:
    argv = json.dumps(fake_vllm_argv(port, quiet=True))
    chat = f"url: http://127.0.0.1:{port}/v1/chat/completions"
    drafts = "".join(f"""  {name}:
    type: http-stream
    needs: [llm]
    {chat}
    headers: {{x-fake-tokens: "4", x-fake-token-delay-ms: "30"}}
    body: {{model: qwen2-7b-instruct, stream: false, messages: [{{role: user, content: "${{input.topic}}"}}]}}
    stream_format: null
    output: ${{response.choices[0].message.content}}
""" for name in ("draft_a", "draft_b"))
    return f"""
nodes:
  llm:
    type: process-start
    command: {argv}
    port: {port}
    readiness: {{http: /v1/models, interval: 0.05}}
    restart: never
{drafts}  merge:
    type: http-stream
    needs: [llm]
    {chat}
    body: {{model: qwen2-7b-instruct, stream: true, messages: [{{role: user, content: "echo: ${{nodes.draft_a.output}} | ${{nodes.draft_b.output}}"}}]}}
    output: ${{response[].choices[0].delta.content}}
  reply:
    type: sse-sink
    source: ${{nodes.merge.output as stream/text}}
"""


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpHandle]:
    handle = start_up(fan_in_flow(free_port()), tmp_path_factory.mktemp("events"), ui_port=None)
    yield handle
    handle.stop()


def test_sse_carries_node_events_between_the_chunks(up: UpHandle) -> None:
    with httpx.Client(timeout=20) as client, client.stream("POST", up.api + "/workflows/reply/runs", params={"events": "nodes"}, json={"input": {"topic": "x"}}) as response:
        assert response.status_code == 200
        events = list(iter_sse_events(response.iter_lines()))
    kinds = [e.event for e in events]
    assert kinds[-1] == "done" and "message" in kinds
    nodes = [json.loads(e.data) for e in events if e.event == "node"]
    order = [(n["node"], n["state"]) for n in nodes]
    assert set(order) == {(n, s) for n in ("draft_a", "draft_b", "merge", "reply") for s in ("started", "finished")}
    first_chunk = kinds.index("message")
    assert ("merge", "started") in order[: kinds[:first_chunk].count("node")], "merge's start came after its first chunk"
    text = "".join(e.data for e in events if e.event == "message")
    assert text == f"{expected_text(4)} | {expected_text(4)}"
    done = json.loads(events[-1].data)
    assert done["chunks"] == kinds.count("message"), "node events were counted as chunks"


def test_without_the_parameter_there_are_no_node_events(up: UpHandle) -> None:
    with httpx.Client(timeout=20) as client, client.stream("POST", up.api + "/workflows/reply/runs", json={"input": {"topic": "x"}}) as response:
        kinds = {e.event for e in iter_sse_events(response.iter_lines())}
    assert kinds == {"message", "done"}


def test_a_collected_answer_lists_its_node_events(up: UpHandle) -> None:
    response = httpx.post(up.api + "/workflows/reply/runs?events=nodes", json={"input": {"topic": "x"}}, headers={"Accept": "application/json"}, timeout=20)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "succeeded"
    assert {(e["node"], e["state"]) for e in body["events"]} >= {("draft_a", "finished"), ("merge", "finished")}


def test_an_unknown_events_value_is_a_422_naming_the_field(up: UpHandle) -> None:
    response = httpx.post(up.api + "/workflows/reply/runs?events=everything", json={"input": {"topic": "x"}}, timeout=20)
    assert response.status_code == 422
    assert response.json()["field"] == "events"


VALUE_FLOW = """
nodes:
  a: {type: value, value: "A"}
  b: {type: value, value: "B", when: "${input.b as boolean | false}"}
  out: {type: value, value: '${nodes.a.output}${nodes.b.output | ""}'}
workflows:
  w: {output: out}
"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "flowctl", *args], capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT))


def test_run_verbose_prints_node_events_to_stderr(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yml"
    flow.write_text(VALUE_FLOW)
    done = run_cli("run", str(flow), "-v")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "A\n"
    lines = done.stderr.splitlines()
    assert any(line.split()[2:] == ["a", "started"] for line in lines), lines
    assert any(" b skipped: `when` does not hold" in line for line in lines), lines
    assert any(" out finished after " in line for line in lines), lines
    quiet = run_cli("run", str(flow))
    assert quiet.stderr == "" and quiet.stdout == "A\n"


def test_graph_shows_branches_conditions_maps_and_fallbacks(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yml"
    flow.write_text("""
nodes:
  route:
    type: switch
    value: ${input.kind}
    cases:
      - {equals: code, to: coder, name: code}
    default: chat
  coder: {type: value, value: c, fallback: spare}
  spare: {type: value, value: s}
  chat: {type: value, value: "x", when: "${input.ok as boolean | true}"}
  each: {type: map, items: "${input.list as list | []}", node: {type: value, value: "${item}"}}
  out: {type: value, value: ['${nodes.coder.output | ""}', '${nodes.chat.output | ""}', "${nodes.each.output}"]}
workflows:
  w: {output: out}
""")
    mermaid = run_cli("graph", str(flow)).stdout
    assert 'n_route{"route\n*switch*"}' in mermaid
    assert "n_route -->|code: equals code| n_coder" in mermaid and "n_route -->|default| n_chat" in mermaid
    assert "<small>when $#123;input#46;ok as boolean #124; true#125;</small>" in mermaid
    assert 'n_each{{"each\n*map: each value*"}}' in mermaid
    assert "n_coder -.->|fallback| n_spare" in mermaid
    compiled = load_flow(flow)  # the other formats in-process: the command line is shown above
    dot = to_dot(compiled)
    assert "n_route [label=<route<br/><i>switch</i>>, shape=diamond];" in dot
    assert "n_coder -> n_spare [style=dotted, label=<fallback>];" in dot
    data = json.loads(to_json(compiled))
    edges = {(e["source"], e["target"]): e for e in data["edges"]}
    assert edges["route", "coder"]["edge"] == "route" and edges["route", "coder"]["cases"] == ["code: equals code"]
