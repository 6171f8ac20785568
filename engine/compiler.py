"""Compile a `FlowSpec` into a `CompiledFlow`: parse every template, derive the edges, check
references and cycles, and work out each workflow's nodes, services, inputs and output type.

Every error points at the place in the flow file that causes it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import networkx as nx

from ..nodes.base import NodeKind, NodeSpecBase
from ..nodes.registry import NODE_TYPES
from .conditions import plain
from .errors import FlowError, FlowErrors, TemplateError
from .frontends import LocatedSpec
from .graph import CompiledFlow, CompiledNode, CompiledWorkflow
from .spec import WorkflowSpec
from .templating import NO_DEFAULT, CompiledValue, InferredInput, Reference, cast, compile_value, infer_inputs
from .templating.ast import STREAM_TYPES

#: what a template may read, by the kind of node it is in: services start before any run
_KIND_SOURCES = {NodeKind.SERVICE: frozenset({"env", "nodes"}), NodeKind.RUN: frozenset({"env", "nodes", "input", "run"})}
#: what the node inside a map (`${item}`, `${index}`) or a loop (`${loop...}`) reads besides
_INNER_SOURCES = {"item": "a map's per-item `node:`", "index": "a map's per-item `node:`", "loop": "a loop's `node:`", "hook": "a hook node's `node:` and `output:`"}


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
        routed_by = self._routes()
        nodes = {node_id: self._compile_node(node_id, routed_by=tuple(routed_by.get(node_id, ()))) for node_id in self.spec.nodes}
        self._check_fallbacks(nodes)
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

    def _compile_node(self, node_id: str, *, routed_by: tuple[str, ...] = (), spec: NodeSpecBase | None = None, at: tuple[Any, ...] | None = None, inner: frozenset[str] = frozenset()) -> CompiledNode:
        """Parse a node's templates and find what it reads. `inner`: for a map's per-item node
        or a loop's body, the sources its owner gives it (`at` is where it is written); its
        (`at` is where it is written), whose references count as the map's."""
        spec = spec if spec is not None else self.spec.nodes[node_id]
        at = at if at is not None else ("nodes", node_id)
        fields: dict[str, CompiledValue] = {}
        for name in spec.template_fields:
            if name == "when" and "when" not in spec.model_fields_set:
                continue
            value = plain(getattr(spec, name))
            try:
                fields[name] = compile_value(value)
            except TemplateError as exc:
                inner_path = getattr(exc, "value_path", ())
                self.error(f"bad template in node '{node_id}': {exc.message}", (*at, _key(spec, name), *inner_path), hint=exc.hint)
        upstream: list[str] = []
        stream_inputs: set[str] = set()
        defaulted: dict[str, bool] = {}  # target -> every reference to it has a default
        for need_index, need in enumerate(spec.needs):
            if need not in self.spec.nodes:
                self._unknown_node(need, (*at, "needs", need_index))
            elif need not in upstream:
                upstream.append(need)
                defaulted[need] = False
        for target, where in spec.services_named():
            path = (*at, *where)
            if target not in self.spec.nodes:
                self._unknown_node(target, path)
                continue
            problem = self.spec.nodes[target].unservable()
            if problem is not None:
                self.error(f"`service: {target}`: {problem}", path, hint="name a process-start node with `port:`, or give a `url:`")
            elif target not in upstream:
                upstream.append(target)
                defaulted[target] = False
        for router in routed_by:
            if router not in upstream:
                upstream.append(router)
                defaulted[router] = False
        for name, compiled in fields.items():
            for ref in compiled.references:
                path = (*at, _key(spec, name))
                self._check_source(node_id, spec, name, ref, path, inner=inner)
                if ref.source != "nodes":
                    continue
                target = str(ref.path[0]) if ref.path else ""
                if target not in self.spec.nodes:
                    self._unknown_node(target, path)
                    continue
                if target == node_id:
                    self.error(f"node '{node_id}' refers to its own output", path)
                    continue
                if len(ref.path) < 2 or ref.path[1] not in ("output", "error"):
                    self.error(f"'{ref.dotted}': a node is read through its output", path, hint=f"write ${{nodes.{target}.output...}}")
                elif ref.path[1] == "error" and self.spec.nodes[target].fallback != node_id:  # type: ignore[attr-defined]
                    self.error(f"'{ref.dotted}': only the fallback of node '{target}' can read its error", path, hint=f"write ${{nodes.{target}.output...}}, or make this node `fallback:` of '{target}'")
                if target not in upstream:
                    upstream.append(target)
                defaulted[target] = defaulted.get(target, True) and ref.has_default
                if ref.type in STREAM_TYPES:
                    if self.spec.nodes[target].kind is NodeKind.SERVICE:
                        self.error(f"'{ref.dotted}' is a service; it has no stream", path)
                    elif name in getattr(spec, "condition_fields", ()):
                        self.error(f"'{ref.dotted}': a condition cannot read a stream", path, hint="read it `as text`")
                    elif inner:
                        self.error(f"'{ref.dotted}': a node run per item or per iteration cannot read a stream (it would be read more than once)", path, hint="read it `as text`")
                    else:
                        stream_inputs.add(target)
        inner_node = self._compile_inner(node_id, spec, at, inner)
        if inner_node is not None:
            for up in inner_node.upstream:
                if up not in upstream:
                    upstream.append(up)
                defaulted[up] = defaulted.get(up, True) and up in inner_node.optional_inputs
        optional = frozenset(t for t, ok in defaulted.items() if ok)
        return CompiledNode(
            id=node_id, spec=spec, fields=fields, upstream=tuple(upstream), stream_inputs=frozenset(stream_inputs),
            optional_inputs=optional, routed_by=routed_by, inner=inner_node,
        )

    def _compile_inner(self, node_id: str, spec: NodeSpecBase, at: tuple[Any, ...], outer: frozenset[str] = frozenset()) -> CompiledNode | None:
        field = getattr(spec, "inner_field", None)
        inner_spec = getattr(spec, field) if field else None
        if inner_spec is None:
            return None
        where = (*at, field)
        if inner_spec.kind is NodeKind.SERVICE or not getattr(inner_spec, "mappable", False):
            self.error(f"a '{inner_spec.type}' node cannot run inside a map or a loop", (*where, "type"), hint="use value, command or http-stream")
            return None
        if getattr(inner_spec, "fallback", None):
            self.error("a per-item node has no `fallback:`", (*where, "fallback"), key=True, hint="give the map node itself a `fallback:`")
        # a body inside a body (a hook's inside a loop) reads its owners' sources too
        return self._compile_node(f"{node_id}[]", spec=inner_spec, at=where, inner=outer | getattr(spec, "inner_sources", frozenset()))

    def _routes(self) -> dict[str, list[str]]:
        """target -> the switches that name it, checking each target is a per-run node."""
        routed_by: dict[str, list[str]] = {}
        for node_id, spec in self.spec.nodes.items():
            for target, where in spec.route_targets():
                path = ("nodes", node_id, *where)
                if target not in self.spec.nodes:
                    self._unknown_node(target, path)
                elif target == node_id:
                    self.error(f"switch '{node_id}' routes to itself", path)
                elif self.spec.nodes[target].kind is NodeKind.SERVICE:
                    self.error(f"switch '{node_id}' routes to service node '{target}'; a switch chooses per-run nodes", path)
                elif node_id not in routed_by.setdefault(target, []):
                    routed_by[target].append(node_id)
        return routed_by

    def _check_fallbacks(self, nodes: dict[str, CompiledNode]) -> None:
        primary_of: dict[str, str] = {}
        for node_id, node in nodes.items():
            fallback = node.fallback
            if fallback is None:
                continue
            path = ("nodes", node_id, "fallback")
            if fallback not in nodes:
                self._unknown_node(fallback, path)
                continue
            if fallback == node_id:
                self.error(f"node '{node_id}' is its own fallback", path)
            elif nodes[fallback].is_service:
                self.error(f"fallback '{fallback}' is a service node; a fallback is a per-run node", path)
            elif fallback in primary_of:
                self.error(f"'{fallback}' is already the fallback of node '{primary_of[fallback]}'", path, hint="give each node its own fallback node")
            else:
                primary_of[fallback] = node_id
        for fallback, primary in primary_of.items():
            readers = [n for n, node in nodes.items() if fallback in node.upstream]
            if readers:
                self.error(f"fallback node '{fallback}' is read by {', '.join(readers)}; a fallback runs only in place of '{primary}'", ("nodes", fallback), key=True, hint=f"read '{primary}' instead: it carries the fallback's output")
            if nodes[fallback].routed_by:
                self.error(f"fallback node '{fallback}' is also a switch target", ("nodes", fallback), key=True)

    def _check_source(self, node_id: str, spec: NodeSpecBase, field: str, ref: Reference, path: tuple[Any, ...], *, inner: frozenset[str] = frozenset()) -> None:
        kind = spec.kind
        if ref.source in _KIND_SOURCES[kind] or ref.source in spec.field_sources.get(field, ()) or ref.source in inner:
            return
        owners = [f"{_article(name)} {name} node's `{_key(cls, f)}:`" for name, (cls, _) in NODE_TYPES.items() for f, sources in cls.field_sources.items() if ref.source in sources]
        if ref.source in _INNER_SOURCES:
            owners.insert(0, _INNER_SOURCES[ref.source])
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
            attrs: dict[str, Any] = {"type": node.spec.type, "kind": node.kind.value}
            if "when" in node.fields:
                attrs["when"] = _condition_text(node.fields["when"].source)
            if node.inner is not None:
                attrs["each"] = node.inner.spec.type
            if node.spec.route_targets():
                attrs["routes"] = True
            graph.add_node(node_id, **attrs)
        for node_id, node in nodes.items():
            for up in node.upstream:
                edge = "stream" if up in node.stream_inputs else "data"
                if up in node.routed_by:
                    edge = "route"
                elif nodes[up].fallback == node_id:
                    edge = "fallback"
                elif up in node.spec.needs and not any(r.source == "nodes" and r.path and r.path[0] == up for v in node.fields.values() for r in v.references):
                    edge = "needs"
                graph.add_edge(up, node_id, stream=edge == "stream", edge=edge)
            if node.fallback in nodes and not graph.has_edge(node_id, node.fallback):
                graph.add_edge(node_id, node.fallback, stream=False, edge="fallback")
        for node_id, node in nodes.items():
            for target, _where in node.spec.route_targets():
                if target in nodes and graph.has_edge(node_id, target):
                    graph.edges[node_id, target]["cases"] = _case_labels(node.spec, target)
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
        members = self._members(output, nodes, graph)
        order = [n for n in nx.topological_sort(graph) if n in members]
        run_nodes = tuple(n for n in order if not nodes[n].is_service)
        services = tuple(n for n in order if nodes[n].is_service)
        streamed = self._streamed_nodes(run_nodes, nodes, where)
        fallbacks = frozenset(fallback for n in run_nodes if (fallback := nodes[n].fallback))
        if output in fallbacks:
            self.error(f"workflow '{workflow_id}' outputs '{output}', which only runs as a fallback", (*where, "output"))
        tasks = tuple(n for n in run_nodes if n not in streamed and n not in fallbacks and n != output)
        waits = self._waits(run_nodes, nodes, streamed, graph)
        references = [ref for n in run_nodes for node in (nodes[n], nodes[n].inner) if node is not None for value in node.fields.values() for ref in value.references]
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
            tasks=tasks,
            waits=waits,
            fallback_nodes=fallbacks,
            passthrough=self._passthrough(nodes[output], streamed),
            openai=workflow.openai,
            openai_inputs=openai_inputs,
            max_concurrency=workflow.max_concurrency,
            default=workflow.default,
        )

    def _members(self, output: str, nodes: dict[str, CompiledNode], graph: nx.DiGraph) -> set[str]:
        """The output and everything it depends on, plus the fallbacks of those (and what
        the fallbacks read): a fallback is not upstream of anything, yet runs in place of one."""
        members: set[str] = set(nx.ancestors(graph, output)) | {output}
        pending = [n for n in members if nodes[n].fallback in nodes]
        while pending:
            fallback = nodes[pending.pop()].fallback
            if fallback is None or fallback in members:
                continue
            added = (set(nx.ancestors(graph, fallback)) | {fallback}) - members
            members |= added
            pending += [n for n in added if nodes[n].fallback in nodes]
        return members

    def _waits(self, run_nodes: tuple[str, ...], nodes: dict[str, CompiledNode], streamed: frozenset[str], graph: nx.DiGraph) -> dict[str, tuple[str, ...]]:
        """Per node, the task nodes that must be over before it starts (see CompiledWorkflow)."""
        waits: dict[str, set[str]] = {}
        run = set(run_nodes)
        for node_id in run_nodes:
            node = nodes[node_id]
            need: set[str] = set()
            for up in node.upstream:
                if up not in run:
                    continue
                if nodes[up].fallback == node_id:
                    continue  # a fallback reads its primary's error: it runs inside the primary
                need |= waits[up] if up in streamed else {up}
            waits[node_id] = need
        for node_id in reversed(run_nodes):  # a node waits for what its fallback needs, too
            fallback = nodes[node_id].fallback
            if fallback in waits:
                extra = waits[fallback] - {node_id}
                cyclic = extra & (nx.descendants(graph, node_id) | {node_id})
                if cyclic:
                    self.error(f"fallback '{fallback}' of node '{node_id}' reads {', '.join(sorted(cyclic))}, which depends on '{node_id}' itself", ("nodes", node_id, "fallback"))
                waits[node_id] |= extra - cyclic
        for node_id in run_nodes:  # and a streamed node's waits belong to its reader
            for up in nodes[node_id].stream_inputs:
                if up in waits:
                    waits[node_id] |= waits[up]
        return {n: tuple(sorted(w)) for n, w in waits.items()}

    def _streamed_nodes(self, run_nodes: Iterable[str], nodes: dict[str, CompiledNode], where: tuple[Any, ...]) -> frozenset[str]:
        readers: dict[str, list[str]] = {}
        for node_id in run_nodes:
            for up in nodes[node_id].stream_inputs:
                readers.setdefault(up, []).append(node_id)
        for up, consumers in readers.items():
            other = [n for n in run_nodes if up in nodes[n].upstream and n not in consumers and nodes[up].fallback != n]
            also_value = [n for n in consumers if _reads_as_value(nodes[n], up)]
            if len(consumers) > 1 or other:
                self.error(f"the stream of node '{up}' is read by more than one node ({', '.join(consumers + other)})", ("nodes", up), key=True, hint="a stream can be read once")
            elif also_value:
                self.error(f"node '{also_value[0]}' reads node '{up}' both as a stream and as a value", ("nodes", also_value[0]), key=True, hint="a stream can be read once")
        return frozenset(readers)

    @staticmethod
    def _passthrough(node: CompiledNode, streamed: frozenset[str]) -> str | None:
        """The node whose stream `node` only forwards, if it does nothing else (no condition,
        no fallback, no other field written)."""
        forwards = getattr(node.spec, "forwards", None)
        if forwards is None or node.fallback or set(node.fields) != {forwards} or node.spec.needs:
            return None
        templates = node.fields[forwards].templates
        if len(templates) != 1 or templates[0][0] != () or not templates[0][1].is_whole:
            return None
        ref = templates[0][1].references[0]
        if ref.source == "nodes" and len(ref.path) == 2 and ref.path[1] == "output" and ref.type in STREAM_TYPES and not ref.has_default and ref.path[0] in streamed:
            return str(ref.path[0])
        return None

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
            declared[name] = InferredInput(name=name, type=type_name, default=default, required=required, description=decl.description)
        for name in inferred:
            if name not in declared:
                self.error(f"input '{name}' is used but not declared in the workflow's `inputs:`", (*where, "inputs"), key=True, hint=f"declare `{name}:` or remove the explicit `inputs:`")
        return declared



def _reads_as_value(node: CompiledNode, target: str) -> bool:
    return any(
        ref.source == "nodes" and ref.path and ref.path[0] == target and ref.type not in STREAM_TYPES
        for value in node.fields.values()
        for ref in value.references
    )


def _case_labels(spec: Any, target: str) -> list[str]:
    """How each case that routes to `target` reads, for drawing the graph."""
    labels = []
    for index, case in enumerate(getattr(spec, "cases", [])):
        if target in case.to:
            test = {k: v for k, v in plain(case).items() if k not in ("to", "weight")}
            name = test.pop("name", None) or str(index)
            shown = ", ".join(f"{k} {v if isinstance(v, str) else _condition_text(v)}" for k, v in test.items())
            labels.append(f"{name}: {shown}" if shown else name)
    default = getattr(spec, "default", None)
    if default is not None and target in default.to:
        labels.append("default")
    return labels


def _condition_text(condition: Any) -> str:
    """A condition as one short line, for drawing the graph."""
    if isinstance(condition, str):
        return condition
    import json

    return json.dumps(condition, separators=(", ", ": "), ensure_ascii=False, default=str)


def _key(spec: NodeSpecBase | type[NodeSpecBase], field: str) -> str:
    """How a spec field is written in the flow (`while_` is `while:`)."""
    info = (spec if isinstance(spec, type) else type(spec)).model_fields.get(field)
    return info.alias if info is not None and info.alias else field


def _article(word: str) -> str:
    """`an http-stream`, `a map`: by the sound of the first letter."""
    return "an" if word[:1] in "aeiou" or word.startswith("http") else "a"
