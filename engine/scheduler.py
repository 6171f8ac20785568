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
from collections.abc import AsyncGenerator, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

from ..nodes.base import Chunks, RunContext
from ..nodes.http_transport import StreamingTransport
from ..nodes.registry import create_run_node
from .errors import FlowctlError, InputError, RunError, TemplateError
from .graph import CompiledFlow, CompiledWorkflow


def new_http_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The upstream client every http-stream node of a process shares: httpx, over
    `nodes.http_transport.StreamingTransport` for plain `http://` (one write per request,
    httptools parsing, an O(1) keep-alive pool) and httpx's own transport for the rest.
    `transport` replaces both (the transport tests run the same client over httpx's own).
    No connection cap: each run holds one connection, and runs are bounded per workflow."""
    if transport is None:
        fallback = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            trust_env=False,
        )
        transport = StreamingTransport(fallback=fallback, max_idle_per_origin=64)
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(connect=10.0, read=None, write=10.0, pool=30.0),
        trust_env=False,
        # one client serves every run: a cookie the upstream sets in answer to one user's
        # run must not ride along on the next user's
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


async def run_workflow(
    flow: CompiledFlow,
    workflow: CompiledWorkflow,
    inputs: Mapping[str, Any],
    *,
    run_id: str,
    http: httpx.AsyncClient,
    service_outputs: Mapping[str, Any],
) -> Chunks:
    """Yield the workflow's output chunks. `inputs` must already be validated and cast."""
    nodes_scope: dict[str, Any] = {sid: {"output": service_outputs.get(sid)} for sid in workflow.services}
    base_scope = {
        "input": dict(inputs),
        "env": os.environ,
        "run": {"id": run_id, "time": time.time(), "workflow": workflow.id},
        "nodes": nodes_scope,
    }
    opened: list[Chunks] = []
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


def _start_node(flow: CompiledFlow, node_id: str, run_id: str, http: httpx.AsyncClient, base_scope: dict[str, Any]) -> Chunks:
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
    return _guarded(node_id, create_run_node(node.spec).run(ctx))


async def _guarded(node_id: str, chunks: Chunks) -> Chunks:
    """Name the node in any error it raises, and close it whatever happens."""
    try:
        async for chunk in chunks:
            yield chunk
    except (RunError, InputError):  # already names the node (or the input at fault)
        raise
    except TemplateError as exc:
        raise RunError(node_id, exc.message, hint=exc.hint) from None
    except FlowctlError as exc:
        raise RunError(node_id, str(exc)) from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise RunError(node_id, f"{type(exc).__name__}: {exc}") from exc
    finally:
        await chunks.aclose()


async def _collect(chunks: AsyncGenerator[Any, None]) -> Any:
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
