"""Compile a `FlowSpec` into a `CompiledFlow`: parse every template, derive the edges, check
references and cycles, and work out each workflow's nodes, services, inputs and output type.

Every error points at the place in the flow file that causes it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import networkx as nx

from ..nodes.base import NodeKind
from ..nodes.registry import NODE_TYPES
from .errors import FlowError, FlowErrors, TemplateError
from .frontends import LocatedSpec
from .graph import CompiledFlow, CompiledNode, CompiledWorkflow
from .spec import WorkflowSpec
from .templating import NO_DEFAULT, CompiledValue, InferredInput, Reference, cast, compile_value, infer_inputs

#: what a template may read, by the kind of node it is in: services start before any run
_KIND_SOURCES = {NodeKind.SERVICE: frozenset({"env", "nodes"}), NodeKind.RUN: frozenset({"env", "nodes", "input", "run"})}


def compile_flow(located: LocatedSpec) -> CompiledFlow:
    return _Compiler(located).compile()


class _Compiler:
    def __init__(self, located: LocatedSpec) -> None:
        self.located = located
        self.spec = located.spec
        self.errors: list[FlowError] = []

    def error(self, message: str, path: tuple[Any, ...], *, hint: str | None = None, key: bool = False) -> None:
        self.errors.append(FlowError(message, location=self.located.locate(path, key=key), hint=hint))

    def compile(self) -> CompiledFlow:
        nodes = {node_id: self._compile_node(node_id) for node_id in self.spec.nodes}
        graph = self._graph(nodes)
        self._raise()
        workflows = self._workflows(nodes, graph)
        self._raise()
        services = tuple(n for n in nx.topological_sort(graph) if nodes[n].is_service)
        return CompiledFlow(
            file=self.located.file,
            form=self.located.document.form,
            spec=self.spec,
            graph=graph,
            nodes=nodes,
            workflows=workflows,
            services=services,
        )

    def _raise(self) -> None:
        if self.errors:
            raise FlowErrors(self.errors)

    # -- nodes -------------------------------------------------------------------------------

    def _compile_node(self, node_id: str) -> CompiledNode:
        spec = self.spec.nodes[node_id]
        fields: dict[str, CompiledValue] = {}
        for name in spec.template_fields:
            value = getattr(spec, name)
            try:
                fields[name] = compile_value(value)
            except TemplateError as exc:
                inner = getattr(exc, "value_path", ())
                self.error(f"bad template in node '{node_id}': {exc.message}", ("nodes", node_id, name, *inner), hint=exc.hint)
        upstream: list[str] = []
        stream_inputs: set[str] = set()
        for need_index, need in enumerate(spec.needs):
            if need not in self.spec.nodes:
                self._unknown_node(need, ("nodes", node_id, "needs", need_index))
            elif need not in upstream:
                upstream.append(need)
        for name, compiled in fields.items():
            for ref in compiled.references:
                path = ("nodes", node_id, name)
                self._check_source(node_id, spec.kind, name, ref, path)
                if ref.source != "nodes":
                    continue
                target = str(ref.path[0]) if ref.path else ""
                if target not in self.spec.nodes:
                    self._unknown_node(target, path)
                    continue
                if target == node_id:
                    self.error(f"node '{node_id}' refers to its own output", path)
                    continue
                if len(ref.path) < 2 or ref.path[1] != "output":
                    self.error(f"'{ref.dotted}': a node is read through its output", path, hint=f"write ${{nodes.{target}.output...}}")
                if target not in upstream:
                    upstream.append(target)
                if ref.type in ("stream/text", "stream/json"):
                    if self.spec.nodes[target].kind is NodeKind.SERVICE:
                        self.error(f"'{ref.dotted}' is a service; it has no stream", path)
                    stream_inputs.add(target)
        return CompiledNode(id=node_id, spec=spec, fields=fields, upstream=tuple(upstream), stream_inputs=frozenset(stream_inputs))

    def _check_source(self, node_id: str, kind: NodeKind, field: str, ref: Reference, path: tuple[Any, ...]) -> None:
        spec = self.spec.nodes[node_id]
        if ref.source in _KIND_SOURCES[kind] or ref.source in spec.field_sources.get(field, ()):
            return
        owners = [f"an {name} node's `{f}:`" for name, (cls, _) in NODE_TYPES.items() for f, sources in cls.field_sources.items() if ref.source in sources]
        if kind is NodeKind.SERVICE and ref.source in _KIND_SOURCES[NodeKind.RUN]:
            self.error(f"'{ref.dotted}' cannot be used in service node '{node_id}': services start before any run", path, hint="move per-run values into a per-run node")
        elif owners:
            self.error(f"'{ref.dotted}' is only defined in " + " or ".join(owners), path)
        else:
            self.error(f"'{ref.dotted}' cannot be used here", path)

    def _unknown_node(self, name: str, path: tuple[Any, ...]) -> None:
        match = difflib.get_close_matches(name, list(self.spec.nodes), n=1, cutoff=0.5)
        hint = f"did you mean '{match[0]}'?" if match else "known nodes: " + ", ".join(self.spec.nodes)
        self.error(f"unknown node '{name}'", path, hint=hint)

    def _graph(self, nodes: dict[str, CompiledNode]) -> nx.DiGraph:
        graph = nx.DiGraph()
        for node_id, node in nodes.items():
            graph.add_node(node_id, type=node.spec.type, kind=node.kind.value)
        for node_id, node in nodes.items():
            for up in node.upstream:
                graph.add_edge(up, node_id, stream=up in node.stream_inputs)
        for node_id, node in nodes.items():
            if node.is_service and any(not nodes[up].is_service for up in node.upstream if up in nodes):
                self.error(f"service node '{node_id}' cannot depend on a per-run node", ("nodes", node_id))
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            return graph
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        self.error("cycle between nodes: " + " → ".join(names), ("nodes", names[0]), key=True, hint="remove one of these references or `needs:`")
        return graph

    # -- workflows ---------------------------------------------------------------------------

    def _workflows(self, nodes: dict[str, CompiledNode], graph: nx.DiGraph) -> dict[str, CompiledWorkflow]:
        specs = dict(self.spec.workflows)
        if not specs:
            sinks = [n for n, node in nodes.items() if node.spec.is_sink]
            specs = {n: WorkflowSpec(output=n) for n in sinks}
        if not specs:
            sink_types = " or ".join(name for name, (cls, _) in NODE_TYPES.items() if cls.is_sink)
            self.error("this flow has no workflow", (), hint=f"add an {sink_types} node, or a `workflows:` entry naming an output node")
            return {}
        result = {}
        for workflow_id, workflow in specs.items():
            compiled = self._workflow(workflow_id, workflow, nodes, graph)
            if compiled is not None:
                result[workflow_id] = compiled
        return result

    def _workflow(self, workflow_id: str, workflow: WorkflowSpec, nodes: dict[str, CompiledNode], graph: nx.DiGraph) -> CompiledWorkflow | None:
        where = ("workflows", workflow_id)
        output = workflow.output
        if output not in nodes:
            self._unknown_node(output, (*where, "output"))
            return None
        if nodes[output].is_service:
            self.error(f"workflow '{workflow_id}' outputs service node '{output}'; a workflow outputs a per-run node", (*where, "output"))
            return None
        ancestors = nx.ancestors(graph, output) | {output}
        order = [n for n in nx.topological_sort(graph) if n in ancestors]
        run_nodes = tuple(n for n in order if not nodes[n].is_service)
        services = tuple(n for n in order if nodes[n].is_service)
        streamed = self._streamed_nodes(run_nodes, nodes, where)
        references = [ref for n in run_nodes for value in nodes[n].fields.values() for ref in value.references]
        inputs = self._inputs(workflow, references, where)
        openai_inputs = {}
        if workflow.openai is not None:
            for name, template in workflow.openai.inputs.items():
                path = (*where, "openai", "inputs", name)
                try:
                    openai_inputs[name] = compile_value(template)
                except TemplateError as exc:
                    self.error(f"bad template: {exc.message}", path, hint=exc.hint)
                    continue
                for ref in openai_inputs[name].references:
                    if ref.source not in ("request", "env"):
                        self.error(f"'{ref.dotted}': an OpenAI input mapping reads `request` (the chat request body)", path)
                if name not in inputs:
                    self.error(f"openai input '{name}' is not an input of workflow '{workflow_id}'", path, hint="inputs: " + ", ".join(inputs))
        return CompiledWorkflow(
            id=workflow_id,
            title=workflow.title,
            description=workflow.description,
            output_node=output,
            run_nodes=run_nodes,
            services=services,
            inputs=inputs,
            output_type=nodes[output].spec.output_type(nodes[output].fields),
            streamed_nodes=streamed,
            openai=workflow.openai,
            openai_inputs=openai_inputs,
            max_concurrency=workflow.max_concurrency,
            default=workflow.default,
        )

    def _streamed_nodes(self, run_nodes: Iterable[str], nodes: dict[str, CompiledNode], where: tuple[Any, ...]) -> frozenset[str]:
        readers: dict[str, list[str]] = {}
        for node_id in run_nodes:
            for up in nodes[node_id].stream_inputs:
                readers.setdefault(up, []).append(node_id)
        for up, consumers in readers.items():
            other = [n for n in run_nodes if up in nodes[n].upstream and n not in consumers]
            if len(consumers) > 1 or other:
                self.error(f"the stream of node '{up}' is read by more than one node ({', '.join(consumers + other)})", ("nodes", up), key=True, hint="a stream can be read once")
        return frozenset(readers)

    def _inputs(self, workflow: WorkflowSpec, references: list[Reference], where: tuple[Any, ...]) -> dict[str, InferredInput]:
        try:
            inferred = infer_inputs(references)
        except TemplateError as exc:
            self.error(exc.message, where, hint=exc.hint)
            return {}
        if workflow.inputs is None:
            return inferred
        declared: dict[str, InferredInput] = {}
        for name, decl in workflow.inputs.items():
            type_name = "text" if decl.type == "string" else decl.type
            default: Any = NO_DEFAULT if decl.default is None else decl.default
            if default is not NO_DEFAULT:
                try:
                    default = cast(default, type_name, f"input.{name}")
                except TemplateError as exc:
                    self.error(f"default of input '{name}': {exc.message}", (*where, "inputs", name, "default"))
            required = decl.required if decl.required is not None else default is NO_DEFAULT
            declared[name] = InferredInput(name=name, type=type_name, default=default, required=required)
        for name in inferred:
            if name not in declared:
                self.error(f"input '{name}' is used but not declared in the workflow's `inputs:`", (*where, "inputs"), key=True, hint=f"declare `{name}:` or remove the explicit `inputs:`")
        return declared
