"""Run one workflow: the per-run subgraph, pulled from its output node.

Nodes read as a stream are opened lazily and handed to their one reader as an iterator;
every other upstream node is run to the end and its chunks collected into a value first. So
chunks flow from the upstream HTTP response to the consumer one at a time, never buffered,
and closing the returned iterator closes every node's iterator (and with them the upstream
requests) in reverse order.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Self

import httpx

from ..nodes.base import RunContext
from ..nodes.registry import create_node
from .errors import FlowctlError, RunError, TemplateError
from .graph import CompiledFlow, CompiledWorkflow


class HttpPool:
    """The upstream connection pool of a process, sharded over a few `httpx.AsyncClient`s.

    httpcore's pool scans every pooled connection (a socket-readable check each, and for
    each idle one a count of all of them: O(N²) in httpcore 1.0) whenever a request starts
    or ends; at 32 concurrent streams that scan was a sixth of the CPU. Runs go round-robin over `shards`
    clients, so each scan covers about N / shards connections. Connections are still kept
    alive and reused (a fresh TCP connect per run costs ~1 ms of TTFT).

    It offers the part of `httpx.AsyncClient` the engine uses: `build_request`, `send`,
    `aclose` and `async with`.
    """

    def __init__(self, shards: int = 8, **client_kwargs: Any) -> None:
        if "verify" not in client_kwargs:  # one TLS context for all (each costs ~20 ms and ~0.5 MB)
            client_kwargs["verify"] = httpx.create_ssl_context()
        self._clients = [httpx.AsyncClient(**client_kwargs) for _ in range(max(1, shards))]
        self._next = 0

    @property
    def clients(self) -> list[httpx.AsyncClient]:
        return list(self._clients)

    def build_request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Request:
        return self._clients[0].build_request(method, url, **kwargs)

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        clients = self._clients
        i = self._next
        self._next = (i + 1) % len(clients)
        return await clients[i].send(request, **kwargs)

    async def aclose(self) -> None:
        await _close_all(self._clients)

    @property
    def is_closed(self) -> bool:
        return all(client.is_closed for client in self._clients)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _close_all(clients: list[httpx.AsyncClient]) -> None:
    """Close every client, the rest too if one fails (the first error propagates)."""
    if clients:
        try:
            await clients[0].aclose()
        finally:
            await _close_all(clients[1:])


def new_http_client() -> HttpPool:
    """The connection pool every http-stream node of a process shares."""
    return HttpPool(
        timeout=httpx.Timeout(connect=10.0, read=None, write=10.0, pool=30.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        trust_env=False,
    )


async def run_workflow(
    flow: CompiledFlow,
    workflow: CompiledWorkflow,
    inputs: Mapping[str, Any],
    *,
    run_id: str,
    http: HttpPool | httpx.AsyncClient,
    service_outputs: Mapping[str, Any],
) -> AsyncIterator[Any]:
    """Yield the workflow's output chunks. `inputs` must already be validated and cast."""
    nodes_scope: dict[str, Any] = {sid: {"output": service_outputs.get(sid)} for sid in workflow.services}
    base_scope = {
        "input": dict(inputs),
        "env": os.environ,
        "run": {"id": run_id, "time": time.time(), "workflow": workflow.id},
        "nodes": nodes_scope,
    }
    opened: list[AsyncIterator[Any]] = []
    try:
        for node_id in workflow.run_nodes[:-1]:
            iterator = _start_node(flow, node_id, run_id, http, base_scope)
            opened.append(iterator)
            if node_id in workflow.streamed_nodes:
                nodes_scope[node_id] = {"output": iterator}
            else:
                nodes_scope[node_id] = {"output": await _collect(iterator)}
        output = _start_node(flow, workflow.output_node, run_id, http, base_scope)
        opened.append(output)
        async for chunk in output:
            yield chunk
    finally:
        for iterator in reversed(opened):
            await iterator.aclose()


def _start_node(flow: CompiledFlow, node_id: str, run_id: str, http: HttpPool | httpx.AsyncClient, base_scope: dict[str, Any]) -> AsyncIterator[Any]:
    node = flow.nodes[node_id]
    scope = dict(base_scope)

    def resolve(field: str, extra: Mapping[str, Any] | None = None) -> Any:
        if extra:
            scope.update(extra)
        compiled = node.fields.get(field)
        if compiled is None:
            return getattr(node.spec, field)
        return compiled.render(scope)

    ctx = RunContext(node_id=node_id, run_id=run_id, resolve=resolve, http=http, fields=node.fields, scope=scope)
    return _guarded(node_id, create_node(node.spec).run(ctx))


async def _guarded(node_id: str, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Name the node in any error it raises, and close it whatever happens."""
    try:
        async for chunk in chunks:
            yield chunk
    except RunError:
        raise
    except TemplateError as exc:
        raise RunError(node_id, exc.message, hint=exc.hint) from None
    except FlowctlError as exc:
        raise RunError(node_id, str(exc)) from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise RunError(node_id, f"{type(exc).__name__}: {exc}") from exc
    finally:
        await chunks.aclose()


async def _collect(chunks: AsyncIterator[Any]) -> Any:
    values = [chunk async for chunk in chunks]
    if len(values) == 1:
        return values[0]
    if all(isinstance(value, str) for value in values):
        return "".join(values)
    return values


def chunk_text(chunk: Any) -> str:
    """How a chunk reads as text: strings as they are, everything else as compact JSON."""
    if isinstance(chunk, str):
        return chunk
    return json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)
