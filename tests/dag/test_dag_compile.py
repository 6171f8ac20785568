"""Flows that use the pipeline nodes wrongly are reported at FILE:LINE:COL, with a hint; a
correct one compiles to the plan the scheduler follows."""

from __future__ import annotations

import textwrap

import pytest

from flowctl.engine.errors import FlowError
from flowctl.engine.flow import load_flow_text


def error_of(text: str) -> str:
    with pytest.raises(FlowError) as info:
        load_flow_text(textwrap.dedent(text), "flow.yml")
    return str(info.value)


def test_the_plan_of_a_fan_out_fan_in() -> None:
    flow = load_flow_text(textwrap.dedent("""\
        nodes:
          a: {type: value, value: a}
          b: {type: value, value: b}
          c:
            type: http-stream
            url: http://127.0.0.1:1/x
            body: {p: "${nodes.a.output} ${nodes.b.output}"}
            fallback: spare
          spare: {type: value, value: "${nodes.c.error.message}"}
          reply: {type: sse-sink, source: "${nodes.c.output as stream/text}"}
    """))
    workflow = flow.default_workflow
    assert set(workflow.tasks) == {"a", "b"}
    assert workflow.streamed_nodes == {"c"}
    assert workflow.fallback_nodes == {"spare"}
    assert workflow.passthrough == "c"
    assert set(workflow.waits["reply"]) == {"a", "b"}
    assert flow.graph.edges["c", "spare"]["edge"] == "fallback"


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        (
            """\
            nodes:
              route: {type: switch, value: x, cases: [{equals: 1, to: nowhere}]}
              out: {type: value, value: 1}
            workflows: {w: {output: out}}
            """,
            "flow.yml:2:59: unknown node 'nowhere'",
        ),
        (
            """\
            nodes:
              route: {type: switch, value: x, cases: [{to: out}]}
              out: {type: value, value: 1}
            workflows: {w: {output: out}}
            """,
            "case 0 has no test",
        ),
        (
            """\
            nodes:
              out: {type: value, when: {value: 1, equals: 1, gt: 0}, value: 1}
            workflows: {w: {output: out}}
            """,
            "a condition holds one test; this one has equals, gt",
        ),
        (
            """\
            nodes:
              out: {type: value, when: {value: x, matches: "${input.re}"}, value: 1}
            workflows: {w: {output: out}}
            """,
            "`matches` takes a pattern written in the flow, not a template",
        ),
        (
            """\
            nodes:
              out: {type: value, value: "${item}"}
            workflows: {w: {output: out}}
            """,
            "flow.yml:2:29: 'item' is only defined in a map's per-item `node:` or a map node's `where:`",
        ),
        (
            """\
            nodes:
              s: {type: value, value: x}
              out: {type: value, when: "${nodes.s.output as stream/text}", value: 1}
            workflows: {w: {output: out}}
            """,
            "a condition cannot read a stream",
        ),
        (
            """\
            nodes:
              each: {type: map, items: [1], node: {type: sse-sink, source: x}}
            workflows: {w: {output: each}}
            """,
            "a 'sse-sink' node cannot run inside a map or a loop",
        ),
        (
            """\
            nodes:
              a: {type: value, value: 1, fallback: spare}
              spare: {type: value, value: 2}
              out: {type: value, value: "${nodes.spare.output}"}
            workflows: {w: {output: out}}
            """,
            "fallback node 'spare' is read by out",
        ),
        (
            """\
            nodes:
              a: {type: value, value: 1}
              out: {type: value, value: "${nodes.a.error}"}
            workflows: {w: {output: out}}
            """,
            "only the fallback of node 'a' can read its error",
        ),
        (
            """\
            nodes:
              a: {type: value, value: 1, fallback: spare}
              b: {type: value, value: "${nodes.a.output}"}
              spare: {type: value, value: "${nodes.b.output}"}
            workflows: {w: {output: b}}
            """,
            "fallback 'spare' of node 'a' reads b, which depends on 'a' itself",
        ),
        (
            """\
            nodes:
              s: {type: value, value: x}
              out: {type: value, value: ["${nodes.s.output as stream/text}", "${nodes.s.output}"]}
            workflows: {w: {output: out}}
            """,
            "node 'out' reads node 's' both as a stream and as a value",
        ),
    ],
)
def test_pipeline_mistakes_are_located(flow: str, expected: str) -> None:
    assert expected in error_of(flow)
