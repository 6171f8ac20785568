"""Draw a compiled flow: mermaid (default), JSON (node-link) or Graphviz dot.

What the drawing shows beyond nodes and edges: service nodes as boxes with double sides, a
switch as a diamond with each edge labelled by the case that takes it, a map as a hexagon
naming its per-item node type, a node's `when:` under its name, streams as thick edges, a
fallback as a dotted edge. Mermaid output's second line is a `%% flowctl-ids {...}` comment
mapping node ids to the ids in the drawing (the web UI colours nodes live through it).
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
    ids = {node_id: _mid(node_id) for node_id in graph.nodes}
    lines = ["graph TD", "    %% flowctl-ids " + json.dumps(ids, separators=(",", ":"))]
    for node_id, data in graph.nodes(data=True):
        left, right = _MERMAID_SHAPES[_shape(data)]
        label = _mermaid_text(node_id) + "<br/><i>" + _mermaid_text(_subtitle(data)) + "</i>"
        if data.get("when"):
            label += "<br/><small>when " + _mermaid_text(_short(data["when"])) + "</small>"
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
    lines = ["digraph flow {", "    rankdir=TB;"]
    for node_id, data in graph.nodes(data=True):
        label = f"{node_id}\\n{_subtitle(data)}"
        if data.get("when"):
            label += "\\nwhen " + _short(data["when"])
        lines.append(f'    "{_dot_text(node_id)}" [label="{_dot_text(label, keep_newlines=True)}", shape={_DOT_SHAPES[_shape(data)]}];')
    for up, down, data in graph.edges(data=True):
        lines.append(f'    "{_dot_text(up)}" -> "{_dot_text(down)}"{_dot_style(data)};')
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
    return f"map: each {data['each']}" if data.get("each") else str(data["type"])


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
        attrs.append(f'label="{_dot_text(_short(label))}"')
    return f" [{', '.join(attrs)}]" if attrs else ""


def _short(text: str) -> str:
    return text if len(text) <= _WHEN_CHARS else text[: _WHEN_CHARS - 1] + "…"


def _mermaid_text(text: str) -> str:
    """Text inside a quoted mermaid label or edge label: its own syntax characters escaped."""
    return (
        text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
        .replace("|", "#124;").replace("{", "#123;").replace("}", "#125;")
    )


def _dot_text(text: str, *, keep_newlines: bool = False) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return escaped.replace("\\\\n", "\\n") if keep_newlines else escaped


def _mid(node_id: str) -> str:
    """A mermaid-safe identifier for a node id (ids may hold '-' or '.')."""
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", node_id)
