"""The compiled flow: an immutable networkx DiGraph of typed nodes plus its workflows.

A reload builds a new `CompiledFlow` and swaps a reference; runs keep the one they started with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx

from ..nodes.base import NodeKind, NodeSpecBase
from .spec import FlowSpec, OpenAISpec, ServerSpec
from .templating import CompiledValue, InferredInput, json_schema_for_inputs


@dataclass(frozen=True)
class CompiledNode:
    id: str
    spec: NodeSpecBase
    #: the node's template fields, parsed
    fields: Mapping[str, CompiledValue]
    #: upstream node ids: `needs:` plus every `${nodes.<id>...}` reference
    upstream: tuple[str, ...]
    #: upstream nodes whose output this node reads as a stream (`as stream/...`)
    stream_inputs: frozenset[str] = frozenset()
    #: upstream nodes this node reads only through templates with a `| default`: their
    #: being skipped does not skip this node (see `scheduler`'s skip rule)
    optional_inputs: frozenset[str] = frozenset()
    #: switches that name this node in a case: it runs only when one of them chooses it
    routed_by: tuple[str, ...] = ()
    #: a map's per-item node (compiled like a node, with `item` and `index` in scope)
    inner: CompiledNode | None = None

    @property
    def kind(self) -> NodeKind:
        return self.spec.kind

    @property
    def is_service(self) -> bool:
        return self.spec.kind is NodeKind.SERVICE

    @property
    def fallback(self) -> str | None:
        return getattr(self.spec, "fallback", None)


@dataclass(frozen=True)
class CompiledWorkflow:
    id: str
    title: str | None
    description: str | None
    output_node: str
    #: per-run nodes, in dependency order, ending with `output_node`
    run_nodes: tuple[str, ...]
    #: service nodes the run needs, in start order
    services: tuple[str, ...]
    inputs: Mapping[str, InferredInput]
    #: "stream/text", "stream/json" or "value"
    output_type: str
    #: nodes read as a stream by exactly one consumer (opened lazily, never collected)
    streamed_nodes: frozenset[str]
    #: per-run nodes that run as tasks of the run's task group, all at once as their inputs
    #: become ready: every run node but the streamed ones, fallbacks and the output node
    tasks: tuple[str, ...] = ()
    #: per node: the task nodes that must be over (finished or skipped) before it may start;
    #: a streamed upstream's own waits count, as it is opened when its reader starts
    waits: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: nodes that run only in place of a failed node (`fallback:`)
    fallback_nodes: frozenset[str] = frozenset()
    #: when the output node only forwards one stream (an sse-sink over one `as stream/...`
    #: reference), that stream's node: the run then hands its chunks straight to the client
    passthrough: str | None = None
    openai: OpenAISpec | None = None
    openai_inputs: Mapping[str, CompiledValue] = field(default_factory=dict)
    max_concurrency: int | None = None
    default: bool = False

    @property
    def streams(self) -> bool:
        return self.output_type.startswith("stream/")

    @cached_property
    def input_schema(self) -> dict[str, Any]:
        return json_schema_for_inputs(self.inputs)


@dataclass(frozen=True)
class CompiledFlow:
    file: str
    form: str
    spec: FlowSpec
    graph: nx.DiGraph
    nodes: Mapping[str, CompiledNode]
    workflows: Mapping[str, CompiledWorkflow]
    #: every service node, in start order
    services: tuple[str, ...]

    @property
    def server(self) -> ServerSpec:
        return self.spec.server

    @property
    def name(self) -> str:
        return self.spec.name or "flow"

    @property
    def default_workflow(self) -> CompiledWorkflow:
        for workflow in self.workflows.values():
            if workflow.default:
                return workflow
        return next(iter(self.workflows.values()))

    def workflow(self, workflow_id: str | None) -> CompiledWorkflow | None:
        if workflow_id is None:
            return self.default_workflow if self.workflows else None
        return self.workflows.get(workflow_id)

    @cached_property
    def service_fingerprints(self) -> dict[str, str]:
        """A digest per service of its own spec and everything upstream of it: a reload restarts
        a service exactly when this changes. `description` is left out (it changes nothing that
        runs), and `needs` counts as the set of upstream digests, so reordering it is no change."""
        prints: dict[str, str] = {}
        for node_id in self.services:
            node = self.nodes[node_id]
            material = {
                "spec": node.spec.model_dump(mode="json", exclude={"description", "needs"}),
                "upstream": {up: prints.get(up, up) for up in node.upstream},
            }
            prints[node_id] = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
        return prints
