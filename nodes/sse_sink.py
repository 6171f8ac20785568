"""sse-sink: the run's streamed output. It takes a node's chunk stream (`source:`) and hands
each chunk on; the server frames them as SSE, `flowctl run` prints them to stdout.

`source:` may also be a list: the streams (or values) in it are sent one after the other,
and a skipped node (null) sends nothing. After a switch, that streams whichever branch ran:

    reply:
      type: sse-sink
      source: ["${nodes.coder.output as stream/text}", "${nodes.chat.output as stream/text}"]
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .base import Chunks, RunContext, RunNodeSpec

if TYPE_CHECKING:
    from ..engine.templating import CompiledValue


class SseSinkSpec(RunNodeSpec):
    template_fields: ClassVar[tuple[str, ...]] = (*RunNodeSpec.template_fields, "source")
    is_sink: ClassVar[bool] = True
    mappable: ClassVar[bool] = False
    forwards: ClassVar[str | None] = "source"

    type: Literal["sse-sink"]
    #: what to stream, e.g. `${nodes.completion.output as stream/text}`, or a list of those
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
        parts: list[Any] = value if isinstance(value, list) and isinstance(self.spec.source, list) else [value]
        try:
            for part in parts:
                if isinstance(part, AsyncGenerator):
                    async for chunk in part:
                        yield chunk
                elif part is not None:
                    yield part
        finally:
            for part in parts:
                if isinstance(part, AsyncGenerator):
                    await part.aclose()
