"""http-stream: one HTTP request per run, its body parsed as an SSE or line stream.

Each chunk is passed through the node's `output:` template (`${response[].choices[0].delta.content}`);
a chunk that does not carry the path (vLLM's role and finish chunks) is skipped, and
`data: [DONE]` ends the stream. Closing the consumer closes the upstream response at once,
which is how a model server learns to stop generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from ..engine.errors import MissingValueError, UpstreamError
from .base import NodeKind, NodeSpecBase, RunContext
from .deadline import WaitDeadline
from .sse_parser import iter_sse_data_bytes

_NOTHING = object()


class TimeoutSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: seconds to open the connection
    connect: float = 10.0
    #: seconds from sending the request to the first chunk that carries output (queueing,
    #: prefill; a role-only chunk does not count)
    first_byte: float = 300.0
    #: seconds allowed between two chunks once the body flows
    idle: float = 60.0


class HttpStreamSpec(NodeSpecBase):
    kind: ClassVar[NodeKind] = NodeKind.RUN
    template_fields: ClassVar[tuple[str, ...]] = ("method", "url", "headers", "params", "body", "output")

    type: Literal["http-stream"]
    method: str = "POST"
    url: str
    headers: dict[str, Any] = {}
    params: dict[str, Any] = {}
    #: a mapping or list is sent as JSON; a string as is
    body: Any = None
    #: how the body is read: `json`/`text` chunks of an SSE (or newline-delimited) stream,
    #: or null for one whole (non-streamed) body
    stream_format: Literal["json", "text"] | None = "json"
    #: per chunk (`response[]`) or whole body (`response`) extraction; default: the chunk itself
    output: Any = None
    timeout: TimeoutSpec = TimeoutSpec()


class HttpStreamNode:
    def __init__(self, spec: HttpStreamSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> AsyncIterator[Any]:
        spec = self.spec
        method = str(ctx.resolve("method")).upper()
        url = str(ctx.resolve("url"))
        headers = {str(k): str(v) for k, v in (ctx.resolve("headers") or {}).items()}
        params = ctx.resolve("params") or None
        body = ctx.resolve("body")
        content: dict[str, Any] = {}
        if isinstance(body, (dict, list)):
            content["json"] = body
        elif body is not None:
            content["content"] = str(body).encode()
        timeout = httpx.Timeout(connect=spec.timeout.connect, read=None, write=spec.timeout.connect, pool=spec.timeout.connect)
        request = ctx.http.build_request(method, url, headers=headers, params=params, timeout=timeout, **content)
        try:
            async with asyncio.timeout(spec.timeout.first_byte):
                response = await ctx.http.send(request, stream=True)
        except TimeoutError:
            raise UpstreamError(ctx.node_id, f"{method} {url}: no response within {spec.timeout.first_byte:g}s") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(ctx.node_id, f"{method} {url}: {_describe(exc)}") from None
        try:
            if response.status_code >= 400:
                excerpt = await _excerpt(response)
                raise UpstreamError(
                    ctx.node_id, f"{method} {url} answered {response.status_code}: {excerpt}",
                    status=response.status_code, body=excerpt,
                )
            if spec.stream_format is None:
                async for value in self._whole(ctx, response):
                    yield value
                return
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" in content_type:
                # split events on the bytes as they arrive (no per-token text and line
                # decoding layers); raw when the body is not compressed
                raw = response.aiter_bytes() if "content-encoding" in response.headers else response.aiter_raw()
                chunks = iter_sse_data_bytes(raw, response.encoding or "utf-8")
            else:
                chunks = _non_empty(response.aiter_lines())
            extract = self._extractor(ctx)
            deadline = WaitDeadline(first=spec.timeout.first_byte, idle=spec.timeout.idle)
            try:
                async for value in self._chunks(ctx, url, chunks, deadline, extract):
                    yield value
            finally:
                deadline.close()
        except httpx.HTTPError as exc:
            raise UpstreamError(ctx.node_id, f"{url}: {_describe(exc)}") from None
        finally:
            await response.aclose()

    async def _chunks(self, ctx: RunContext, url: str, chunks: AsyncIterator[str], deadline: WaitDeadline, extract: Callable[[Any], Any]) -> AsyncIterator[Any]:
        """The hot loop: one upstream event in, at most one extracted value out."""
        want_json = self.spec.stream_format == "json"
        while True:
            deadline.begin()
            try:
                data = await anext(chunks)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if deadline.expired():
                    raise UpstreamError(ctx.node_id, f"{url}: no data for {deadline.limit:g}s") from None
                raise
            deadline.end()
            if data == "[DONE]":
                # read the (tiny) rest of the body, so the connection goes back to the
                # pool instead of being closed: a new TCP connect per run costs ~1 ms TTFT
                with contextlib.suppress(TimeoutError, httpx.HTTPError):
                    async with asyncio.timeout(0.05):
                        async for _ in chunks:
                            pass
                return
            if want_json:
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError:
                    raise UpstreamError(ctx.node_id, f"{url}: a stream chunk is not JSON: {data[:120]!r}") from None
            else:
                chunk = data
            value = extract(chunk)
            if value is not _NOTHING:
                deadline.flowing()
                yield value

    def _extractor(self, ctx: RunContext) -> Callable[[Any], Any]:
        """Per chunk: the `output:` value, or `_NOTHING` for a chunk that does not carry it
        (vLLM's role and finish chunks) or carries an empty one. Runs once per token."""
        if self.spec.output is None:
            return lambda chunk: chunk
        compiled = ctx.fields["output"]
        templates = compiled.templates
        scope = ctx.scope
        if isinstance(compiled.source, str) and len(templates) == 1:
            template = templates[0][1]

            def fast(chunk: Any) -> Any:
                scope["response[]"] = chunk
                value = template.render_or(scope, _NOTHING)
                return _NOTHING if value is None or value == "" else value

            return fast

        def general(chunk: Any) -> Any:
            try:
                value = ctx.resolve("output", {"response[]": chunk, "response": chunk})
            except MissingValueError:
                return _NOTHING
            return _NOTHING if value is None or value == "" else value

        return general

    async def _whole(self, ctx: RunContext, response: httpx.Response) -> AsyncIterator[Any]:
        async with asyncio.timeout(self.spec.timeout.idle):
            raw = await response.aread()
        text = raw.decode(response.encoding or "utf-8", errors="replace")
        try:
            body: Any = json.loads(text) if "json" in response.headers.get("content-type", "") else text
        except json.JSONDecodeError:
            body = text
        if self.spec.output is None:
            yield body
            return
        yield ctx.resolve("output", {"response": body})


async def _non_empty(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    async for line in lines:
        if line.strip():
            yield line


async def _excerpt(response: httpx.Response, limit: int = 300) -> str:
    try:
        async with asyncio.timeout(5.0):
            raw = await response.aread()
    except (TimeoutError, httpx.HTTPError):
        return "(no body)"
    text = raw.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect (is the server up?)"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection mid-response"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__
