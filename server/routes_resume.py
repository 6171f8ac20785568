"""Answering a paused run (a `pause` node; model-compose's job `interrupt:`).

    POST /runs/{run_id}/resume     {"answer": ..., "node": optional}   native; -> the run's status
    POST /tasks/{task_id}/resume   {"job_id": ..., "answer": ...}      model-compose's; -> the task

The answer (any JSON, optional) replaces what the pause passes on when it is not null: the
job's input before it, its result after it. A run that is not known is a 404; one that is
not paused (or not at that node or job) a 409 naming what it waits for, if anything.

model-compose's `POST /workflows/runs` with `wait_for_completion` answers as soon as the run
pauses (status `interrupted`, with the pause), the run going on in the background:
`answer_when_paused` does that for workflows that can pause.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, post

from ..engine.errors import BadRequest
from ..engine.host import PreparedRun
from .routes_api import FromPath, NamedDependency, ServerContext, read_json_object, run_status
from .streaming import JSONAnswer, run_in_background


def can_pause(run: PreparedRun) -> bool:
    """Whether the run's workflow has a pause node."""
    return any(run.flow.nodes[node].spec.type == "pause" for node in run.workflow.run_nodes)


async def answer_when_paused(ctx: ServerContext, run: PreparedRun) -> None:
    """Run it in the background and return once it pauses or ends (its output stored)."""
    done = run_in_background(ctx.host, run, ctx.outputs, ctx.background)
    paused = asyncio.ensure_future(run.record.pauses.paused.wait())
    try:
        # bounded by the run itself: each pause and each node has its own timeout
        await asyncio.wait({done, paused}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        paused.cancel()


def _name(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"`{key}` must be the id of the {'job' if key == 'job_id' else 'node'} the run is paused at", field=key, status=422)
    return value


@post("/runs/{run_id:str}/resume", status_code=200)
async def resume_run(ctx: NamedDependency[ServerContext], request: Request[Any, Any, Any], run_id: FromPath[str]) -> dict[str, Any]:
    body = await read_json_object(request)
    pause = ctx.host.resume(run_id, body.get("answer"), node=_name(body, "node"))
    return {**run_status(ctx, run_id), "resumed": pause.as_dict()}


@post("/tasks/{task_id:str}/resume")
async def resume_task(ctx: NamedDependency[ServerContext], request: Request[Any, Any, Any], task_id: FromPath[str]) -> JSONAnswer:
    from .routes_compat import task_result  # it builds on this module's helpers

    body = await read_json_object(request)
    job = _name(body, "job_id", required=True)
    ctx.host.resume(task_id, body.get("answer"), job=job)
    return JSONAnswer(200, task_result(ctx.host.runs[task_id]))


__all__ = ["answer_when_paused", "can_pause", "resume_run", "resume_task"]
