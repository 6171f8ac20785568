"""`loop`: a body node run again and again, reading the last output, until (or while) a
condition holds, at most `max_iterations` times (docs/dag.md#loops). The bodies are real:
commands run as processes, requests go to a real HTTP server."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator

import pytest
from support.dag import run_flow
from support.echo import EchoServer, echo_server

from flowctl.engine.errors import FlowError, RunError
from flowctl.engine.flow import load_flow_text


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    with echo_server() as server:
        yield server


COUNT = """
nodes:
  count:
    type: loop
    input: ${input.limit as integer | 3}
    node:
      type: command
      argv: [python3, -c, "import sys, json; print(json.dumps({'n': int(sys.argv[1]) + 1, 'index': int(sys.argv[2])}))", "${loop.previous.n | 0}", "${loop.index}"]
      stdout: json
    CONDITION
    max_iterations: 10
workflows:
  w: {output: count}
"""


async def test_until_runs_the_body_until_the_condition_holds_on_its_output() -> None:
    flow = COUNT.replace("CONDITION", 'until: {value: "${loop.output.n}", gte: "${loop.input}"}')
    chunks, events = await run_flow(flow, {"limit": 4}, events=True)
    assert chunks == [{"n": 4, "index": 3}]
    progress = [e["done"] for e in events if e["node"] == "count" and e["state"] == "progress"]
    assert progress == [1, 2, 3, 4]


async def test_while_goes_on_while_the_condition_holds() -> None:
    flow = COUNT.replace("CONDITION", 'while: {value: "${loop.output.n}", lt: 2}')
    chunks, _ = await run_flow(flow, {})
    assert chunks == [{"n": 2, "index": 1}]


async def test_a_comparison_without_value_compares_the_iterations_output() -> None:
    flow = """
nodes:
  spin:
    type: loop
    node: {type: value, value: "${loop.index}"}
    until: {equals: 2}
workflows:
  w: {output: spin}
"""
    assert (await run_flow(flow, {}))[0] == [2]


async def test_reaching_max_iterations_fails_the_loop_naming_it() -> None:
    flow = COUNT.replace("CONDITION", "until: {value: \"${loop.output.n}\", gte: 1000}")
    with pytest.raises(RunError, match="ran 10 iterations and `until` never said stop") as caught:
        await run_flow(flow, {})
    assert caught.value.node == "count"
    assert "max_iterations" in (caught.value.hint or "")


async def test_a_failing_iteration_fails_the_loop_naming_the_iteration() -> None:
    flow = """
nodes:
  fragile:
    type: loop
    node:
      type: command
      argv: [python3, -c, "import sys; sys.exit(int(sys.argv[1]) == 2 and 7)", "${loop.index}"]
    until: false
workflows:
  w: {output: fragile}
"""
    with pytest.raises(RunError, match=r"node 'fragile': iteration 2: .*7"):
        await run_flow(flow, {})


async def test_polling_a_real_server_until_it_is_ready(echo: EchoServer) -> None:
    job = uuid.uuid4().hex[:8]
    flow = f"""
nodes:
  poll:
    type: loop
    input: {job}
    node:
      type: http-stream
      method: GET
      url: {echo.url}/status?job=${{loop.input}}&ready_after=3
      stream_format: null
    until: {{value: "${{loop.output.status}}", equals: ready}}
    delay: 0.01
workflows:
  w: {{output: poll}}
"""
    chunks, _ = await run_flow(flow, {})
    assert chunks == [{"job_id": job, "status": "ready", "attempt": 3}]


async def test_paging_through_a_real_server_feeds_each_answer_forward(echo: EchoServer) -> None:
    flow = f"""
nodes:
  pages:
    type: loop
    node:
      type: http-stream
      method: GET
      url: {echo.url}/pages
      params: {{cursor: "${{loop.previous.next_cursor | null}}"}}
      stream_format: null
    while: {{value: "${{loop.output.next_cursor}}", not_equals: null}}
workflows:
  w: {{output: pages}}
"""
    chunks, _ = await run_flow(flow, {})
    assert chunks == [{"page_number": 3, "items": [7, 8, 9], "next_cursor": None}]


def error_of(text: str) -> str:
    with pytest.raises(FlowError) as info:
        load_flow_text(textwrap.dedent(text), "flow.yml")
    return str(info.value)


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        (
            """\
            nodes:
              l: {type: loop, node: {type: value, value: 1}}
            workflows: {w: {output: l}}
            """,
            "flow.yml:2:6: a loop needs exactly one of `until:`",
        ),
        (
            """\
            nodes:
              l: {type: loop, node: {type: value, value: 1}, until: true, max_iterations: 0}
            workflows: {w: {output: l}}
            """,
            "flow.yml:2:79",
        ),
        (
            """\
            nodes:
              out: {type: value, value: "${loop.index}"}
            workflows: {w: {output: out}}
            """,
            "flow.yml:2:29: 'loop.index' is only defined in a loop's `node:` or a loop node's `until:` or a loop node's `while:`",
        ),
        (
            """\
            nodes:
              l: {type: loop, node: {type: sse-sink, source: x}, until: true}
            workflows: {w: {output: l}}
            """,
            "a 'sse-sink' node cannot run inside a map or a loop",
        ),
        (
            """\
            nodes:
              l: {type: loop, node: {type: value, value: 1}, until: {value: "${item}", equals: 1}}
            workflows: {w: {output: l}}
            """,
            "flow.yml:2:57: 'item' is only defined in a map's per-item `node:`",
        ),
    ],
)
def test_loop_mistakes_are_located(flow: str, expected: str) -> None:
    assert expected in error_of(flow)
