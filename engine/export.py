"""Draw a compiled flow: mermaid (default), JSON (node-link) or Graphviz dot.

What the drawing shows beyond nodes and edges: service nodes as boxes with double sides, a
switch as a diamond with each edge labelled by the case that takes it, a map or a loop as a
hexagon naming the node type it runs, a node's `when:` under its name, streams as thick edges, a
fallback as a dotted edge. Mermaid output's second line is a `%% flowctl-ids {...}` comment
mapping node ids to the ids in the drawing (the web UI colours nodes live through it).

Node ids are any YAML key, so neither language sees one as written. Each node gets a drawing
id (`_drawing_ids`): `n_` and the id with every character outside `[A-Za-z0-9_]` made `_`,
and a `_2`, `_3`... where two ids would meet (`srv-a` and `srv_a`), so the map is one to one
and the usual ids stay readable. The id itself is only ever a label, escaped for its
language: mermaid's entity codes (`#34;` for `"`), dot's HTML-like labels (`&#34;`), which
take any character (a quoted dot string cannot end in a backslash).
"""

from __future__ import annotations

import json
import re
from typing import Any

import networkx as nx

from .graph import CompiledFlow, CompiledWorkflow

_MERMAID_SHAPES = {"service": ('[["', '"]]'), "run": ('["', '"]'), "switch": ('{"', '"}'), "map": ('{{"', '"}}')}
_DOT_SHAPES = {"service": "box3d", "run": "box", "switch": "diamond", "map": "hexagon"}
_WHEN_CHARS = 48


def to_mermaid(flow: CompiledFlow, workflow: CompiledWorkflow | None = None) -> str:
    graph = _subgraph(flow, workflow)
    ids = _drawing_ids(graph)
    lines = ["graph TD", "    %% flowctl-ids " + json.dumps(ids, separators=(",", ":"))]
    for node_id, data in graph.nodes(data=True):
        left, right = _MERMAID_SHAPES[_shape(data)]
        # lines split by line breaks, not `<br/>`: with a `<br/>` in it, mermaid reads the
        # label's entity codes before its Markdown, and `#42;a#42;` comes out in italics
        label = _mermaid_text(node_id) + "\n*" + _mermaid_text(_subtitle(data)) + "*"
        if data.get("when"):
            label += "\n<small>when " + _mermaid_text(_short(data["when"])) + "</small>"
        lines.append(f"    {ids[node_id]}{left}{label}{right}")
    for up, down, data in graph.edges(data=True):
        lines.append(f"    {ids[up]} {_mermaid_arrow(data)} {ids[down]}")
    return "\n".join(lines) + "\n"


def to_json(flow: CompiledFlow, workflow: CompiledWorkflow | None = None) -> str:
    graph = _subgraph(flow, workflow)
    data = nx.node_link_data(graph, edges="edges")
    return json.dumps(data, indent=2) + "\n"


def to_dot(flow: CompiledFlow, workflow: CompiledWorkflow | None = None) -> str:
    graph = _subgraph(flow, workflow)
    ids = _drawing_ids(graph)
    lines = ["digraph flow {", "    rankdir=TB;"]
    for node_id, data in graph.nodes(data=True):
        label = _dot_text(node_id) + "<br/><i>" + _dot_text(_subtitle(data)) + "</i>"
        if data.get("when"):
            label += "<br/><small>when " + _dot_text(_short(data["when"])) + "</small>"
        lines.append(f"    {ids[node_id]} [label=<{label}>, shape={_DOT_SHAPES[_shape(data)]}];")
    for up, down, data in graph.edges(data=True):
        lines.append(f"    {ids[up]} -> {ids[down]}{_dot_style(data)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


FORMATS = {"mermaid": to_mermaid, "json": to_json, "dot": to_dot}


def _subgraph(flow: CompiledFlow, workflow: CompiledWorkflow | None) -> nx.DiGraph:
    if workflow is None:
        return flow.graph
    return flow.graph.subgraph([*workflow.services, *workflow.run_nodes])


def _shape(data: dict[str, Any]) -> str:
    if data["kind"] == "service":
        return "service"
    if data.get("routes"):
        return "switch"
    if data.get("each"):
        return "map"
    return "run"


def _subtitle(data: dict[str, Any]) -> str:
    if not data.get("each"):
        return str(data["type"])
    return f"loop: repeat {data['each']}" if data["type"] == "loop" else f"map: each {data['each']}"


def _edge_label(data: dict[str, Any]) -> str | None:
    edge = str(data.get("edge"))
    if edge == "route":
        return " | ".join(data.get("cases") or []) or "route"
    if edge in ("stream", "fallback"):
        return edge
    return None


def _mermaid_arrow(data: dict[str, Any]) -> str:
    label = _edge_label(data)
    edge = data.get("edge") or ("stream" if data.get("stream") else "data")
    arrow = {"stream": "==>", "fallback": "-.->"}.get(edge, "-->")
    return f"{arrow}|{_mermaid_text(_short(label))}|" if label else arrow


def _dot_style(data: dict[str, Any]) -> str:
    edge = data.get("edge") or ("stream" if data.get("stream") else "data")
    attrs = {"stream": ["style=bold"], "fallback": ["style=dotted"]}.get(edge, [])
    label = _edge_label(data)
    if label:
        attrs.append(f"label=<{_dot_text(_short(label))}>")
    return f" [{', '.join(attrs)}]" if attrs else ""


def _short(text: str) -> str:
    return text if len(text) <= _WHEN_CHARS else text[: _WHEN_CHARS - 1] + "…"


#: characters that are syntax in a mermaid label: its own (quotes, brackets, `|`, `#`), HTML's
#: (labels are HTML: `&amp;` would show as `&`), Markdown's inline marks (mermaid runs labels
#: through Markdown: `*a*` would be in italics, `http://x`, `www.x` and `a@b.c` links), `\\`,
#: and control characters (a line break is the label's own). Entity codes are read after
#: Markdown, so they show as written.
_MERMAID_SPECIAL = re.compile(r'[#&"<>|{}\[\]\\*_`~()!./@\x00-\x1f\x7f]')
#: what Markdown reads as a block at the start of a label: a list (`- `, `+ `, `1. `, `1) `),
#: a rule, a setext underline
_MERMAID_BLOCK_START = re.compile(r"^(\d*)([-+.)=])")
#: characters an HTML-like dot label must not hold as they are
_DOT_SPECIAL = re.compile(r'[&<>"\\\x00-\x1f\x7f]')


def _mermaid_text(text: str) -> str:
    """Text inside a quoted mermaid label or edge label, as entity codes where needed."""
    return _MERMAID_BLOCK_START.sub(lambda m: f"{m.group(1)}#{ord(m.group(2))};", _MERMAID_SPECIAL.sub(_code, text))


def _code(match: re.Match[str]) -> str:
    return f"#{ord(match.group())};"


def _dot_text(text: str) -> str:
    """Text inside an HTML-like dot label (`label=<...>`), as character references where needed."""
    return _DOT_SPECIAL.sub(lambda m: f"&#{ord(m.group())};", text)


def _drawing_ids(graph: nx.DiGraph) -> dict[str, str]:
    """Node id -> an identifier both languages take as is, different for every node."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for node_id in graph.nodes:
        base = "n_" + re.sub(r"[^A-Za-z0-9_]", "_", node_id)
        drawn, n = base, 1
        while drawn in taken:
            n += 1
            drawn = f"{base}_{n}"
        taken.add(drawn)
        ids[node_id] = drawn
    return ids
