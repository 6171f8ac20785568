"""http-stream: one HTTP request per run, its body parsed as an SSE or line stream.

Each chunk is passed through the node's `output:` template (`${response[].choices[0].delta.content}`);
a chunk that does not carry the path (vLLM's role and finish chunks) is skipped, and
`data: [DONE]` ends the stream. Closing the consumer closes the upstream response at once,
which is how a model server learns to stop generating.

A stream that stops without its end marker (`data: [DONE]`, or a chunk with a
`finish_reason`) was cut short: the model server died, or a proxy dropped the connection,
and a response whose end is the connection's end cannot tell. It fails the run naming the
node, never passes as a complete answer (`require_end: false` for upstreams that send no
marker). A 3xx answer fails too (redirects are not followed: the body is not the answer).

The request is checked before it is sent: a URL, header or body that a template made
invalid (an input with a line break in a header, a port out of range) is the input's fault
(`InputError`, HTTP 422 naming it) or, when no input is involved, the flow's (`RunError`).
URLs in messages are redacted (`http_url.redact_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from ..engine.errors import InputError, MissingValueError, RunError, UpstreamError, clip
from .base import Chunks, NodeKind, NodeSpecBase, RunContext
from .deadline import WaitDeadline
from .http_url import redact_url, render_url
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
    #: `output:` reads each stream chunk as `response[]` (the whole body as `response`)
    field_sources: ClassVar[Mapping[str, frozenset[str]]] = {"output": frozenset({"response", "response[]"})}

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
    #: a streamed body must end with `data: [DONE]` or a chunk with a `finish_reason`; one
    #: that stops before is cut short and fails the run. false: the body's end is the end
    require_end: bool = True


class HttpStreamNode:
    def __init__(self, spec: HttpStreamSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> Chunks:
        spec = self.spec
        request = self._request(ctx)
        shown = f"{request.method} {redact_url(str(request.url))}"
        try:
            async with asyncio.timeout(spec.timeout.first_byte):
                response = await ctx.http.send(request, stream=True)
        except TimeoutError:
            raise UpstreamError(ctx.node_id, f"{shown}: no response within {spec.timeout.first_byte:g}s") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(ctx.node_id, f"{shown}: {_describe(exc)}") from None
        try:
            status = response.status_code
            if not 200 <= status < 300:
                if 300 <= status < 400:
                    where = redact_url(response.headers.get("location", "")) or "nowhere"
                    excerpt = f"a redirect to {where}; redirects are not followed (point `url:` at the final address)"
                else:
                    excerpt = await _excerpt(response)
                raise UpstreamError(ctx.node_id, f"{shown} answered {status}: {excerpt}", status=status, body=excerpt)
            if spec.stream_format is None:
                async for value in self._whole(ctx, shown, response):
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
                async for value in self._chunks(ctx, shown, chunks, deadline, extract):
                    yield value
            finally:
                deadline.close()
        except httpx.HTTPError as exc:
            raise UpstreamError(ctx.node_id, f"{shown}: {_describe(exc)}") from None
        finally:
            await response.aclose()

    def _request(self, ctx: RunContext) -> httpx.Request:
        """The request this run sends, checked part by part before anything goes out."""
        spec = self.spec
        method = str(ctx.resolve("method")).upper()
        compiled_url = ctx.fields.get("url")
        try:
            url = httpx.URL(render_url(compiled_url, ctx.scope) if compiled_url is not None else spec.url)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise _rejected(ctx, ("url",), _reason(exc)) from None
        if url.scheme not in ("http", "https") or not url.host:
            raise _rejected(ctx, ("url",), f"'{redact_url(str(url))}' is not an http(s) URL with a host")
        if url.port is not None and not 0 < url.port < 65536:
            raise _rejected(ctx, ("url",), f"port {url.port} is out of range")
        headers = {str(k): str(v) for k, v in (ctx.resolve("headers") or {}).items()}
        for name, value in headers.items():
            if not _HEADER_SAFE.fullmatch(name) or not _HEADER_VALUE_SAFE.fullmatch(value):
                raise _rejected(ctx, ("headers", name), f"header '{clip(name, 40)}' has a line break, a control character or non-ASCII text")
        params = ctx.resolve("params") or None
        body = ctx.resolve("body")
        content: dict[str, Any] = {}
        if isinstance(body, (dict, list)):
            content["json"] = body
        elif body is not None:
            content["content"] = str(body)
        timeout = httpx.Timeout(connect=spec.timeout.connect, read=None, write=spec.timeout.connect, pool=spec.timeout.connect)
        try:
            return ctx.http.build_request(method, url, headers=headers, params=params, timeout=timeout, **content)
        except (httpx.InvalidURL, UnicodeError, TypeError, ValueError) as exc:
            raise _rejected(ctx, ("body",), _reason(exc)) from None

    async def _chunks(self, ctx: RunContext, shown: str, chunks: AsyncIterator[str], deadline: WaitDeadline, extract: Callable[[Any], Any]) -> AsyncIterator[Any]:
        """The hot loop: one upstream event in, at most one extracted value out."""
        want_json = self.spec.stream_format == "json"
        # seen a chunk with a finish_reason (OpenAI's format): then the answer is whole
        # even if `[DONE]` does not follow; with `require_end: false` nothing is checked
        finished = not self.spec.require_end
        while True:
            deadline.begin()
            try:
                data = await anext(chunks)
            except StopAsyncIteration:
                if not finished:
                    raise UpstreamError(ctx.node_id, f"{shown}: the stream stopped before its end (no `data: [DONE]` and no finish_reason): the answer is cut short; an upstream that never sends an end marker needs `require_end: false`") from None
                return
            except asyncio.CancelledError:
                if deadline.expired():
                    raise UpstreamError(ctx.node_id, f"{shown}: no data for {deadline.limit:g}s") from None
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
                    raise UpstreamError(ctx.node_id, f"{shown}: a stream chunk is not JSON: {data[:120]!r}") from None
                if not finished and chunk.__class__ is dict:
                    finished = _has_finish_reason(chunk)
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

    async def _whole(self, ctx: RunContext, shown: str, response: httpx.Response) -> AsyncIterator[Any]:
        async with asyncio.timeout(self.spec.timeout.idle):
            raw = await response.aread()
        text = raw.decode(response.encoding or "utf-8", errors="replace")
        body: Any = text
        if "json" in response.headers.get("content-type", ""):
            try:
                body = json.loads(text)
            except ValueError:  # a JSON body that does not parse was cut short, or is broken
                raise UpstreamError(ctx.node_id, f"{shown}: the JSON body does not parse (cut short?): {clip(text, 120)!r}") from None
        if self.spec.output is None:
            yield body
            return
        yield ctx.resolve("output", {"response": body})


#: header names are tokens; values are visible ASCII, spaces and tabs (no line breaks, no NUL)
_HEADER_SAFE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE_SAFE = re.compile(r"[\t\x20-\x7e]*")


def _has_finish_reason(chunk: dict[str, Any]) -> bool:
    """Runs per token until the answer is whole: a plain loop, no generator."""
    choices = chunk.get("choices")
    if choices.__class__ is list:
        for choice in choices:
            if choice.__class__ is dict and choice.get("finish_reason"):
                return True
    return False


def _rejected(ctx: RunContext, where: tuple[str, ...], reason: str) -> InputError | RunError:
    """A request part a template made invalid: the fault of the input it was built from (so
    the client gets a 4xx naming it), or, when no input went into it, of the flow."""
    field, *inner = where
    compiled = ctx.fields.get(field)
    templates = compiled.templates if compiled is not None else ()
    inputs = [
        str(ref.path[0])
        for path, template in templates
        if not inner or tuple(path[: len(inner)]) == tuple(inner)
        for ref in template.references
        if ref.source == "input" and ref.path
    ]
    what = ".".join((field, *inner))
    if inputs:
        return InputError(inputs[0], f"makes node '{ctx.node_id}' send an invalid {what}: {reason}")
    return RunError(ctx.node_id, f"invalid {what}: {reason}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeError):
        return "it holds text that cannot be encoded (a lone surrogate?)"
    return clip(str(exc) or type(exc).__name__, 160)


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
