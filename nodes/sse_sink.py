"""sse-sink: the run's streamed output. It takes a node's chunk stream (`source:`) and hands
each chunk on; the server frames them as SSE, `flowctl run` prints them to stdout."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .base import Chunks, NodeKind, NodeSpecBase, RunContext

if TYPE_CHECKING:
    from ..engine.templating import CompiledValue


class SseSinkSpec(NodeSpecBase):
    kind: ClassVar[NodeKind] = NodeKind.RUN
    template_fields: ClassVar[tuple[str, ...]] = ("source",)
    is_sink: ClassVar[bool] = True

    type: Literal["sse-sink"]
    #: what to stream, e.g. `${nodes.completion.output as stream/text}`
    source: Any

    @classmethod
    def output_type(cls, fields: Mapping[str, CompiledValue]) -> str:
        """A JSON stream when the source is read `as stream/json`, else a text stream."""
        source = fields.get("source")
        types = [ref.type for ref in source.references] if source else []
        return "stream/json" if "stream/json" in types else "stream/text"


class SseSinkNode:
    def __init__(self, spec: SseSinkSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> Chunks:
        value = ctx.resolve("source")
        if isinstance(value, AsyncGenerator):
            try:
                async for chunk in value:
                    yield chunk
            finally:
                await value.aclose()
        else:
            yield value
