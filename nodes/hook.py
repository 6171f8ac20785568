"""hook: run a node between inline Python hooks that may replace its input and its output.

    ask:
      type: hook
      job: summarize                     # the name the hooks get as `job_id` (default: the node id)
      input: {text: "${input.text}"}     # what the before hooks get; the body reads the result as ${hook.input}
      before:
        - script: |
            def hook(input, *, task_id, job_id, run_id, phase):
                input["text"] = input["text"].strip()
                return input
      node:                              # the body: value, command or http-stream
        type: http-stream
        url: http://127.0.0.1:8000/summarize
        body: {text: "${hook.input.text}"}
        stream_format: null
      output: ${hook.output}             # the body's output as the after hooks get it (default)
      after:
        - script: |
            def hook(input, output, *, task_id, job_id, run_id, phase):
                return {"summary": output}
          timeout: 10                    # seconds (default 30)

Each hook is called in order, each in a child Python process of its own
(`python_hook.call_hook`); a before hook's return value is the next one's input (and, after
the last, the body's `${hook.input}`), an after hook's the next one's output (and, after the
last, this node's output). A hook that returns None replaces the value with null, as
model-compose does. `run_id` is new for each time the node runs (each iteration, inside a
loop); `task_id` is the run's id. What a hook prints goes to flowctl's log (`flowctl logs
flowctl`), one line at a time, named after the job; never into the output.

A hook that raises, runs past its `timeout` or returns something JSON cannot carry fails the
node, naming the phase, the job, where the script is written (`at:`) and the exception's
last line.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engine.errors import RunError
from .base import Chunks, RunContext, RunNodeSpec
from .python_hook import HookCall, HookFailed, call_hook

if TYPE_CHECKING:  # the union of every node type is built by the registry, after this module
    from .registry import NodeSpec

#: the template source the body and `output:` read (`${hook.input}`, `${hook.output}`)
HOOK_SOURCE = frozenset({"hook"})

log = logging.getLogger("flowctl.hooks")


class HookScript(BaseModel):
    """One hook: Python defining `hook(...)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    script: str = Field(min_length=1)
    #: where the script is written (`flow.yml:18:9`), named in errors; front ends fill it in
    at: str | None = None
    #: the flow file, and the line of it the script's first line is on: a traceback's line
    #: numbers are then the file's
    file: str | None = None
    line: int = Field(default=1, ge=1)
    #: seconds one call may run; then its process group is stopped and the node fails
    timeout: float = Field(default=30.0, gt=0, le=3600)


class HookSpec(RunNodeSpec):
    template_fields: ClassVar[tuple[str, ...]] = (*RunNodeSpec.template_fields, "input", "output")
    inner_field: ClassVar[str | None] = "node"
    inner_sources: ClassVar[frozenset[str]] = HOOK_SOURCE
    field_sources: ClassVar[dict[str, frozenset[str]]] = {"output": HOOK_SOURCE}

    type: Literal["hook"]
    #: the name the hooks get as `job_id` (default: the node's id)
    job: str | None = None
    #: what the first before hook gets as `input` (rendered once); the after hooks get it too
    input: Any = None
    before: list[HookScript] = []
    #: the body, run once with `${hook.input}` (the before hooks' result)
    node: NodeSpec
    #: the body's output as the after hooks get it (reads `${hook.output}`, `${hook.input}`)
    output: Any = "${hook.output}"
    after: list[HookScript] = []


class HookNode:
    def __init__(self, spec: HookSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> Chunks:
        spec = self.spec
        run_item = ctx.run_item
        assert run_item is not None, "the scheduler gives a node with a body its runner"
        job = spec.job or ctx.node_id
        run_id = uuid.uuid4().hex
        value = ctx.resolve("input")
        for hook in spec.before:
            value = await _call(ctx, hook, job, "before", (value,), run_id)
        output = await run_item({"hook": {"input": value}})
        output = ctx.resolve("output", {"hook": {"input": value, "output": output}})
        for hook in spec.after:
            output = await _call(ctx, hook, job, "after", (value, output), run_id)
        yield output


async def _call(ctx: RunContext, hook: HookScript, job: str, phase: str, args: tuple[Any, ...], run_id: str) -> Any:
    file = hook.file or "<hook>"
    call = HookCall(hook.script, file, hook.line, args, {"task_id": ctx.run_id, "job_id": job, "run_id": run_id, "phase": phase}, hook.timeout)

    def on_line(line: str) -> None:
        log.info("[%s] %s hook of job '%s' (run %s): %s", ctx.node_id, phase, job, ctx.run_id, line)

    try:
        return await call_hook(call, on_line)
    except HookFailed as exc:
        where = f" ({hook.at})" if hook.at else ""
        raise RunError(ctx.node_id, f"the {phase} hook of job '{job}'{where} failed: {exc.describe(file)}",
                       hint=exc.hint or "its traceback is in flowctl's log (`flowctl logs flowctl`)") from None
