"""The native API (SPEC §5), mounted under the flow's `base_path` (default `/api`).

    GET  /health                     liveness
    GET  /ready                      200 when every service node is up, else 503 with why
    GET  /workflows                  the workflows
    GET  /workflows/{id}             one: input JSON Schema, output type
    GET  /workflows/{id}/graph       mermaid text (`?format=json` for node-link JSON)
    POST /workflows/{id}/runs        `{"input": {...}}` -> SSE for a streamed output
                                     (`Accept: application/json` collects it), else JSON;
                                     `?events=nodes` adds node events (docs/dag.md)
    GET  /services/{node}/logs       a service's log (`?tail=N&follow=1` for SSE; routes_logs.py)
    GET  /runs/{run_id}              a run's status (a paused one: `pause` with its message)
    POST /runs/{run_id}/cancel       cancel it (closes the upstream request)
    POST /runs/{run_id}/resume       answer a paused run (`{"answer": ...}`; routes_resume.py)

Handlers ask the engine (`FlowHost`) for everything; they keep no state of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.types import ASGIApp

try:  # Litestar >= 2.25 wants parameter kinds said explicitly (inferring them is deprecated)
    from litestar.di import NamedDependency
    from litestar.params import FromPath, FromQuery
except ImportError:  # older ones infer them from the signature

    class _Inferred:
        def __class_getitem__(cls, item: Any) -> Any:
            return item

    NamedDependency = FromPath = FromQuery = _Inferred  # type: ignore[assignment,misc,unused-ignore]

from ..engine.errors import BadRequest, RunNotFound, WorkflowNotFound
from ..engine.export import to_json, to_mermaid
from ..engine.graph import CompiledWorkflow
from ..engine.host import FlowHost
from .request_json import load_json_body
from .streaming import OutputStore, RunResponse


@dataclass
class ServerContext:
    """What the routes are given: the engine's host plus the server's own settings."""

    host: FlowHost
    #: seconds of silence after which an SSE stream gets a `: keep-alive` comment
    keepalive: float = 15.0
    #: outputs of runs nobody was listening to (model-compose's wait_for_completion: false)
    outputs: OutputStore = field(default_factory=OutputStore)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    #: the address `up` binds (a name there is an allowed `Host`, see `host_check`)
    bind_host: str | None = None


# -- helpers shared with the other routers ---------------------------------------------------


async def read_json_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is `{}`); see `request_json`."""
    body = load_json_body(request.headers.get("content-type"), await request.body())
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", field="body", status=422)
    return body


def input_of(body: dict[str, Any]) -> dict[str, Any]:
    value = body.get("input")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("`input` must be a JSON object of input names to values", field="input", status=422)
    return value


def session_of(body: dict[str, Any]) -> str | None:
    """The run's `session_id` (model-compose's name): what `${run.session}` reads, a sticky
    router's key. A string of at most 256 characters, or absent."""
    value = body.get("session_id")
    if value is not None and (not isinstance(value, str) or len(value) > 256):
        raise BadRequest("`session_id` must be a string of at most 256 characters", field="session_id", status=422)
    return value or None


def wants_sse(request: Request[Any, Any, Any]) -> bool:
    """SSE unless the client asks for JSON and not for an event stream."""
    accept = request.headers.get("accept", "")
    return "text/event-stream" in accept or "application/json" not in accept


def wants_node_events(request: Request[Any, Any, Any]) -> bool:
    """`?events=nodes`: the run's answer carries node events (SSE `event: node`, or an
    `events` list in a JSON answer). Anything else in `events` is a 422 naming it."""
    value = request.query_params.get("events")
    if value is None or value == "":
        return False
    if value != "nodes":
        raise BadRequest(f"`events` takes `nodes`, not {value!r}", field="events", status=422)
    return True


def workflow_summary(workflow: CompiledWorkflow) -> dict[str, Any]:
    return {
        "id": workflow.id,
        "title": workflow.title,
        "description": workflow.description,
        "default": workflow.default,
        "output_type": workflow.output_type,
        "streams": workflow.streams,
    }


def workflow_detail(host: FlowHost, workflow: CompiledWorkflow) -> dict[str, Any]:
    return {
        **workflow_summary(workflow),
        "default": workflow is host.flow.default_workflow,
        "input": workflow.input_schema,
        "output": {"type": workflow.output_type, "streams": workflow.streams, "node": workflow.output_node},
        "services": list(workflow.services),
    }


def find_workflow(host: FlowHost, workflow_id: FromPath[str]) -> CompiledWorkflow:
    workflow = host.flow.workflow(workflow_id)
    if workflow is None:
        raise WorkflowNotFound(workflow_id, list(host.flow.workflows))
    return workflow


def run_status(ctx: ServerContext, run_id: str) -> dict[str, Any]:
    record = ctx.host.runs.get(run_id)
    if record is None:
        raise RunNotFound(run_id)
    result = record.as_dict()
    if run_id in ctx.outputs:
        result["output"] = ctx.outputs.get(run_id)
    return result


# -- routes ----------------------------------------------------------------------------------


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", sync_to_thread=False)
def ready(ctx: NamedDependency[ServerContext]) -> Response[dict[str, Any]]:
    state = ctx.host.readiness()
    return Response(state, status_code=200 if state["ready"] else 503)


@get("/workflows", sync_to_thread=False)
def list_workflows(ctx: NamedDependency[ServerContext]) -> list[dict[str, Any]]:
    default = ctx.host.flow.default_workflow if ctx.host.flow.workflows else None
    return [{**workflow_summary(w), "default": w is default} for w in ctx.host.flow.workflows.values()]


@get("/workflows/{workflow_id:str}", sync_to_thread=False)
def get_workflow(ctx: NamedDependency[ServerContext], workflow_id: FromPath[str]) -> dict[str, Any]:
    return workflow_detail(ctx.host, find_workflow(ctx.host, workflow_id))


@get("/workflows/{workflow_id:str}/graph", sync_to_thread=False)
def get_graph(ctx: NamedDependency[ServerContext], workflow_id: FromPath[str], format: FromQuery[str] = "mermaid") -> Response[str]:
    workflow = find_workflow(ctx.host, workflow_id)
    if format == "json":
        return Response(to_json(ctx.host.flow, workflow), media_type="application/json")
    if format != "mermaid":
        raise BadRequest(f"unknown graph format '{format}'", field="format", status=422)
    return Response(to_mermaid(ctx.host.flow, workflow), media_type="text/plain")  # Litestar adds the charset


@post("/workflows/{workflow_id:str}/runs")
async def start_run(ctx: NamedDependency[ServerContext], request: Request[Any, Any, Any], workflow_id: FromPath[str]) -> ASGIApp:
    body = await read_json_object(request)
    events = wants_node_events(request)
    run = ctx.host.prepare(workflow_id, input_of(body), session=session_of(body))
    run.events = events
    sse = run.workflow.streams and wants_sse(request)
    return RunResponse(ctx.host, run, sse=sse, keepalive=ctx.keepalive)


@get("/runs/{run_id:str}", sync_to_thread=False)
def get_run(ctx: NamedDependency[ServerContext], run_id: FromPath[str]) -> dict[str, Any]:
    return run_status(ctx, run_id)


@post("/runs/{run_id:str}/cancel", status_code=200)
async def cancel_run(ctx: NamedDependency[ServerContext], run_id: FromPath[str]) -> dict[str, Any]:
    record = ctx.host.runs.get(run_id)
    if record is None:
        raise RunNotFound(run_id)
    was_running = not record.status.finished
    ctx.host.cancel(run_id)
    # the run's task turns the cancellation into its final status within a few loop turns
    if was_running:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(record.finished.wait(), timeout=2.0)
    return {**run_status(ctx, run_id), "cancelled": was_running and record.status.value == "cancelled"}


API_HANDLERS = [health, ready, list_workflows, get_workflow, get_graph, start_run, get_run, cancel_run]


def api_router(ctx: ServerContext, base_path: str) -> Router:
    from .routes_logs import LOG_HANDLERS  # it builds on this module's helpers
    from .routes_resume import resume_run

    return Router(
        path=base_path or "/",
        route_handlers=[*API_HANDLERS, *LOG_HANDLERS, resume_run],
        dependencies={"ctx": Provide(lambda: ctx, use_cache=True, sync_to_thread=False)},
        tags=["flowctl"],
    )


__all__ = [
    "API_HANDLERS",
    "FromPath",
    "FromQuery",
    "NamedDependency",
    "ServerContext",
    "api_router",
    "find_workflow",
    "input_of",
    "read_json_object",
    "run_status",
    "wants_node_events",
    "wants_sse",
    "workflow_detail",
    "workflow_summary",
]
