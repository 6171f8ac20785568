"""`when:` skips and their cascade, switches and their joins, maps, value nodes (docs/dag.md)."""

from __future__ import annotations

import uuid

import pytest
from support.dag import chat_node, generations, overlapped, run_flow
from support.fake import expected_text, expected_tokens

from flowctl.engine.errors import RunError


def indent(node_yaml: str) -> str:
    """A node's YAML two spaces deeper (a map's `node:`)."""
    return "".join("  " + line for line in node_yaml.splitlines(keepends=True))


def tag(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


# -- when: and skipping -------------------------------------------------------------------------

SKIP_FLOW = """
nodes:
  other: {type: value, value: here}
  extra:
    type: value
    when: ${input.check as boolean | false}
    value: extra text
  with_default: {type: value, value: "${nodes.extra.output | none}"}
  mixed: {type: value, value: {extra: "${nodes.extra.output}", other: "${nodes.other.output}"}}
  only_extra: {type: value, value: "${nodes.extra.output} again"}
  result:
    type: value
    value:
      with_default: ${nodes.with_default.output}
      mixed: ${nodes.mixed.output}
      only_extra: ${nodes.only_extra.output | skipped}
workflows:
  w: {output: result}
"""


async def test_a_false_when_skips_the_node_and_readers_get_their_default_or_null() -> None:
    chunks, _ = await run_flow(SKIP_FLOW, {"check": "no"})
    assert chunks == [{"with_default": "none", "mixed": {"extra": None, "other": "here"}, "only_extra": "skipped"}]


async def test_a_true_when_runs_the_node() -> None:
    chunks, _ = await run_flow(SKIP_FLOW, {"check": "yes"})
    assert chunks == [{"with_default": "extra text", "mixed": {"extra": "extra text", "other": "here"}, "only_extra": "extra text again"}]


async def test_skips_are_reported_with_their_reason() -> None:
    _, events = await run_flow(SKIP_FLOW, {"check": "false"}, events=True)
    skipped = {e["node"]: e["reason"] for e in events if e["state"] == "skipped"}
    assert skipped == {"extra": "`when` does not hold", "only_extra": "every node it depends on was skipped"}
    finished = {e["node"] for e in events if e["state"] == "finished"}
    assert finished == {"other", "with_default", "mixed", "result"}


@pytest.mark.parametrize(("lang", "runs"), [("fr", True), ("en", False)])
async def test_when_compares_a_value(lang: str, runs: bool) -> None:
    flow = """
nodes:
  translate:
    type: value
    when: {value: "${input.lang}", in: [fr, de]}
    value: translated
  out: {type: value, value: "${nodes.translate.output | as is}"}
workflows:
  w: {output: out}
"""
    chunks, _ = await run_flow(flow, {"lang": lang})
    assert chunks == ["translated" if runs else "as is"]


# -- switch and join -------------------------------------------------------------------------


def route_flow(upstream, coder: str, chat: str) -> str:
    return f"""
nodes:
  route:
    type: switch
    value: ${{input.kind}}
    cases:
      - {{equals: code, to: coder, name: code}}
    default: chat
  coder:
{chat_node(upstream, coder, stream=True, prompt="echo: def f(): pass")}
  chat:
{chat_node(upstream, chat, stream=True, tokens=3)}
  reply:
    type: sse-sink
    source: ["${{nodes.coder.output as stream/text}}", "${{nodes.chat.output as stream/text}}"]
"""


async def test_a_switch_runs_the_chosen_branch_only_and_the_join_streams_it(upstream) -> None:
    coder, chat = tag("coder"), tag("chat")
    chunks, events = await run_flow(route_flow(upstream, coder, chat), {"kind": "code"}, events=True)
    assert "".join(chunks) == "def f(): pass"
    assert len(generations(upstream, coder)) == 1
    assert generations(upstream, chat) == [], "the branch not chosen sent a request"
    skipped = {e["node"]: e["reason"] for e in events if e["state"] == "skipped"}
    assert skipped == {"chat": "not chosen by switch 'route'"}
    route = next(e for e in events if e["node"] == "route" and e["state"] == "finished")
    assert route["elapsed_ms"] >= 0


async def test_the_default_branch_runs_when_no_case_holds(upstream) -> None:
    coder, chat = tag("coder"), tag("chat")
    chunks, _ = await run_flow(route_flow(upstream, coder, chat), {"kind": "poem"})
    assert "".join(chunks) == expected_text(3)
    assert generations(upstream, coder) == []


async def test_what_depends_only_on_an_unchosen_branch_is_skipped(upstream) -> None:
    never = tag("never")
    flow = f"""
nodes:
  route:
    type: switch
    value: ${{input.kind}}
    cases:
      - {{equals: code, to: coder}}
    default: chat
  coder: {{type: value, value: "def f(): pass"}}
  chat: {{type: value, value: "hello"}}
  review:
{chat_node(upstream, never, prompt="review ${nodes.coder.output}")}
  answer: {{type: value, value: '${{nodes.chat.output | ""}}${{nodes.review.output | ""}}'}}
workflows:
  w: {{output: answer}}
"""
    chunks, events = await run_flow(flow, {"kind": "poem"}, events=True)
    assert chunks == ["hello"]
    assert generations(upstream, never) == []
    assert {e["node"]: e["state"] for e in events if e["node"] in ("coder", "review")} == {"coder": "skipped", "review": "skipped"}


async def test_no_case_and_no_default_fails_the_run_naming_the_switch() -> None:
    flow = """
nodes:
  route:
    type: switch
    value: ${input.kind}
    cases:
      - {equals: a, to: x}
  x: {type: value, value: x}
workflows:
  w: {output: x}
"""
    with pytest.raises(RunError, match=r"node 'route': no case holds for 'zzz'") as failed:
        await run_flow(flow, {"kind": "zzz"})
    assert failed.value.node == "route"


async def test_cases_are_tried_in_order_first_match_wins() -> None:
    flow = """
nodes:
  route:
    type: switch
    value: ${input.n as number}
    cases:
      - {gt: 10, to: big}
      - {when: "${input.force as boolean | false}", to: forced}
      - {gt: 0, to: [small, also]}
    default: none
  big: {type: value, value: big}
  forced: {type: value, value: forced}
  small: {type: value, value: small}
  also: {type: value, value: also}
  none: {type: value, value: none}
  out: {type: value, value: "${nodes.big.output | -}/${nodes.forced.output | -}/${nodes.small.output | -}/${nodes.also.output | -}/${nodes.none.output | -}/${nodes.route.output.case}"}
workflows:
  w: {output: out}
"""
    assert (await run_flow(flow, {"n": 50, "force": True}))[0] == ["big/-/-/-/-/0"]
    assert (await run_flow(flow, {"n": 5, "force": True}))[0] == ["-/forced/-/-/-/1"]
    assert (await run_flow(flow, {"n": 5}))[0] == ["-/-/small/also/-/2"]
    assert (await run_flow(flow, {"n": -1}))[0] == ["-/-/-/-/none/default"]


async def test_a_random_switch_draws_by_weight() -> None:
    flow = """
nodes:
  pick:
    type: switch
    mode: random
    cases:
      - {to: a, weight: 0}
      - {to: b, weight: 1}
  a: {type: value, value: a}
  b: {type: value, value: b}
  out: {type: value, value: '${nodes.a.output | ""}${nodes.b.output | ""}'}
workflows:
  w: {output: out}
"""
    for _ in range(5):
        assert (await run_flow(flow))[0] == ["b"]


# -- map ---------------------------------------------------------------------------------------


async def test_map_keeps_input_order() -> None:
    flow = """
nodes:
  each:
    type: map
    items: ${input.words as list}
    node: {type: value, value: "${index}:${item}"}
workflows:
  w: {output: each}
"""
    assert (await run_flow(flow, {"words": ["a", "b", "c"]}))[0] == [["0:a", "1:b", "2:c"]]
    assert (await run_flow(flow, {"words": []}))[0] == [[]]


async def test_map_bounds_how_many_items_run_at_once_and_keeps_order(upstream) -> None:
    name = tag("item")
    delays = [120, 10, 80, 10, 60, 10]
    flow = f"""
nodes:
  each:
    type: map
    items: ${{input.delays as list}}
    concurrency: 2
    node:
{indent(chat_node(upstream, name, prompt="echo: item ${index}", token_delay_ms="${item}"))}
workflows:
  w: {{output: each}}
"""
    chunks, _ = await run_flow(flow, {"delays": delays})
    assert chunks == [[f"item {i}" for i in range(len(delays))]]
    seen = generations(upstream, name)
    assert len(seen) == len(delays)
    most = max(sum(1 for g in seen if g["start"] <= s["start"] < g["end"]) for s in seen)
    assert most == 2, f"at most 2 items at once, and 2 did overlap; the upstream saw {most}"


async def test_map_where_filters_items_without_a_node() -> None:
    flow = """
nodes:
  keep:
    type: map
    items: ${input.people as list}
    where: {value: "${item.age}", gte: 18}
workflows:
  w: {output: keep}
"""
    people = [{"name": "a", "age": 30}, {"name": "b", "age": 12}, {"name": "c", "age": 18}]
    assert (await run_flow(flow, {"people": people}))[0] == [[people[0], people[2]]]


async def test_a_failing_item_fails_the_map_naming_the_item_and_stops_the_others(upstream) -> None:
    good, bad = tag("good"), tag("bad")
    flow = f"""
nodes:
  each:
    type: map
    items: ${{input.items as list}}
    concurrency: 4
    node:
      type: http-stream
      url: {upstream.chat_url}
      headers: {{x-fake-tag: "${{item.tag}}", x-fake-fail-status: "${{item.fail}}", x-fake-tokens: "50", x-fake-token-delay-ms: "${{item.delay}}"}}
      body: {{model: {upstream.model}, stream: false, messages: [{{role: user, content: hi}}]}}
      stream_format: null
      output: ${{response.choices[0].message.content}}
workflows:
  w: {{output: each}}
"""
    items = [{"tag": good, "fail": "", "delay": 40}, {"tag": good, "fail": "", "delay": 40}, {"tag": bad, "fail": "503", "delay": 200}]
    with pytest.raises(RunError, match=r"node 'each': item 2: .*503") as failed:
        await run_flow(flow, {"items": items})
    assert failed.value.node == "each"
    assert {g["outcome"] for g in generations(upstream, good)} == {"cancelled"}


async def test_more_items_than_max_items_fail_before_any_runs() -> None:
    flow = """
nodes:
  each:
    type: map
    items: ${input.n as list}
    max_items: 2
    node: {type: value, value: "${item}"}
workflows:
  w: {output: each}
"""
    with pytest.raises(RunError, match=r"3 items, more than `max_items` \(2\)"):
        await run_flow(flow, {"n": [1, 2, 3]})


# -- value ---------------------------------------------------------------------------------------


async def test_value_builds_a_structure_and_merges_parallel_outputs(upstream) -> None:
    a, b = tag("a"), tag("b")
    flow = f"""
nodes:
  a:
{chat_node(upstream, a, tokens=4, token_delay_ms=30)}
  b:
{chat_node(upstream, b, tokens=4, token_delay_ms=30)}
  merged:
    type: value
    value:
      messages:
        - {{role: user, content: "A: ${{nodes.a.output}} / B: ${{nodes.b.output}}"}}
      count: ${{input.n as integer | 2}}
workflows:
  w: {{output: merged}}
"""
    chunks, _ = await run_flow(flow)
    assert chunks == [{"messages": [{"role": "user", "content": f"A: {expected_text(4)} / B: {expected_text(4)}"}], "count": 2}]
    assert overlapped(generations(upstream, a)[0], generations(upstream, b)[0])


async def test_a_value_node_forwards_a_stream(upstream) -> None:
    name = tag("s")
    flow = f"""
nodes:
  llm:
{chat_node(upstream, name, stream=True, tokens=4)}
  relay: {{type: value, value: "${{nodes.llm.output as stream/text}}"}}
  reply: {{type: sse-sink, source: "${{nodes.relay.output as stream/text}}"}}
"""
    assert (await run_flow(flow))[0] == expected_tokens(4)
