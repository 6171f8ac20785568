"""map: run one node per item of a list, a bounded number at once; the outputs in input order.

    summaries:
      type: map
      items: ${nodes.split.output as list}
      concurrency: 4                # items in flight at once (a sliding window)
      where: {value: "${item.lang}", equals: en}   # optional: keep only these items
      node:                         # the per-item node; reads ${item} and ${index}
        type: http-stream
        url: http://127.0.0.1:8000/v1/chat/completions
        body: {model: m, messages: [{role: user, content: "Summarise: ${item.text}"}]}
        stream_format: null
        output: ${response.choices[0].message.content}

Without `node:` the output is the items that pass `where:` (model-compose's `filter`). An
empty list gives `[]`. The first item that fails cancels the items in flight and fails the
map, naming the item's index. More than `max_items` items fail the node before any runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ..engine.conditions import Condition, holds
from ..engine.errors import RunError
from ..engine.structured import run_together
from .base import Chunks, RunContext, RunNodeSpec

if TYPE_CHECKING:  # the union of every node type is built by the registry, after this module
    from .registry import NodeSpec


class MapSpec(RunNodeSpec):
    template_fields: ClassVar[tuple[str, ...]] = (*RunNodeSpec.template_fields, "items", "where")
    mappable: ClassVar[bool] = False
    inner_field: ClassVar[str | None] = "node"
    condition_fields: ClassVar[tuple[str, ...]] = ("when", "where")
    #: `where:` is rendered once per item, with `item` and `index` in scope
    field_sources: ClassVar[Mapping[str, frozenset[str]]] = {"where": frozenset({"item", "index"})}

    type: Literal["map"]
    #: the list to map over (a template, usually `${nodes.x.output as list}`)
    items: Any
    #: keep only the items for which this holds (it compares the item unless it names a `value:`)
    where: Condition = None
    #: the node run once per item; `${item}` and `${index}` read the current one
    node: NodeSpec | None = None
    #: items in flight at once
    concurrency: int = Field(default=4, ge=1, le=1024)
    #: more items than this fail the node (an unbounded fan-out is a mistake more often than not)
    max_items: int = Field(default=1000, ge=0)


class MapNode:
    def __init__(self, spec: MapSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> Chunks:
        spec = self.spec
        items = ctx.resolve("items")
        if items is None:
            items = []
        if not isinstance(items, (list, tuple)):
            raise RunError(ctx.node_id, f"`items` is {type(items).__name__}, not a list", hint="write `items: ${nodes.x.output as list}`")
        if len(items) > spec.max_items:
            raise RunError(ctx.node_id, f"{len(items)} items, more than `max_items` ({spec.max_items})", hint="raise `max_items` if this is intended")
        if "where" in spec.model_fields_set:
            kept = []
            for index, item in enumerate(items):
                condition = ctx.resolve("where", {"item": item, "index": index})
                if holds(condition, item):
                    kept.append(item)
            items = kept
        if spec.node is None or ctx.run_item is None:
            yield list(items)
            return
        yield await _map_bounded(ctx, list(items), spec.concurrency)


async def _map_bounded(ctx: RunContext, items: list[Any], concurrency: int) -> list[Any]:
    """Run the per-item node over `items`, at most `concurrency` at once, keeping order. The
    first failure cancels the items in flight and is raised, naming its item."""
    run_item = ctx.run_item
    assert run_item is not None
    results: list[Any] = [None] * len(items)
    slots = asyncio.Semaphore(concurrency)
    done = 0

    async def one(index: int, item: Any) -> None:
        nonlocal done
        async with slots:
            try:
                results[index] = await run_item({"item": item, "index": index})
            except RunError as exc:
                raise RunError(ctx.node_id, f"item {index}: {exc.reason}", hint=exc.hint) from exc
            done += 1
            ctx.report("progress", done=done, total=len(items))

    await run_together(one(index, item) for index, item in enumerate(items))
    return results
