"""pause: wait for a person's answer before the run goes on (model-compose's `interrupt:`).

    review:
      type: pause
      message: "About to delete ${input.path}"     # what the reviewer reads (a template)
      metadata: {path: "${input.path}"}           # structured detail for them (templates)
      value: ${nodes.plan.output}                 # what passes on when the answer is null
      timeout: 600                                # seconds; default 3600, at most a week

The run shows as `paused` (`GET /runs/{id}`: `pause` with the rendered message and
metadata; a `paused` node event with them on `?events=nodes`) until someone answers with `POST /runs/{id}/resume` `{"answer": ...}`. The node's
output is the answer, or `value` when the answer is null or absent, so a reviewer either
approves what is there or replaces it. No answer within `timeout` fails the run, naming the
pause; cancelling the run while it waits ends the wait at once. `flowctl run` (nobody to
answer) fails the node at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..engine.errors import RunError
from ..engine.node_events import PAUSED
from ..engine.pauses import DEFAULT_PAUSE_TIMEOUT, MAX_PAUSE_TIMEOUT, Pause
from .base import Chunks, RunContext, RunNodeSpec, duration


class PauseSpec(RunNodeSpec):
    template_fields: ClassVar[tuple[str, ...]] = (*RunNodeSpec.template_fields, "message", "metadata", "value")
    #: one person answers one pause: not once per item of a map
    mappable: ClassVar[bool] = False

    type: Literal["pause"]
    #: what the person answering reads (a template)
    message: Any = None
    #: structured detail for them: any YAML value, its strings templates
    metadata: Any = None
    #: the output when the answer is null
    value: Any = None
    #: seconds to wait for the answer
    timeout: float = Field(DEFAULT_PAUSE_TIMEOUT, gt=0, le=MAX_PAUSE_TIMEOUT)
    #: model-compose's words for it (set by the front end): the job it stands for, `before`
    #: or `after` it; reported with the pause, and what `POST /tasks/{id}/resume` names
    job: str | None = None
    phase: Literal["before", "after"] | None = None
    #: set by a front end where an answer must not replace `value` (it would become code):
    #: why; the pause then resumes only without an answer
    no_answer_because: str | None = None


class PauseNode:
    def __init__(self, spec: PauseSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> Chunks:
        spec = self.spec
        value = ctx.resolve("value")
        if isinstance(value, AsyncGenerator):  # a stream waits for no one: take it whole first
            value = "".join([str(chunk) async for chunk in value])
        message = ctx.resolve("message")
        pause = Pause(ctx.node_id, None if message is None else str(message), ctx.resolve("metadata"), spec.timeout, spec.job, spec.phase,
                      no_answer_because=spec.no_answer_because)
        if ctx.pause is None:
            raise RunError(ctx.node_id, f"{pause.describe()} needs someone to answer, and `flowctl run` cannot take an answer",
                           hint="serve the flow with `flowctl up` and answer with POST /api/runs/<id>/resume")
        shown = pause.as_dict()
        ctx.report(PAUSED, **{key: shown[key] for key in ("message", "metadata", "expires_at")})
        try:
            answer = await ctx.pause(pause)
        except TimeoutError:
            raise RunError(ctx.node_id, f"{pause.describe()} got no answer within {duration(spec.timeout)}",
                           hint="answer sooner (POST /api/runs/<id>/resume), or give the pause a longer `timeout:`") from None
        yield value if answer is None else answer
