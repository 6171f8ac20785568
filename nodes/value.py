"""value: build a value from templates, once per run (assemble a prompt, merge the outputs
of parallel branches, pick fields out of a JSON answer).

    merge:
      type: value
      value:
        messages:
          - {role: system, content: "Merge the two drafts into one answer."}
          - {role: user, content: "A: ${nodes.draft_a.output}\\n\\nB: ${nodes.draft_b.output}"}

`value:` is any YAML tree; its strings are templates. A whole-value stream reference
(`${nodes.x.output as stream/text}`) is passed on chunk by chunk. `delay:` waits that many
seconds first (model-compose's `delay` job lowers to this).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, ClassVar, Literal

from ..engine.errors import RunError
from .base import Chunks, RunContext, RunNodeSpec


class ValueSpec(RunNodeSpec):
    template_fields: ClassVar[tuple[str, ...]] = (*RunNodeSpec.template_fields, "value", "delay")
    forwards: ClassVar[str | None] = "value"

    type: Literal["value"]
    #: the output: any YAML value, its strings templates
    value: Any = None
    #: seconds to wait before producing the value (a number or a template)
    delay: Any = None


class ValueNode:
    def __init__(self, spec: ValueSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> Chunks:
        delay = ctx.resolve("delay")
        if delay is not None:
            try:
                seconds = float(delay)
            except (TypeError, ValueError):
                raise RunError(ctx.node_id, f"`delay` is {delay!r}, not a number of seconds") from None
            if seconds > 0:
                await asyncio.sleep(seconds)
        value = ctx.resolve("value")
        if isinstance(value, AsyncGenerator):
            try:
                async for chunk in value:
                    yield chunk
            finally:
                await value.aclose()
        else:
            yield value
