"""model-compose's HTTP API, so its clients keep working against flowctl (under base_path).

    POST /workflows/runs   {"workflow_id", "input", "session_id", "output_only", "wait_for_completion"}
    GET  /tasks/{task_id}  {"task_id", "status", "output", "error", "interrupt"}  (`?output_only=true`)
    POST /tasks/{task_id}/resume  {"job_id", "answer"}  (routes_resume.py)

- `workflow_id` missing, null, or model-compose's `__default__` (when no workflow has that
  id): the default workflow.
- `wait_for_completion: false`: 202 `{"run_id", "task_id", "status"}` at once; the run goes
  on in the background, pollable with `GET /runs/{id}` or `GET /tasks/{id}`.
- `output_only: true` and a streamed output: `text/event-stream`, one `data: CHUNK` event per
  chunk as model-compose sends it, plus flowctl's `id:` lines and end event (clients that
  read only `data:` lines see exactly model-compose's stream).
- `output_only: true` otherwise: the output itself as JSON.
- `output_only: false`: `{"run_id", "task_id", "status", "output"}` once it ends, a streamed
  output collected into its text.

`status` uses model-compose's words here (`pending`, `processing`, `interrupted`, `completed`,
`failed`); the native routes use flowctl's (`queued`, `running`, `paused`, `succeeded`,
`failed`, `cancelled`). A workflow that can pause answers `wait_for_completion` as soon as
the run pauses (`interrupted`, with `interrupt: {job_id, phase, message, metadata}`), as
model-compose does; the run goes on in the background until it is resumed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.types import ASGIApp

from ..engine.errors import BadRequest, RunNotFound
from ..engine.runs import RunRecord, RunStatus
from .errors import describe
from .routes_api import FromPath, FromQuery, NamedDependency, ServerContext, input_of, read_json_object, session_of, wants_sse
from .routes_resume import answer_when_paused, can_pause, resume_task
from .streaming import JSONAnswer, RunResponse, run_in_background

#: what model-compose clients send for "the default workflow"
DEFAULT_WORKFLOW_ALIAS = "__default__"

_STATUS = {
    RunStatus.QUEUED: "pending",
    RunStatus.RUNNING: "processing",
    RunStatus.PAUSED: "interrupted",
    RunStatus.SUCCEEDED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "failed",
}


def task_result(record: RunRecord, output: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {"run_id": record.id, "task_id": record.id, "status": _STATUS[record.status], "output": output}
    if record.status is RunStatus.CANCELLED:
        result["error"] = record.error or "cancelled"
    elif record.error:
        result["error"] = record.error
    pause = record.pauses.current()
    if pause is not None:  # model-compose's InterruptResult
        result["interrupt"] = {"job_id": pause.job or pause.node, "phase": pause.phase, "message": pause.message, "metadata": pause.metadata}
    return result


def _render_result(record: RunRecord, output: Any, error: BaseException | None) -> tuple[int, Any]:
    body = task_result(record, output)
    if error is not None:
        status, err, _ = describe(error)
        body["status"], body["error"] = "failed", err["error"]
        return status, body
    return 200, body


def _render_output(record: RunRecord, output: Any, error: BaseException | None) -> tuple[int, Any]:
    if error is not None:
        status, err, _ = describe(error)
        return status, {**err, "run_id": record.id}
    if record.status is not RunStatus.SUCCEEDED:
        return 500, {"error": record.error or f"the run {record.status.value}", "run_id": record.id}
    return 200, output


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"`{name}` must be true or false", field=name, status=422)
    return value


@post("/workflows/runs")
async def run_workflow(ctx: NamedDependency[ServerContext], request: Request[Any, Any, Any]) -> ASGIApp:
    body = await read_json_object(request)
    workflow_id = body.get("workflow_id")
    if workflow_id is not None and not isinstance(workflow_id, str):
        raise BadRequest("`workflow_id` must be a string", field="workflow_id", status=422)
    if workflow_id == DEFAULT_WORKFLOW_ALIAS and workflow_id not in ctx.host.flow.workflows:
        workflow_id = None
    output_only = _flag(body, "output_only", False)
    wait = _flag(body, "wait_for_completion", True)
    if output_only and not wait:
        raise BadRequest("output_only requires wait_for_completion=true", field="output_only")
    run = ctx.host.prepare(workflow_id, input_of(body), session=session_of(body))
    if wait and can_pause(run):  # model-compose answers once the run pauses, and it goes on
        await answer_when_paused(ctx, run)
        output = ctx.outputs.get(run.record.id)
        if output_only and run.record.status.finished:
            return JSONAnswer(*_render_output(run.record, output, None))
        return JSONAnswer(202 if output_only else 200, task_result(run.record, output))
    if not wait:
        run_in_background(ctx.host, run, ctx.outputs, ctx.background)
        return JSONAnswer(202, task_result(run.record))
    if output_only:
        sse = run.workflow.streams and wants_sse(request)
        return RunResponse(ctx.host, run, sse=sse, keepalive=ctx.keepalive, render=_render_output)
    return RunResponse(ctx.host, run, sse=False, render=_render_result)


@get("/tasks/{task_id:str}", sync_to_thread=False)
def get_task(ctx: NamedDependency[ServerContext], task_id: FromPath[str], output_only: FromQuery[bool] = False) -> Response[Any]:
    record = ctx.host.runs.get(task_id)
    if record is None:
        raise RunNotFound(task_id)
    output = ctx.outputs.get(task_id)
    if output_only:
        if record.status is RunStatus.PAUSED:
            return Response(task_result(record), status_code=202)
        if not record.status.finished:
            return Response({"detail": "Task is still in progress."}, status_code=202)
        return _output_response(record, output)
    return Response(task_result(record, output))


def _output_response(record: RunRecord, output: Any) -> Response[Any]:
    status, body = _render_output(record, output, None)
    # encoded here: Litestar would send a bare string as text, not as a JSON string
    return Response(json.dumps(body, ensure_ascii=False, default=str).encode(), status_code=status, media_type="application/json")


def start_triggered_run(ctx: ServerContext, workflow_id: str | None, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Start a run for an http-trigger (a webhook), in the background like a run with
    `wait_for_completion: false`: its `{"task_id", "run_id", "status"}`, as model-compose's
    trigger answers. Raises the admission's error (unknown workflow, bad input, busy)."""
    if workflow_id == DEFAULT_WORKFLOW_ALIAS and workflow_id not in ctx.host.flow.workflows:
        workflow_id = None
    run = ctx.host.prepare(workflow_id, inputs)
    run_in_background(ctx.host, run, ctx.outputs, ctx.background)
    answer = task_result(run.record)
    del answer["output"]
    return answer


COMPAT_HANDLERS = [run_workflow, get_task, resume_task]


def compat_router(ctx: ServerContext, base_path: str) -> Router:
    return Router(
        path=base_path or "/",
        route_handlers=COMPAT_HANDLERS,
        dependencies={"ctx": Provide(lambda: ctx, use_cache=True, sync_to_thread=False)},
        tags=["model-compose"],
    )


__all__ = ["COMPAT_HANDLERS", "compat_router", "start_triggered_run", "task_result"]
