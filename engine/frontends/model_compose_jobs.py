"""model-compose workflows and their jobs: the per-run half of the lowering.

A workflow is a graph of jobs. Each job becomes native node(s) (see `model_compose_calls`
for component jobs, `model_compose_routing` for if/switch/random-router/filter/for-each/delay)
and a *value*: the native template tree that `${jobs.<id>.output...}` stands for. A job that
reads another job's output gets that tree substituted in place (`templating.rewrite.bind`), so
the lowered node reads the upstream node directly and the reference is also the graph's edge.
`depends_on` adds the order model-compose asks for (an inner list, an OR-group, the same:
flowctl runs a job once every job it waits on is over, and skips it only when all of those
were skipped).

The workflow's output is `output:` when written, else the output of the job nothing depends
on (of whichever routed job ran, when several end the workflow). It becomes the output node:
an sse-sink for a stream (`${output as text;sse-text}`), the job's own node when it is exactly
that node's output, a request node with the shape folded into its `output:`, or else a value
node that builds it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import TemplateError
from ..loader import PathKey
from ..templating import NO_DEFAULT, SOURCES
from ..templating.ast import Expr, Reference
from ..templating.parser import parse_parts
from ..templating.rewrite import Unbindable, bind, references_in, unparse
from ..templating.types import TypeSpec
from . import model_compose_keys as keys

if TYPE_CHECKING:
    from .model_compose import _Lowering

#: the id model-compose clients send for "the default workflow" (`POST /workflows/runs`);
#: model-compose resolves it to the only workflow, or to the one marked `default: true`
DEFAULT_WORKFLOW_ID = "__default__"

#: what model-compose templates may read (`mindor.core.workflow.context` and the job sources)
MC_SOURCES = ("input", "env", "output", "jobs", "result", "result[]", "response", "response[]", "context", "item", "index", "error", "gateway")
#: either vocabulary, for scanning trees that are part lowered
ANY_SOURCES = tuple(dict.fromkeys((*MC_SOURCES, *SOURCES)))

#: model-compose's `${context.*}` that flowctl has: the run's id, the client's `session_id`
_CONTEXT = {("context", "run_id"): "${run.id}", ("context", "task_id"): "${run.id}", ("context", "session_id"): "${run.session}"}

#: job types that route instead of producing a value
ROUTING_TYPES = frozenset({"if", "switch", "random-router"})


@dataclass
class Job:
    """One job of a workflow, as lowered."""

    id: str
    path: PathKey
    data: dict[str, Any]
    type: str
    #: the native node id the job's work is done by
    node: str
    #: whether `data` is the job's own mapping (not a workflow standing in for its one job)
    own_mapping: bool = True
    #: what `${jobs.<id>.output}` stands for: a native template tree (None until lowered)
    value: Any = None
    #: the `as` clause of an output that is the job's result as it is (`${output as text;sse-text}`)
    hint: TypeSpec | None = None
    #: job ids it waits on (`depends_on`, flattened) and reads (`${jobs.<id>...}`)
    waits: list[str] = field(default_factory=list)
    #: the routing job that chooses it, if any
    routed_by: str | None = None
    #: the pause node before its work (`interrupt.before`) and the input it stands for
    paused_before: tuple[str, Any] | None = None
    #: the pause node after its work (`interrupt.after`), which what comes after it waits on
    paused_after: str | None = None


def lower_workflows(lw: _Lowering, data: dict[str, Any]) -> dict[str, Any]:
    entries = lw.entries(data, "workflow", "workflows")
    if not entries and not lw.errors:
        lw.error("a model-compose flow needs a `workflow:`", (), hint="add `workflow:` with the `output:` of a component's action")
    single = len(entries) == 1
    result: dict[str, Any] = {}
    for given_id, path, workflow in entries:
        workflow_id = given_id or (DEFAULT_WORKFLOW_ID if single else "__workflow__")
        if workflow_id in result:
            lw.error(f"workflow id '{workflow_id}' is used twice", (*path, "id") if "id" in workflow else path, key=True,
                     hint="give each workflow its own `id:`")
            continue
        lowered = WorkflowLowering(lw, workflow_id, given_id, path, workflow).lower()
        if lowered is None:
            continue
        # model-compose runs the only workflow (or the `default: true` one) for `__default__`
        lowered["default"] = True if single else workflow.get("default", False)
        result[workflow_id] = lowered
        lw.origin[("workflows", workflow_id)] = path
    return result


class WorkflowLowering:
    """One workflow: its jobs, in dependency order, then its output node."""

    def __init__(self, lw: _Lowering, workflow_id: str, given_id: str | None, path: PathKey, workflow: dict[str, Any]) -> None:
        self.lw = lw
        self.workflow_id = workflow_id
        self.given_id = given_id
        self.path = path
        self.workflow = workflow
        self.jobs: dict[str, Job] = {}
        #: the job being lowered, named in template errors
        self.current: Job | None = None

    # -- helpers -----------------------------------------------------------------------------

    def error(self, message: str, path: PathKey, *, hint: str | None = None, key: bool = False) -> None:
        self.lw.error(message, path, hint=hint, key=key)

    def bindings(self) -> dict[tuple[Any, ...], Any]:
        """What a job's templates may read of other jobs: their lowered values."""
        found: dict[tuple[Any, ...], Any] = {**_CONTEXT, **self.lw.gateway_sources}
        for job in self.jobs.values():
            if job.value is not None:
                found[("jobs", job.id, "output")] = job.value
        return found

    def bind(self, value: Any, path: PathKey, extra: dict[tuple[Any, ...], Any] | None = None, sources: tuple[str, ...] = MC_SOURCES) -> Any:
        """`value` (model-compose templates, reading `sources`) with the other jobs' values,
        `extra` and `${context.run_id}` substituted; errors are reported at `path` and give None."""
        operator = _operator_key(value)
        if operator is not None:
            at, key = operator
            self.error(f"model-compose's `{key}` operator in a value is not supported by flowctl", (*path, *at), key=True,
                       hint="build the value in a job (a command or an http call), or write this part in flowctl's native form")
            return None
        try:
            bound = bind(value, {**self.bindings(), **(extra or {})}, sources)
        except TemplateError as exc:
            where = f" in node '{self.current.node}'" if self.current is not None else ""
            self.error(f"bad template{where}: {exc.message}", (*path, *getattr(exc, "value_path", ())), hint=exc.hint)
            return None
        except Unbindable as exc:
            self.error(str(exc), (*path, *getattr(exc, "value_path", ())),
                       hint=exc.hint or "flowctl lowers each model-compose template to one native template")
            return None
        return bound

    def check_native(self, value: Any, path: PathKey, allowed: tuple[str, ...] = ()) -> bool:
        """Report every reference left in model-compose's vocabulary (an unknown job, an
        `${output}` where there is none...). True when `value` reads only native sources."""
        try:
            refs = references_in(value, ANY_SOURCES)
        except TemplateError:
            return True  # reported when the node is compiled, at the same place
        good = True
        for ref in refs:
            if ref.source in SOURCES or ref.source in allowed:
                continue
            good = False
            message, *hint = _foreign(ref, self.jobs)
            self.error(message, path, hint=hint[0] if hint else None)
        return good

    # -- the workflow ------------------------------------------------------------------------

    def lower(self) -> dict[str, Any] | None:
        workflow, path = self.workflow, self.path
        where = f"in workflow '{self.given_id}'" if self.given_id else "in workflow"
        keys.check_keys(workflow, path, keys.WORKFLOW_WITH_IMPLIED_JOB, where, self.lw.errors, self.lw.doc.locate)
        reported = len(self.lw.errors)
        if not self.collect() or len(self.lw.errors) > reported:
            return None  # a job that is not lowered leaves nothing sound to build the rest on
        order = self.order()
        if order is None:
            return None
        from .model_compose_calls import lower_component_job
        from .model_compose_routing import lower_routing_job

        for job in order:
            self.current = job
            if job.type == "component":
                lower_component_job(self, job)
            else:
                lower_routing_job(self, job)
        self.current = None
        output_id = self.output()
        if output_id is None:
            return None
        lowered: dict[str, Any] = {"output": output_id}
        for key in ("title", "description"):
            if key in workflow:
                lowered[key] = workflow[key]
        self.lw.origin[("workflows", self.workflow_id, "output")] = self.lw.origin.get(("nodes", output_id), path)
        if "name" in workflow:  # model-compose exposes a workflow to tools by its name; so does flowctl's OpenAI facade
            lowered["openai"] = {"model": workflow["name"]}
            self.lw.origin[("workflows", self.workflow_id, "openai")] = (*path, "name")
        return lowered

    def collect(self) -> bool:
        """Read the jobs (a workflow without `job:`/`jobs:` is its own job), check their keys
        and give each a node id. False when there is nothing to lower."""
        workflow, path = self.workflow, self.path
        if "job" in workflow or "jobs" in workflow:
            for key in sorted((keys.WORKFLOW_WITH_IMPLIED_JOB.supported - keys.WORKFLOW.supported) & set(workflow)):
                self.error(f"`{key}:` belongs in the job when the workflow has `job:` or `jobs:`", (*path, key), key=True)
            entries = [(job_id, job_path, job, True) for job_id, job_path, job in self.lw.entries(workflow, "job", "jobs", path)]
            if not entries:
                self.error(f"workflow '{self.workflow_id}' has no job", path, key=True)
                return False
        else:
            entries = [(None, path, workflow, False)]
        for given, job_path, data, own in entries:
            job_type = data.get("type", "component")
            section = keys.JOB_TYPES.get(job_type) if isinstance(job_type, str) else None
            if section is None:
                hint = keys.JOB_TYPE_HINTS.get(str(job_type), "flowctl lowers these job types: " + ", ".join(keys.JOB_TYPES))
                self.error(f"job type '{job_type}' is not supported by flowctl", (*job_path, "type"), hint=hint)
                continue
            if own:
                keys.check_keys(data, job_path, section, f"in job '{given}'" if given else "in job", self.lw.errors, self.lw.doc.locate)
            job_id = given or "__job__"
            if job_id in self.jobs:
                self.error(f"job id '{job_id}' is used twice in workflow '{self.workflow_id}'", (*job_path, "id") if "id" in data else job_path,
                           key=True, hint="give each job its own `id:`")
                continue
            node = self.lw.unique(keys.node_id(given or self.given_id or "job", "job"))
            self.lw.nodes[node] = {}  # reserved: the job's lowering fills it in
            self.jobs[job_id] = Job(job_id, job_path, data, job_type, node, own_mapping=own)
        return bool(self.jobs)

    def order(self) -> list[Job] | None:
        """The jobs, each after every job it waits on or reads; None after a reported cycle."""
        for job in self.jobs.values():
            job.waits = self.waits_of(job)
        for job in self.jobs.values():
            if job.type in ROUTING_TYPES:
                for target, target_path in _routing_targets(job):
                    if target not in self.jobs:
                        self.unknown_job(target, target_path)
                        continue
                    routed = self.jobs[target]
                    routed.routed_by = job.id
                    if job.id not in routed.waits:
                        routed.waits.append(job.id)  # decided by the router, so after it
        done: list[Job] = []
        state: dict[str, str] = {}

        def visit(job: Job, trail: list[str]) -> bool:
            if state.get(job.id) == "done":
                return True
            if state.get(job.id) == "active":
                cycle = trail[trail.index(job.id):] + [job.id]
                self.error("jobs wait on each other in a cycle: " + " → ".join(cycle), (*job.path, "depends_on") if "depends_on" in job.data else job.path,
                           key=True, hint="remove one of these `depends_on` or `${jobs...}` references")
                return False
            state[job.id] = "active"
            for up in job.waits:
                if up in self.jobs and not visit(self.jobs[up], [*trail, job.id]):
                    return False
            state[job.id] = "done"
            done.append(job)
            return True

        for job in self.jobs.values():
            if not visit(job, []):
                return None
        return done

    def waits_of(self, job: Job) -> list[str]:
        """`depends_on` (an inner list is an OR-group: flattened) plus `${jobs.<id>...}` reads."""
        waits: list[str] = []
        depends = job.data.get("depends_on") or []
        if not isinstance(depends, list):
            self.error("`depends_on` must be a list of job ids", (*job.path, "depends_on"))
            depends = []
        for index, item in enumerate(depends):
            group = item if isinstance(item, list) else [item]
            for inner, name in enumerate(group):
                where = (*job.path, "depends_on", index, inner) if isinstance(item, list) else (*job.path, "depends_on", index)
                if not isinstance(name, str) or name not in self.jobs:
                    self.unknown_job(str(name), where)
                elif name not in waits:
                    waits.append(name)
        try:
            refs = references_in(job.data, MC_SOURCES)
        except TemplateError:
            refs = []  # reported where the template is lowered
        for ref in refs:
            if ref.source == "jobs" and ref.path and isinstance(ref.path[0], str) and ref.path[0] in self.jobs and ref.path[0] not in waits:
                if ref.path[0] != job.id:
                    waits.append(ref.path[0])
        return waits

    def unknown_job(self, name: str, path: PathKey) -> None:
        match = difflib.get_close_matches(name, list(self.jobs), n=1, cutoff=0.5)
        hint = f"did you mean '{match[0]}'?" if match else "jobs: " + ", ".join(self.jobs)
        self.error(f"unknown job '{name}'", path, hint=hint)

    def needs_of(self, job: Job) -> list[str]:
        """The native nodes of the jobs `job` waits on."""
        return [self.jobs[up].paused_after or self.jobs[up].node for up in job.waits if up in self.jobs]

    # -- the output --------------------------------------------------------------------------

    def output(self) -> str | None:
        """The node whose output is the workflow's output."""
        workflow = self.workflow
        terminals = self.terminals()
        if "output" in workflow:
            written, path = workflow["output"], (*self.path, "output")
            extra = {("output",): self.jobs[terminals[0]].value} if len(terminals) == 1 else {}
            written = self.with_hint(written)
        elif len(terminals) == 1:
            job = self.jobs[terminals[0]]
            written = unparse(Reference("jobs", (job.id, "output"), job.hint.value_type if job.hint else None, NO_DEFAULT, "", job.hint))
            path = (*job.path, "output") if "output" in job.data else job.path
            extra = {}
        elif terminals and all(self.jobs[t].routed_by for t in terminals):
            return self.join_routed(terminals)
        else:
            ends = ", ".join(terminals) or "none"
            self.error(f"workflow '{self.workflow_id}' has several jobs that nothing depends on ({ends}); say which result it returns",
                       self.path, key=True, hint="add `output: ${jobs.<id>.output}` to the workflow")
            return None
        if any(job.value is None for job in self.jobs.values() if job.type not in ROUTING_TYPES):
            return None  # a job failed to lower: reported already
        bound = self.bind(written, path, extra)
        if bound is None or not self.check_native(bound, path):
            return None
        return self.output_node(bound, path, self.read_nodes(written, terminals))

    def read_nodes(self, written: Any, terminals: list[str]) -> list[str]:
        """The nodes of the jobs `written` (model-compose templates) reads the output of."""
        try:
            refs = references_in(written, MC_SOURCES)
        except TemplateError:
            return []
        jobs = [str(ref.path[0]) for ref in refs if ref.source == "jobs" and ref.path]
        if any(ref.source == "output" for ref in refs) and len(terminals) == 1:
            jobs.append(terminals[0])
        return list(dict.fromkeys(self.jobs[j].paused_after or self.jobs[j].node for j in jobs if j in self.jobs))

    def terminals(self) -> list[str]:
        """Jobs no other job depends on (model-compose returns their output); routing jobs
        give no output."""
        depended = {up for job in self.jobs.values() for up in job.waits if up != job.id}
        return [job.id for job in self.jobs.values() if job.id not in depended and job.type not in ROUTING_TYPES]

    def with_hint(self, written: Any) -> Any:
        """`${jobs.<id>.output}` (or `${output}`) alone names a job whose own output is a
        stream: the workflow streams it too."""
        ref = _whole_reference(written)
        if ref is None or ref.spec is not None or ref.has_default:
            return written
        if ref.source == "jobs" and len(ref.path) == 2 and ref.path[1] == "output" and ref.path[0] in self.jobs:
            job = self.jobs[str(ref.path[0])]
        elif ref.source == "output" and not ref.path and len(self.terminals()) == 1:
            job = self.jobs[self.terminals()[0]]
        else:
            return written
        if job.hint is None:
            return written
        return unparse(Reference(ref.source, ref.path, job.hint.value_type, ref.default, "", job.hint))

    def output_node(self, bound: Any, path: PathKey, needs: list[str] | None = None) -> str | None:
        """Make `bound` (a native tree) the output of one node and return its id."""
        ref = _whole_reference(bound)
        if ref is not None:
            stream = (ref.spec.stream_format if ref.spec else None) or (ref.type if ref.type in ("stream/text", "stream/json") else None)
            target = _node_output(ref)
            if stream is not None:
                if target is None or ref.path[2:] or ref.has_default:
                    self.error("a path, type or default on a streamed output is not supported by flowctl", path,
                               hint="extract per chunk in the action's `output: ${response[]...}`, and write `${output as text;sse-text}` here")
                    return None
                return self.sink(target, stream, path)
            if target is not None and len(ref.path) == 2 and ref.spec is None and not ref.has_default:
                node = self.lw.nodes.get(target) or {}
                if node.get("type") == "http-stream" and node.get("stream_format") is not None:
                    # a streamed answer with no type written streams on: its chunks as text, or
                    # as JSON when each chunk is a JSON event the action did not extract from
                    kind = "stream/json" if node["stream_format"] == "json" and "output" not in node else "stream/text"
                    return self.sink(target, kind, path)
                return target
        folded = self.fold(bound, path)
        if folded is not None:
            return folded
        return self.materialize(bound, path, f"{keys.node_id(self.given_id or 'workflow', 'workflow')}-output", needs)

    def sink(self, target: str, kind: str, path: PathKey) -> str:
        """An sse-sink streaming `target`'s output as `kind` (stream/text or stream/json)."""
        sink = self.lw.unique(f"{target}-output")
        self.lw.add_node(sink, {"type": "sse-sink", "source": f"${{nodes.{target}.output as {kind}}}"}, path, {"source": path})
        return sink

    def fold(self, bound: Any, path: PathKey) -> str | None:
        """When `bound` reads one request node that returns one whole body and nothing else
        reads, fold the shape into that node's own `output:` (no extra node)."""
        refs = references_in(bound)
        targets = {str(ref.path[0]) for ref in refs if ref.source == "nodes" and ref.path}
        if len(targets) != 1:
            return None
        (target,) = targets
        node = self.lw.nodes.get(target)
        if not node or node.get("type") != "http-stream" or node.get("stream_format") is not None or node.get("when"):
            return None
        if any(_reads_node(other, target) for name, other in self.lw.nodes.items() if name != target):
            return None
        current = node.get("output", "${response}")
        try:
            node["output"] = bind(bound, {("nodes", target, "output"): current})
        except (Unbindable, TemplateError):
            return None
        self.lw.origin[("nodes", target, "output")] = path
        return target

    def materialize(self, value: Any, path: PathKey, wanted: str, needs: list[str] | None = None) -> str:
        """A value node that builds `value` (the DAG engine's `value` node), after `needs`:
        the nodes of the jobs it stands for, even where it reads none of them (so it runs,
        or is skipped, with them)."""
        node_id = self.lw.unique(wanted)
        node: dict[str, Any] = {"type": "value", "value": value}
        if needs:
            node["needs"] = needs
        self.lw.add_node(node_id, node, path, {"value": path})
        return node_id

    def join_routed(self, terminals: list[str]) -> str | None:
        """The output of whichever routed job ran: each branch's value, first that is there."""
        if any(self.jobs[t].value is None for t in terminals):
            return None
        chain = None
        for job_id in reversed(terminals):
            job = self.jobs[job_id]
            node = job.node if _is_node_output(job.value, job.node) else self.materialize(job.value, job.path, f"{job.node}-result", [job.node])
            chain = Reference("nodes", (node, "output"), None, chain if chain is not None else NO_DEFAULT, "")
        assert chain is not None
        return self.output_node(unparse(chain), self.path)


#: mapping keys that are model-compose operators (map, join, conditional, split, zip, spread)
_OPERATOR_KEYS = ("*", "+", "?", "|", "&", "...")


def _operator_key(value: Any, at: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str] | None:
    """Where the first model-compose value operator (`"*": ...`) is in `value`, if any."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _OPERATOR_KEYS:
                return (*at, key), key
            found = _operator_key(item, (*at, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _operator_key(item, (*at, index))
            if found is not None:
                return found
    return None


def _whole_reference(value: Any) -> Reference | None:
    """The one reference `value` is, when it is a template that is exactly one `${...}`."""
    if not isinstance(value, str):
        return None
    try:
        parts = parse_parts(value, ANY_SOURCES)
    except TemplateError:
        return None
    if len(parts) == 1 and isinstance(parts[0], Expr):
        return parts[0].reference
    return None


def _node_output(ref: Reference) -> str | None:
    """The node `ref` reads the output of (`${nodes.<id>.output...}`), if that is what it reads."""
    if ref.source == "nodes" and len(ref.path) >= 2 and ref.path[1] == "output":
        return str(ref.path[0])
    return None


def _is_node_output(value: Any, node: str) -> bool:
    ref = _whole_reference(value)
    return ref is not None and _node_output(ref) == node and len(ref.path) == 2 and ref.spec is None and not ref.has_default


def _reads_node(node: dict[str, Any], target: str) -> bool:
    try:
        refs = references_in({k: v for k, v in node.items() if k != "type"})
    except TemplateError:
        return False
    return any(ref.source == "nodes" and ref.path and ref.path[0] == target for ref in refs) or target in (node.get("needs") or [])


def _routing_targets(job: Job) -> list[tuple[str, PathKey]]:
    """The jobs a routing job may send the run to, with where each is named."""
    data, path = job.data, job.path
    found: list[tuple[str, PathKey]] = []
    if job.type == "if":
        conditions = data.get("conditions")
        if isinstance(conditions, list):
            for index, condition in enumerate(conditions):
                if isinstance(condition, dict):
                    found += [(str(condition[k]), (*path, "conditions", index, k)) for k in ("if_true", "if_false") if condition.get(k)]
        found += [(str(data[k]), (*path, k)) for k in ("if_true", "if_false") if data.get(k)]
        if data.get("otherwise"):
            found.append((str(data["otherwise"]), (*path, "otherwise")))
    elif job.type == "switch":
        cases = data.get("cases")
        if isinstance(cases, list):
            found += [(str(case["then"]), (*path, "cases", index, "then")) for index, case in enumerate(cases) if isinstance(case, dict) and case.get("then")]
        if data.get("then"):
            found.append((str(data["then"]), (*path, "then")))
        if data.get("otherwise"):
            found.append((str(data["otherwise"]), (*path, "otherwise")))
    elif job.type == "random-router":
        routings = data.get("routings")
        if isinstance(routings, list):
            found += [(str(route["to"]), (*path, "routings", index, "to")) for index, route in enumerate(routings) if isinstance(route, dict) and route.get("to")]
    return found


def _foreign(ref: Reference, jobs: dict[str, Job]) -> tuple[str, ...]:
    """The message (and hint) for a reference flowctl cannot read where it is."""
    if ref.source == "jobs":
        name = str(ref.path[0]) if ref.path else ""
        if name in jobs:
            return (f"'{ref.dotted}': a job reads `${{jobs.<id>.output...}}` only",)
        match = difflib.get_close_matches(name, list(jobs), n=1, cutoff=0.5)
        return (f"unknown job '{name}'", f"did you mean '{match[0]}'?" if match else "jobs: " + ", ".join(jobs))
    if ref.source == "output":
        return (f"'{ref.dotted}': there is no single job output here", "name the job: ${jobs.<id>.output...}")
    if ref.source == "context":
        return (f"'{ref.dotted}': flowctl has `${{context.run_id}}` and `${{context.session_id}}` only (as `${{run.id}}`, `${{run.session}}`)",)
    if ref.source in ("result", "result[]"):
        return (f"'{ref.dotted}' is only defined in a shell action's `output:`",)
    if ref.source in ("response", "response[]"):
        return (f"'{ref.dotted}' is only defined in an http action's `output:`",)
    if ref.source in ("item", "index"):
        return (f"'{ref.dotted}' is only defined inside a for-each or filter job",)
    return (f"'{ref.dotted}' cannot be used here",)


__all__ = ["DEFAULT_WORKFLOW_ID", "MC_SOURCES", "Job", "WorkflowLowering", "lower_workflows"]
