"""model-compose workflows and their job: the per-run half of the lowering.

A workflow's job calls one action of one component. That call becomes an `http-stream`
node; a streamed result (`${output as text;sse-text}`, or any action with `stream_format`)
gets an `sse-sink` after it, and that sink — or the http-stream node itself for a plain
value — is the workflow's output.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from ..loader import PathKey
from . import model_compose_keys as keys
from .model_compose_output import OutputExpr, OutputSyntaxError, parse_output

if TYPE_CHECKING:
    from .model_compose import _Lowering

#: the id model-compose clients send for "the default workflow" (`POST /workflows/runs`);
#: model-compose resolves it to the only workflow, or to the one marked `default: true`
DEFAULT_WORKFLOW_ID = "__default__"

_JOB_ONLY_KEYS = keys.WORKFLOW_WITH_IMPLIED_JOB.supported - keys.WORKFLOW.supported


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
        lowered = _workflow(lw, workflow_id, given_id, path, workflow)
        if lowered is None:
            continue
        # model-compose runs the only workflow (or the `default: true` one) for `__default__`
        lowered["default"] = True if single else workflow.get("default", False)
        result[workflow_id] = lowered
        lw.origin[("workflows", workflow_id)] = path
    return result


def _workflow(lw: _Lowering, workflow_id: str, given_id: str | None, path: PathKey, workflow: dict[str, Any]) -> dict[str, Any] | None:
    where = f"in workflow '{given_id}'" if given_id else "in workflow"
    keys.check_keys(workflow, path, keys.WORKFLOW_WITH_IMPLIED_JOB, where, lw.errors, lw.doc.locate)
    workflow_output: tuple[Any, PathKey] | None = None
    if "job" in workflow or "jobs" in workflow:
        for key in sorted(_JOB_ONLY_KEYS & set(workflow)):
            lw.error(f"`{key}:` belongs in the job when the workflow has `job:` or `jobs:`", (*path, key), key=True)
        jobs = lw.entries(workflow, "job", "jobs", path)
        if not jobs:
            lw.error(f"workflow '{workflow_id}' has no job", path, key=True)
            return None
        for _, extra_path, _ in jobs[1:]:
            lw.error("a workflow with several jobs is not supported by flowctl yet", extra_path, key=True,
                     hint="one job per workflow for now; write several workflows, or use the native form")
        job_id, job_path, job = jobs[0]
        keys.check_keys(job, job_path, keys.JOB, f"in job '{job_id}'" if job_id else "in job", lw.errors, lw.doc.locate)
        if "output" in workflow:
            workflow_output = (workflow["output"], (*path, "output"))
    else:
        job_id, job_path, job = None, path, workflow  # the workflow is its own job
    http_id = _job(lw, job_id, given_id, job_path, job, job is not workflow)
    if http_id is None:
        return None
    output_id = _output(lw, http_id, job_id, job_path, job, workflow_output)
    if output_id is None:
        return None
    lowered: dict[str, Any] = {"output": output_id}
    for key in ("title", "description"):
        if key in workflow:
            lowered[key] = workflow[key]
    lw.origin[("workflows", workflow_id, "output")] = lw.origin[("nodes", output_id)]
    if "name" in workflow:  # model-compose exposes a workflow to tools by its name; so does flowctl's OpenAI facade
        lowered["openai"] = {"model": workflow["name"]}
        lw.origin[("workflows", workflow_id, "openai")] = (*path, "name")
    return lowered


def _job(lw: _Lowering, job_id: str | None, workflow_id: str | None, job_path: PathKey, job: dict[str, Any], own_mapping: bool) -> str | None:
    if job.get("type", "component") not in keys.JOB_TYPES:
        lw.error(f"job type '{job['type']}' is not supported by flowctl yet", (*job_path, "type"), hint="flowctl supports jobs that call a component")
        return None
    if job.get("depends_on"):
        lw.errors.append(keys.unsupported("depends_on", (*job_path, "depends_on"), lw.doc.locate, "one job per workflow for now"))
    if "input" in job and not (isinstance(job["input"], str) and job["input"].replace(" ", "") == "${input}"):
        lw.errors.append(keys.unsupported("input", (*job_path, "input"), lw.doc.locate,
                                          "only `input: ${input}` is supported: refer to the workflow's inputs as ${input.<name>} in the action"))
    found = _component(lw, job_path, job)
    if found is None:
        return None
    component = found
    action = _action(lw, component, job_path, job)
    if action is None:
        return None
    action_path, spec = action
    url, url_origin = _url(lw, component, action_path, spec)
    if url is None:
        return None
    http_id = lw.unique(keys.node_id(job_id or workflow_id or "job", "job"))
    node: dict[str, Any] = {"type": "http-stream", "needs": component["needs"], "method": spec.get("method", "POST"), "url": url,
                            "stream_format": spec.get("stream_format")}
    fields: dict[Any, PathKey] = {"url": url_origin, "needs": (*job_path, "component") if "component" in job else job_path}
    if own_mapping and "name" in job:  # (a workflow's own `name:` is the workflow's)
        node["description"] = job["name"]
        fields["description"] = (*job_path, "name")
    headers = _headers(lw, component, action_path, spec, fields)
    if headers:
        node["headers"] = headers
    for key in ("params", "body", "output"):
        if key in spec:
            node[key] = spec[key]
    if node["stream_format"] is None and _reads_chunks(spec.get("output")):
        lw.error("an `output:` that reads `response[]` (one stream chunk) needs `stream_format: json` or `text`", (*action_path, "output"))
    lw.add_node(http_id, node, action_path, fields)
    return http_id


def _component(lw: _Lowering, job_path: PathKey, job: dict[str, Any]) -> dict[str, Any] | None:
    ref = job.get("component", "__default__")
    where = (*job_path, "component") if "component" in job else job_path
    if isinstance(ref, dict):
        lw.errors.append(keys.unsupported("component", where, lw.doc.locate, "declare the component under `components:` and name it here by id"))
        return None
    if not lw.components:
        if not lw.errors:  # else a component was already reported
            lw.error("this job calls a component, but the flow has none", where, key="component" not in job, hint="add `component:`")
        return None
    if ref == "__default__":
        candidates = list(lw.components.values())
        if len(candidates) > 1:
            candidates = [c for c in candidates if c["data"].get("default") is True]
        if len(candidates) == 1:
            return candidates[0]
        lw.error("this job names no component and the flow has several", where, key="component" not in job,
                 hint="name one with `component: <id>`, or mark one `default: true`")
        return None
    component = lw.components.get(str(ref))
    if component is None:
        match = difflib.get_close_matches(str(ref), list(lw.components), n=1, cutoff=0.5)
        hint = f"did you mean '{match[0]}'?" if match else "components: " + ", ".join(lw.components)
        lw.error(f"unknown component '{ref}'", where, hint=hint)
    return component


def _action(lw: _Lowering, component: dict[str, Any], job_path: PathKey, job: dict[str, Any]) -> tuple[PathKey, dict[str, Any]] | None:
    actions: dict[str, tuple[PathKey, dict[str, Any]]] = component["actions"]
    ref = job.get("action", "__default__")
    where = (*job_path, "action") if "action" in job else job_path
    if not actions:
        lw.error(f"{component['label']} has no `action:` to call", component["path"], key=True,
                 hint="add `action:` with method, path, body, stream_format and output")
        return None
    if ref == "__default__":
        candidates = list(actions.values())
        if len(candidates) > 1:
            candidates = [a for a in candidates if a[1].get("default") is True]
        if len(candidates) == 1:
            return candidates[0]
        lw.error(f"this job names no action and {component['label']} has several", where, key="action" not in job,
                 hint="name one with `action: <id>`, or mark one `default: true`")
        return None
    if str(ref) not in actions:
        match = difflib.get_close_matches(str(ref), list(actions), n=1, cutoff=0.5)
        hint = f"did you mean '{match[0]}'?" if match else "actions: " + ", ".join(actions)
        lw.error(f"unknown action '{ref}' of {component['label']}", where, hint=hint)
        return None
    return actions[str(ref)]


def _url(lw: _Lowering, component: dict[str, Any], action_path: PathKey, spec: dict[str, Any]) -> tuple[str | None, PathKey]:
    path, endpoint = spec.get("path"), spec.get("endpoint")
    for key, value in (("path", path), ("endpoint", endpoint)):
        if value is not None and not isinstance(value, str):
            lw.error(f"`{key}` must be a string", (*action_path, key))
            return None, action_path
    if component["type"] == "http-server":
        return component["base_url"] + (path or ""), (*action_path, "path") if path is not None else action_path
    if endpoint and path:
        lw.error("write either `endpoint:` (a full URL) or `path:` (after the component's base_url), not both", (*action_path, "path"), key=True)
        return None, action_path
    if endpoint:
        return endpoint, (*action_path, "endpoint")
    if path:
        base_url = component.get("base_url")
        if not base_url:
            lw.error("`path:` needs `base_url:` on the component", (*action_path, "path"), key=True, hint="or give the full URL as `endpoint:`")
            return None, action_path
        return str(base_url).rstrip("/") + "/" + path.lstrip("/"), (*action_path, "path")
    lw.error("this action needs `endpoint:` (a full URL) or `path:`", action_path, key=True)
    return None, action_path


def _headers(lw: _Lowering, component: dict[str, Any], action_path: PathKey, spec: dict[str, Any], fields: dict[Any, PathKey]) -> dict[str, Any]:
    """The component's `headers:` (sent with every request) under the action's own."""
    merged: dict[str, Any] = {}
    for source, path in ((component["data"].get("headers"), (*component["path"], "headers")), (spec.get("headers"), (*action_path, "headers"))):
        if source is None:
            continue
        if not isinstance(source, dict):
            lw.error("`headers` must be a mapping of Name: value", path)
            continue
        merged.update(source)
        fields.update({("headers", name): (*path, name) for name in source})
    return merged


def _reads_chunks(value: Any) -> bool:
    if isinstance(value, str):
        return "response[]" in value.replace(" ", "")
    if isinstance(value, dict):
        return any(_reads_chunks(v) for v in value.values())
    if isinstance(value, list):
        return any(_reads_chunks(v) for v in value)
    return False


def _output(lw: _Lowering, http_id: str, job_id: str | None, job_path: PathKey, job: dict[str, Any],
            workflow_output: tuple[Any, PathKey] | None) -> str | None:
    """The workflow's output node: an sse-sink over the http-stream node for a stream, else the
    http-stream node itself (with a `${output.path}` folded into its `output:`)."""
    node = lw.nodes[http_id]
    candidates: list[tuple[OutputExpr, PathKey]] = []
    for value, path in ([(job["output"], (*job_path, "output"))] if "output" in job else []) + ([workflow_output] if workflow_output else []):
        try:
            parsed = parse_output(value)
        except OutputSyntaxError as exc:
            lw.error(str(exc), path)
            return None
        if parsed.job is not None and parsed.job != job_id:
            lw.error(f"unknown job '{parsed.job}'", path, hint=f"this workflow's job is '{job_id}'" if job_id else "give the job an `id:`")
            return None
        candidates.append((parsed, path))
    chosen = [c for c in candidates if not c[0].is_identity] or candidates[:1]
    if len(chosen) > 1:
        lw.error("the job's and the workflow's `output:` both transform the result; flowctl supports one", chosen[1][1])
        return None
    expr: OutputExpr | None = chosen[0][0] if chosen else None
    expr_path = chosen[0][1] if chosen else job_path
    streaming = node["stream_format"] is not None
    action_output = "output" in node
    if expr is not None and expr.stream is None and not streaming:
        if expr.path or (expr.type and expr.type not in ("text", "string")):
            if action_output:
                lw.error("a workflow output that reshapes an action's `output:` is not supported by flowctl yet", expr_path,
                         hint="move the path into the action's `output: ${response...}`")
                return None
            typed = f" as {expr.type}" if expr.type else ""
            node["output"] = f"${{response{expr.path}{typed}}}"
            lw.origin[("nodes", http_id, "output")] = expr_path
        return http_id
    if expr is not None and (expr.path or (expr.type and expr.type not in ("text", "string", "json", "object"))):
        lw.error("a path or type on a streamed output is not supported by flowctl yet", expr_path,
                 hint="extract per chunk in the action's `output: ${response[]...}`, and write `${output as text;sse-text}` here")
        return None
    if expr is not None and expr.stream is not None:
        kind = expr.stream
    else:
        kind = "json" if not action_output and node["stream_format"] == "json" else "text"
    sink_id = lw.unique(f"{http_id}-output")
    lw.add_node(sink_id, {"type": "sse-sink", "source": f"${{nodes.{http_id}.output as stream/{kind}}}"}, expr_path, {"source": expr_path})
    return sink_id
