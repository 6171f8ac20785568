"""Draw a compiled flow: mermaid (default), JSON (node-link) or Graphviz dot."""

from __future__ import annotations

import json
import re

import networkx as nx

from .graph import CompiledFlow, CompiledWorkflow

_SHAPES = {"service": ('[["', '"]]'), "run": ('["', '"]')}


def to_mermaid(flow: CompiledFlow, workflow: CompiledWorkflow | None = None) -> str:
    graph = _subgraph(flow, workflow)
    lines = ["graph TD"]
    for node_id, data in graph.nodes(data=True):
        left, right = _SHAPES[data["kind"]]
        lines.append(f"    {_mid(node_id)}{left}{node_id}<br/><i>{data['type']}</i>{right}")
    for up, down, data in graph.edges(data=True):
        arrow = "==>|stream|" if data.get("stream") else "-->"
        lines.append(f"    {_mid(up)} {arrow} {_mid(down)}")
    return "\n".join(lines) + "\n"


def to_json(flow: CompiledFlow, workflow: CompiledWorkflow | None = None) -> str:
    graph = _subgraph(flow, workflow)
    data = nx.node_link_data(graph, edges="edges")
    return json.dumps(data, indent=2) + "\n"


def to_dot(flow: CompiledFlow, workflow: CompiledWorkflow | None = None) -> str:
    graph = _subgraph(flow, workflow)
    lines = ["digraph flow {", "    rankdir=TB;"]
    for node_id, data in graph.nodes(data=True):
        shape = "box3d" if data["kind"] == "service" else "box"
        lines.append(f'    "{node_id}" [label="{node_id}\\n{data["type"]}", shape={shape}];')
    for up, down, data in graph.edges(data=True):
        style = ' [style=bold, label="stream"]' if data.get("stream") else ""
        lines.append(f'    "{up}" -> "{down}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"


FORMATS = {"mermaid": to_mermaid, "json": to_json, "dot": to_dot}


def _subgraph(flow: CompiledFlow, workflow: CompiledWorkflow | None) -> nx.DiGraph:
    if workflow is None:
        return flow.graph
    return flow.graph.subgraph([*workflow.services, *workflow.run_nodes])


def _mid(node_id: str) -> str:
    """A mermaid-safe identifier for a node id (ids may hold '-' or '.')."""
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", node_id)
