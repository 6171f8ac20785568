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

Without `stream_format` the whole body is one value: parsed JSON for a JSON content type,
text for text, and base64 text for anything binary (audio, images): `${response}` of a
text-to-speech call is the audio as base64, ready for a JSON answer.

The request is checked before it is sent: a URL, header or body that a template made
invalid (an input with a line break in a header, a port out of range) is the input's fault
(`InputError`, HTTP 422 naming it) or, when no input is involved, the flow's (`RunError`).
URLs in messages are redacted (`http_url.redact_url`).

`service: llm` (with `path: /v1/chat/completions`) sends the request to one of a
process-start node's replicas instead of a fixed `url:`, chosen per attempt by the service's
pool (`balancer.py`: least streams in flight, ties by rotation, a replica that refused a
connection cooled down). A request that could not reach its replica, or whose connection
broke before the first byte of the answer, goes to another replica at once (once per
replica); after the first byte it is never sent again. Errors name the replica.

`completion:` (`callback_wait.py`): the answer only acknowledges the job, whose result comes
later to an http-callback listener; the node reads the body whole, then waits for the callback
with its identity (registered before the request goes out) and renders `output:` over both
`response` and `result`.

`retry:` sends the request again after a failure before the first byte of the answer
(connect errors, a connection lost before the response, 5xx): a half-streamed answer is never
asked for twice. The hot loop is one generator frame per token: the body's reads are split
into events inline (`sse_parser.SseDataSplitter`, a plain object), and for the usual
`output: ${response[].a.b}` each event is parsed by the C JSON scanner and the path walked
directly.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import functools
import json
import json.scanner
import random
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..engine.errors import InputError, MissingValueError, RunError, TemplateError, UpstreamError, clip
from ..engine.templating import MISSING, compile_value, path_walker
from ..engine.usage import TokenUsage
from .balancer import Endpoint, ReplicaPool
from .base import Chunks, RunContext, RunNodeSpec
from .callback_wait import CallbackCompletion, callback_wait
from .deadline import WaitDeadline
from .http_form import BodyFormat, FormValueError, body_format, media_fields, multipart, urlencoded, without_content_type
from .http_url import redact_url, render_url
from .sse_parser import LineSplitter, SseDataSplitter

_NOTHING = object()
_DONE = object()


class TimeoutSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: seconds to open the connection
    connect: float = 10.0
    #: seconds from sending the request to the first chunk that carries output (queueing,
    #: prefill; a role-only chunk does not count)
    first_byte: float = 300.0
    #: seconds allowed between two chunks once the body flows
    idle: float = 60.0


class RetrySpec(BaseModel):
    """Send the request again after a failure *before the answer's first byte*: the
    connection could not be made, or the response is a 5xx (or another status in
    `statuses`). Once a 2xx answer has begun nothing is retried, so a
    half-streamed generation is never started a second time. Names as LangGraph's RetryPolicy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: attempts in all, the first one included
    max_attempts: int = Field(default=3, ge=1, le=100)
    #: seconds before the second attempt
    initial_interval: float = Field(default=0.5, ge=0)
    #: each wait is this many times the one before
    backoff_factor: float = Field(default=2.0, ge=1)
    #: no wait is longer than this
    max_interval: float = Field(default=30.0, ge=0)
    #: add up to half the wait again, at random, so clients do not retry in lockstep
    jitter: bool = True
    #: statuses worth another attempt (default: every 5xx)
    statuses: list[int] | None = None

    def retries_status(self, status: int) -> bool:
        return status in self.statuses if self.statuses is not None else 500 <= status <= 599

    def wait(self, failed_attempts: int) -> float:
        """Seconds to wait after `failed_attempts` attempts failed."""
        base = min(self.initial_interval * self.backoff_factor ** (failed_attempts - 1), self.max_interval)
        return base + (random.uniform(0, base / 2) if self.jitter else 0.0)


class HttpStreamSpec(RunNodeSpec):
    template_fields: ClassVar[tuple[str, ...]] = (*RunNodeSpec.template_fields, "method", "url", "path", "headers", "params", "body", "output", "completion")
    #: `output:` reads each stream chunk as `response[]` (the whole body as `response`), and
    #: with `completion:` the callback's result as `result`
    field_sources: ClassVar[Mapping[str, frozenset[str]]] = {"output": frozenset({"response", "response[]", "result"})}

    type: Literal["http-stream"]
    method: str = "POST"
    #: where the request goes (or name a `service:`)
    url: str | None = None
    #: a process-start node whose replicas (or one process) the requests are balanced over
    service: str | None = None
    #: with `service:`, the path (and query) asked of the chosen replica
    path: str = "/"
    headers: dict[str, Any] = {}
    params: dict[str, Any] = {}
    #: a mapping or list is sent as JSON; a string as is (see `body_format`)
    body: Any = None
    #: `json`, `text`, `form` (application/x-www-form-urlencoded) or `multipart`
    #: (multipart/form-data: media values become file parts, see `http_form`); default: the
    #: one the Content-Type header names, else JSON for a mapping or list and text for text
    body_format: BodyFormat | None = None
    #: how the body is read: `json`/`text` chunks of an SSE (or newline-delimited) stream,
    #: or null for one whole (non-streamed) body
    stream_format: Literal["json", "text"] | None = "json"
    #: per chunk (`response[]`) or whole body (`response`) extraction; default: the chunk itself
    output: Any = None
    timeout: TimeoutSpec = TimeoutSpec()
    #: a streamed body must end with `data: [DONE]` or a chunk with a `finish_reason`; one
    #: that stops before is cut short and fails the run. false: the body's end is the end
    require_end: bool = True
    #: retry before the first byte of the answer (`retry: {max_attempts: 3}`); none by default
    retry: RetrySpec | None = None
    #: the answer only acknowledges the job: wait for its callback too (`callback_wait.py`)
    completion: CallbackCompletion | None = None

    @model_validator(mode="before")
    @classmethod
    def _needs_listener(cls, data: Any) -> Any:
        """The listener a completion waits on is an upstream (started first, checked up)."""
        if isinstance(data, dict) and isinstance(data.get("completion"), dict) and isinstance(listener := data["completion"].get("listener"), str):
            needs = list(data.get("needs") or [])
            if listener not in needs:
                data = {**data, "needs": [*needs, listener]}
        return data

    @model_validator(mode="after")
    def _result_needs_completion(self) -> HttpStreamSpec:
        if self.completion is None and self.output is not None:
            try:
                reads_result = any(ref.source == "result" for ref in compile_value(self.output).references)
            except TemplateError:
                return self  # reported where the node is compiled
            if reads_result:
                raise ValueError("`output:` reads `${result...}`, the result of a callback: it needs `completion:` (a listener to wait on)")
        return self

    @field_validator("completion")
    @classmethod
    def _whole_body(cls, value: CallbackCompletion | None, info: ValidationInfo) -> CallbackCompletion | None:
        if value is not None and info.data.get("stream_format") is not None:
            raise ValueError("a request with `completion:` reads its answer whole: give `stream_format: null`")
        return value

    @field_validator("service")
    @classmethod
    def _not_both(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("url") is not None:
            raise ValueError("give either `url:` or `service:` (a process-start node to balance over), not both")
        return value

    @field_validator("path")
    @classmethod
    def _path_with_service(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("service") is None:
            raise ValueError("`path:` goes with `service:` (with `url:`, write the path in the URL)")
        if not value.startswith(("/", "${")):
            raise ValueError(f"`path: {value}` must start with /")
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> HttpStreamSpec:
        if self.url is None and self.service is None:
            raise ValueError("`url:` or `service:` is required")
        return self

    def services_named(self) -> list[tuple[str, tuple[str | int, ...]]]:
        return [(self.service, ("service",))] if self.service is not None else []


class HttpStreamNode:
    def __init__(self, spec: HttpStreamSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> Chunks:
        spec = self.spec
        if spec.completion is not None:
            # the wait is registered before the request goes out: a callback that comes
            # before the answer is kept
            async with callback_wait(ctx, spec.completion) as wait:
                pool = self._pool(ctx)
                response, target, shown = await self._answer(ctx, pool)
                try:
                    body = await self._body(ctx, shown, response)
                finally:
                    await response.aclose()
                    if target is not None:
                        target.release()
                result = await wait.result()
            yield body if spec.output is None else ctx.resolve("output", {"response": body, "result": result})
            return
        pool = self._pool(ctx)
        response, target, shown = await self._answer(ctx, pool)
        # [0]: the last `usage` object the upstream sent (OpenAI's token counts), if any
        usage: list[Any] = [None]
        failed = True  # until the body is read to its end: a replica's failures count it
        try:
            if spec.stream_format is None:
                async for value in self._whole(ctx, shown, response, usage):
                    yield value
                failed = False
                return
            # one frame per token: the body's reads, split into events inline (a plain
            # splitter object, no generator between), extracted, yielded
            if "text/event-stream" in response.headers.get("content-type", ""):
                split: SseDataSplitter | LineSplitter = SseDataSplitter(_charset(response))
            else:
                split = LineSplitter(_charset(response))
            # raw bytes when the body is not compressed: no decoding layer per read
            reads = response.aiter_bytes() if "content-encoding" in response.headers else response.aiter_raw()
            read = reads.__anext__
            # [0]: the answer is whole (a chunk with a finish_reason was seen, in OpenAI's
            # format), so a body that ends without `[DONE]` is not cut short
            whole = [not spec.require_end]
            event = self._event_reader(ctx, shown, whole, usage)
            deadline = WaitDeadline(first=spec.timeout.first_byte, idle=spec.timeout.idle)
            flowing = False  # the first output arrived: the idle limit applies from then on
            try:
                while True:
                    deadline.begin()
                    try:
                        raw = await read()
                    except StopAsyncIteration:
                        events = split.end()
                        ended = True
                    except asyncio.CancelledError:
                        if deadline.expired():
                            raise UpstreamError(ctx.node_id, f"{shown}: no data for {deadline.limit:g}s") from None
                        raise
                    else:
                        events = split.feed(raw)
                        ended = False
                    deadline.end()
                    for data in events:
                        value = event(data)
                        if value is _NOTHING:
                            continue
                        if value is _DONE:
                            failed = False
                            await _drain(reads)
                            return
                        if not flowing:
                            deadline.flowing()
                            flowing = True
                        yield value
                    if ended:
                        if not whole[0]:
                            raise UpstreamError(ctx.node_id, f"{shown}: the stream stopped before its end (no `data: [DONE]` and no finish_reason): the answer is cut short; an upstream that never sends an end marker needs `require_end: false`")
                        failed = False
                        return
            finally:
                deadline.close()
        except httpx.HTTPError as exc:
            raise UpstreamError(ctx.node_id, f"{shown}: {_describe(exc)}") from None
        except (GeneratorExit, asyncio.CancelledError):
            failed = False  # the consumer stopped reading: not the replica's failure
            raise
        finally:
            await response.aclose()
            if target is not None:
                target.release(failed=failed)
            reported = TokenUsage.from_openai(usage[0])
            if reported is not None:
                ctx.usage(reported)

    def _pool(self, ctx: RunContext) -> ReplicaPool | None:
        service = self.spec.service
        if service is None:
            return None
        pool = ctx.pools.get(service)
        if pool is None:
            raise UpstreamError(ctx.node_id, f"service '{service}' is not running")
        return pool

    async def _answer(self, ctx: RunContext, pool: ReplicaPool | None) -> tuple[httpx.Response, Endpoint | None, str]:
        """Send the request until a 2xx answer begins: (the response, the replica it came
        from when balancing, the request as errors show it). Before the first byte of an
        answer, a replica that could not be reached is left for another one (once each);
        then `retry:` applies, as for a plain `url:`. Raises UpstreamError otherwise."""
        spec = self.spec
        retry = spec.retry
        attempts = retry.max_attempts if retry is not None else 1
        attempt = 1
        avoid: set[str] = set()  # replicas this run could not get an answer from
        while True:
            target = None
            if pool is not None:
                target = pool.pick(avoid)
                if target is None:
                    raise UpstreamError(ctx.node_id, f"service '{spec.service}': no replica is ready")
            try:
                request = self._request(ctx, target.url if target is not None else None)
            except BaseException:
                if target is not None:
                    target.release()
                raise
            shown = f"{request.method} {redact_url(str(request.url))}"
            if target is not None:
                shown = f"replica '{target.name}': {shown}"
            try:
                async with asyncio.timeout(spec.timeout.first_byte):
                    response = await ctx.http.send(request, stream=True)
            except TimeoutError:
                if target is not None:
                    target.release(failed=True)
                raise UpstreamError(ctx.node_id, f"{shown}: no response within {spec.timeout.first_byte:g}s") from None
            except httpx.HTTPError as exc:
                error = UpstreamError(ctx.node_id, f"{shown}: {_describe(exc)}")
                if target is not None and pool is not None:
                    target.release(failed=True)
                    if _not_sent(exc):
                        target.cool_down()
                    avoid.add(target.name)
                    if _unanswered(exc) and pool.has_other(avoid):
                        ctx.report("failover", replica=target.name, error=error.message)
                        continue
                if retry is not None and attempt < attempts and _not_sent(exc):
                    await _pause(ctx, retry, attempt, error)
                    attempt += 1
                    continue
                raise error from None
            except BaseException:  # cancelled while connecting or waiting for the answer
                if target is not None:
                    target.release()
                raise
            status = response.status_code
            if 200 <= status < 300:
                return response, target, shown
            try:
                if 300 <= status < 400:
                    where = redact_url(response.headers.get("location", "")) or "nowhere"
                    excerpt = f"a redirect to {where}; redirects are not followed (point `url:` at the final address)"
                else:
                    excerpt = await _excerpt(response)
            finally:
                await response.aclose()
                if target is not None:
                    target.release(failed=True)
                    avoid.add(target.name)
            error = UpstreamError(ctx.node_id, f"{shown} answered {status}: {excerpt}", status=status, body=excerpt)
            if retry is not None and attempt < attempts and retry.retries_status(status):
                await _pause(ctx, retry, attempt, error)
                attempt += 1
                continue
            raise error

    def _request(self, ctx: RunContext, base: str | None = None) -> httpx.Request:
        """The request this run sends (to replica `base` + `path:` when balancing), checked
        part by part before anything goes out."""
        spec = self.spec
        method = str(ctx.resolve("method")).upper()
        field = "url" if base is None else "path"
        compiled = ctx.fields.get(field)
        try:
            text = render_url(compiled, ctx.scope) if compiled is not None else str(getattr(spec, field))
            url = _url(text if base is None else base.rstrip("/") + text)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise _rejected(ctx, (field,), _reason(exc)) from None
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
        kind = body_format(spec.body_format, headers)
        try:
            if body is None:
                pass
            elif kind in ("multipart", "form"):
                encoded = multipart(body, media_fields(ctx.fields.get("body"))) if kind == "multipart" else urlencoded(body)
                content_type, content["content"] = encoded
                headers = {**without_content_type(headers), "Content-Type": content_type}
            elif kind == "json" or (kind is None and isinstance(body, (dict, list))):
                content["json"] = body
            else:
                content["content"] = body if isinstance(body, str) else json.dumps(body)
        except FormValueError as exc:
            where = ("body", exc.field) if exc.field else ("body",)
            raise _rejected(ctx, where, f"{'.'.join(where)} {exc}" if exc.field else str(exc)) from None
        timeout = httpx.Timeout(connect=spec.timeout.connect, read=None, write=spec.timeout.connect, pool=spec.timeout.connect)
        try:
            return ctx.http.build_request(method, url, headers=headers, params=params, timeout=timeout, **content)
        except (httpx.InvalidURL, UnicodeError, TypeError, ValueError) as exc:
            raise _rejected(ctx, ("body",), _reason(exc)) from None

    def _event_reader(self, ctx: RunContext, shown: str, whole: list[bool], usage: list[Any]) -> Callable[[str], Any]:
        """Per upstream event: `_DONE` for `data: [DONE]`, else the value `output:` extracts
        from it, or `_NOTHING` for an event that carries none (vLLM's role and finish chunks)
        or an empty one; `whole[0]` is set once a chunk carries a finish_reason, `usage[0]` to
        the `usage` of a chunk without output (OpenAI's last chunk with `include_usage`; never
        looked for in a chunk that carries a token). One call per token: parsing, the end
        check and extracting are inlined here."""
        node_id = ctx.node_id
        walk = self._output_walker(ctx)
        if self.spec.stream_format != "json":
            extract = self._extractor(ctx)
            return lambda data: _DONE if data == "[DONE]" else extract(data)
        if walk is None:
            extract = self._extractor(ctx)
            walk = lambda chunk: extract(chunk)  # noqa: E731  (returns _NOTHING, never MISSING)
        scan = _scan_json
        dict_, list_ = dict, list

        def event(data: str) -> Any:
            if data == "[DONE]":
                return _DONE
            try:
                chunk, end = scan(data, 0)
            except StopIteration:  # not a JSON value at 0 (leading space, say): the slow way
                chunk, end = _loads(node_id, shown, data), len(data)
            if end != len(data) and data[end:].strip():
                raise UpstreamError(node_id, f"{shown}: a stream chunk is not JSON: {data[:120]!r}")
            if not whole[0] and chunk.__class__ is dict_:
                choices = chunk.get("choices")
                if choices.__class__ is list_:
                    for choice in choices:
                        if choice.__class__ is dict_ and choice.get("finish_reason"):
                            whole[0] = True
            value = walk(chunk)
            if value is MISSING or value is None or value == "" or value is _NOTHING:
                if chunk.__class__ is dict_ and "usage" in chunk:
                    usage[0] = chunk["usage"]
                return _NOTHING
            return value

        return event

    def _output_walker(self, ctx: RunContext) -> Callable[[Any], Any] | None:
        """For `output: ${response[].a.b}` (no type, no default): a walk of that path."""
        compiled = ctx.fields.get("output") if self.spec.output is not None else None
        if compiled is None or not isinstance(compiled.source, str) or len(compiled.templates) != 1:
            return None
        plain = compiled.templates[0][1].plain_path()
        if plain is None or plain[0] != "response[]":
            return None
        return path_walker(plain[1])

    def _extractor(self, ctx: RunContext) -> Callable[[Any], Any]:
        """Per chunk: the `output:` value, or `_NOTHING` for a chunk that does not carry it
        or carries an empty one."""
        if self.spec.output is None:
            return lambda chunk: chunk
        compiled = ctx.fields["output"]
        templates = compiled.templates
        scope = ctx.scope
        if isinstance(compiled.source, str) and len(templates) == 1:
            template = templates[0][1]

            def one_template(chunk: Any) -> Any:
                scope["response[]"] = chunk
                value = template.render_or(scope, _NOTHING)
                return _NOTHING if value is None or value == "" else value

            return one_template

        def general(chunk: Any) -> Any:
            try:
                value = ctx.resolve("output", {"response[]": chunk, "response": chunk})
            except MissingValueError:
                return _NOTHING
            return _NOTHING if value is None or value == "" else value

        return general

    async def _whole(self, ctx: RunContext, shown: str, response: httpx.Response, usage: list[Any]) -> Chunks:
        body = await self._body(ctx, shown, response, usage)
        if self.spec.output is None:
            yield body
            return
        yield ctx.resolve("output", {"response": body})

    async def _body(self, ctx: RunContext, shown: str, response: httpx.Response, usage: list[Any] | None = None) -> Any:
        """The whole body as a value: parsed JSON, text, or base64 text for a binary one."""
        async with asyncio.timeout(self.spec.timeout.idle):
            raw = await response.aread()
        content_type = response.headers.get("content-type", "")
        if _is_binary(content_type):
            # audio, images, archives: the value is the body's base64 text (what a JSON
            # answer and a later `as audio;base64` carry), never bytes decoded as text
            return base64.b64encode(raw).decode("ascii")
        text = raw.decode(_charset(response), errors="replace")
        if "json" not in content_type:
            return text
        try:
            body = json.loads(text)
        except ValueError:  # a JSON body that does not parse was cut short, or is broken
            raise UpstreamError(ctx.node_id, f"{shown}: the JSON body does not parse (cut short?): {clip(text, 120)!r}") from None
        if usage is not None and body.__class__ is dict:
            usage[0] = body.get("usage")
        return body


def _is_binary(content_type: str) -> bool:
    """True for a body that is not text: anything but text/*, JSON, XML, JavaScript and
    form data (a body without a content type is taken as text)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not kind or kind.startswith("text/"):
        return False
    return not any(mark in kind for mark in ("json", "xml", "javascript", "x-www-form-urlencoded"))


#: header names are tokens; values are visible ASCII, spaces and tabs (no line breaks, no NUL)
_HEADER_SAFE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE_SAFE = re.compile(r"[\t\x20-\x7e]*")


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


#: the C scanner behind `json.loads`, called without its two Python frames and two regex
#: matches per call: `(value, end)` for the JSON value at an index, StopIteration if none
_scan_json = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed types its argument oddly


def _loads(node_id: str, shown: str, data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise UpstreamError(node_id, f"{shown}: a stream chunk is not JSON: {data[:120]!r}") from None


def _charset(response: httpx.Response) -> str:
    """The body's charset from its Content-Type (utf-8 when it names none, or one Python
    does not know). `response.encoding` says the same, through an `email.message` parse
    that costs more than all the rest of reading a short answer."""
    content_type = response.headers.get("content-type", "")
    at = content_type.lower().find("charset=")
    if at < 0:
        return "utf-8"
    name = content_type[at + 8 :].split(";", 1)[0].strip().strip('"').strip("'")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"


@functools.lru_cache(maxsize=256)
def _url(text: str) -> httpx.URL:
    """A URL parsed once: most nodes send every run to the same URL."""
    return httpx.URL(text)


def _unanswered(exc: httpx.HTTPError) -> bool:
    """No byte of an answer came: the connection could not be made, or broke before the
    response began (a replica that died with the request on its way). Such a request may go
    to another replica; one whose answer had begun never is."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError))


def _not_sent(exc: httpx.HTTPError) -> bool:
    """The connection could not be made: the request never reached the server. (A connection
    lost after the request went out is not retried: the server may be generating already.)"""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))


async def _pause(ctx: RunContext, retry: RetrySpec, attempt: int, error: UpstreamError) -> None:
    wait = retry.wait(attempt)
    ctx.report("retrying", attempt=attempt + 1, wait_ms=round(wait * 1000), error=error.message)
    await asyncio.sleep(wait)


async def _drain(body: AsyncIterator[bytes]) -> None:
    """After `[DONE]`, read the (tiny) rest of the body so the connection goes back to the
    pool instead of being closed: a new TCP connect per run costs ~1 ms TTFT."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(0.05):
            async for _ in body:
                pass


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
