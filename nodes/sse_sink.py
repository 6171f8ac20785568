"""sse-sink: the run's streamed output. It takes a node's chunk stream (`source:`) and hands
each chunk on; the server frames them as SSE, `flowctl run` prints them to stdout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

from .base import NodeKind, NodeSpecBase, RunContext


class SseSinkSpec(NodeSpecBase):
    kind: ClassVar[NodeKind] = NodeKind.RUN
    template_fields: ClassVar[tuple[str, ...]] = ("source",)

    type: Literal["sse-sink"]
    #: what to stream, e.g. `${nodes.completion.output as stream/text}`
    source: Any


class SseSinkNode:
    def __init__(self, spec: SseSinkSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> AsyncIterator[Any]:
        value = ctx.resolve("source")
        if hasattr(value, "__anext__"):
            try:
                async for chunk in value:
                    yield chunk
            finally:
                await value.aclose()
        else:
            yield value
