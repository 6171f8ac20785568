"""`flowctl graph` with node ids that collide once made safe (`srv-a`, `srv_a`) or that hold
the drawing languages' own syntax (quotes, brackets, pipes, backslashes, `end`, `-->`): every
node is drawn once, under its own id, and the text parses, in mermaid (rendered by the
vendored mermaid in the real browser, tests/ui) and in dot (parsed by pydot)."""

from __future__ import annotations

import html
import json
import re

import pydot
import pytest
from support.hostile_ids import HOSTILE_IDS, hostile_flow_text

from flowctl.engine.export import to_dot, to_json, to_mermaid
from flowctl.engine.flow import load_flow_text


@pytest.fixture(scope="module")
def flow():  # type: ignore[no-untyped-def]
    return load_flow_text(hostile_flow_text())


def test_the_ids_load_as_nodes(flow) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(to_json(flow))
    assert {n["id"] for n in data["nodes"]} == set(HOSTILE_IDS)


def mermaid_ids(text: str) -> dict[str, str]:
    match = re.search(r"%% flowctl-ids (\{.*\})", text)
    assert match, text
    return json.loads(match.group(1))


def test_mermaid_ids_map_one_to_one(flow) -> None:  # type: ignore[no-untyped-def]
    text = to_mermaid(flow)
    ids = mermaid_ids(text)
    assert set(ids) == set(HOSTILE_IDS)
    assert len(set(ids.values())) == len(HOSTILE_IDS), "two nodes share a drawing id"
    for drawn in ids.values():
        assert re.fullmatch(r"n_[A-Za-z0-9_]*", drawn), drawn
    # each node statement: its drawing id, then its label quoted (it may span lines)
    statements = re.findall(r'^    (n_\w*)\["(.*?)"\]$', text, flags=re.M | re.S)
    assert sorted(drawn for drawn, _ in statements) == sorted(ids.values())
    by_drawing_id = {drawn: node_id for node_id, drawn in ids.items()}
    for drawn, label in statements:
        # nothing of the id is left raw in its label: what a quote, a pipe, a bracket or a
        # line break would end is an entity code (`#34;`), which reads back as the id
        first_line = label.split("\n")[0]
        assert not re.search(r'["|\[\]{}<>\t\\*_`]', first_line), label
        assert re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), first_line) == by_drawing_id[drawn]
    edges = [line.strip() for line in text.splitlines() if re.match(r"    n_\w* (-->|==>)", line)]
    assert len(edges) == len(HOSTILE_IDS) - 1
    for up, down in zip(HOSTILE_IDS, HOSTILE_IDS[1:], strict=False):
        assert f"{ids[up]} --> {ids[down]}" in edges


def test_the_usual_ids_stay_readable(flow) -> None:  # type: ignore[no-untyped-def]
    ids = mermaid_ids(to_mermaid(flow))
    assert ids["srv_a"] == "n_srv_a" or ids["srv-a"] == "n_srv_a"
    assert ids["end"] == "n_end"


@pytest.mark.filterwarnings("ignore:'\\w+' deprecated")  # pydot on pyparsing 3.2's renamed methods, not ours
def test_dot_parses_with_every_node_and_edge(flow) -> None:  # type: ignore[no-untyped-def]
    text = to_dot(flow)
    [graph] = pydot.graph_from_dot_data(text)
    nodes = {n.get_name(): n for n in graph.get_nodes() if n.get_name() not in ("node", "edge", "graph")}
    assert len(nodes) == len(HOSTILE_IDS), sorted(nodes)
    # each node's label starts with its own id, escaped for an HTML-like label
    labels = {}
    for name, node in nodes.items():
        label = node.get_label()
        assert label.startswith("<") and label.endswith(">"), label
        inner = label[1:-1]
        assert not re.search(r"<(?!/?(?:br|i|small)\b)", inner), inner  # no tag but ours
        first = inner.split("<br/>")[0]
        labels[name] = html.unescape(first)
    assert sorted(labels.values()) == sorted(HOSTILE_IDS)
    by_id = {label: name for name, label in labels.items()}
    edges = {(e.get_source(), e.get_destination()) for e in graph.get_edges()}
    assert edges == {(by_id[up], by_id[down]) for up, down in zip(HOSTILE_IDS, HOSTILE_IDS[1:], strict=False)}
