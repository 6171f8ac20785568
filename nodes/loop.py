"""loop: run one node again and again, each time reading the last one's output, until a
condition holds (or while it holds), at most `max_iterations` times.

    pages:
      type: loop
      input: ${input.query}           # optional: `${loop.input}` in the node and the condition
      node:                           # the body: value, command or http-stream
        type: http-stream
        url: http://127.0.0.1:8000/items
        method: GET
        params: {cursor: "${loop.previous.next_cursor | null}"}
        stream_format: null
      while: {value: "${loop.output.next_cursor | null}", not_equals: null}
      max_iterations: 50              # default 100; reaching it fails the node
      delay: 0.5                      # optional seconds between iterations

The body reads `${loop.index}` (0 for the first iteration), `${loop.previous}` (the output
of the iteration before; null on the first) and `${loop.input}`. The condition (`until:` or
`while:`, exactly one) is checked after each iteration and reads the same plus
`${loop.output}`, the iteration just run; a comparison without `value:` compares that
output. The node's output is the last iteration's output. Reaching `max_iterations` without
the condition deciding to stop fails the node: a loop that does not end is a mistake, and an
unbounded one is never run. A failing iteration fails the loop, naming the iteration.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from ..engine.conditions import Condition, holds
from ..engine.errors import RunError
from .base import Chunks, RunContext, RunNodeSpec

if TYPE_CHECKING:  # the union of every node type is built by the registry, after this module
    from .registry import NodeSpec

#: the template source a loop's body and condition read (`${loop.index}`, ...)
LOOP_SOURCE = frozenset({"loop"})


class LoopSpec(RunNodeSpec):
    template_fields: ClassVar[tuple[str, ...]] = (*RunNodeSpec.template_fields, "input", "until", "while_")
    mappable: ClassVar[bool] = False
    inner_field: ClassVar[str | None] = "node"
    inner_sources: ClassVar[frozenset[str]] = LOOP_SOURCE
    condition_fields: ClassVar[tuple[str, ...]] = ("when", "until", "while_")
    field_sources: ClassVar[dict[str, frozenset[str]]] = {"until": LOOP_SOURCE, "while_": LOOP_SOURCE}

    type: Literal["loop"]
    #: a value the body and the condition read as `${loop.input}` (rendered once)
    input: Any = None
    #: the node run once per iteration
    node: NodeSpec
    #: stop after the first iteration for which this holds
    until: Condition = None
    #: go on while this holds after an iteration
    while_: Condition = Field(default=None, alias="while")
    #: reaching this many iterations without stopping fails the node
    max_iterations: int = Field(default=100, ge=1, le=10_000)
    #: seconds to wait between iterations (polling something that is not ready yet)
    delay: float = Field(default=0.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _one_condition(self) -> LoopSpec:
        written = {"until", "while_"} & self.model_fields_set
        if len(written) != 1:
            raise ValueError("a loop needs exactly one of `until:` (stop once it holds) and `while:` (go on while it holds)")
        return self


class LoopNode:
    def __init__(self, spec: LoopSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> Chunks:
        spec = self.spec
        run_item = ctx.run_item
        assert run_item is not None, "the scheduler gives a node with a body its runner"
        field = "until" if "until" in spec.model_fields_set else "while_"
        initial = ctx.resolve("input")
        previous: Any = None
        for index in range(spec.max_iterations):
            state = {"index": index, "previous": previous, "input": initial}
            try:
                output = await run_item({"loop": state})
            except RunError as exc:
                raise RunError(ctx.node_id, f"iteration {index}: {exc.reason}", hint=exc.hint) from exc
            condition = ctx.resolve(field, {"loop": {**state, "output": output}})
            stop = holds(condition, output) if field == "until" else not holds(condition, output)
            ctx.report("progress", done=index + 1, total=spec.max_iterations)
            if stop:
                yield output
                return
            previous = output
            if spec.delay:
                await asyncio.sleep(spec.delay)  # the loop's own pace, cancelled with the run
        written = "until" if field == "until" else "while"
        raise RunError(
            ctx.node_id,
            f"ran {spec.max_iterations} iterations and `{written}` never said stop",
            hint="raise `max_iterations` if more are expected, or check the condition",
        )
