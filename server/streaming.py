"""Answer one run over HTTP: as an SSE stream, or collected into one JSON body.

`RunResponse` is a raw ASGI app a route handler returns. It drives `host.stream(run)` in the
request's own task (no task per chunk, no queue between the engine and the socket) and
writes chunks to the ASGI `send` as soon as they exist; chunks that come ready back to back
(a burst one network read brought) go out in one write (`ready_chunks.anext_or_flush`):

- A watcher task (one per response) waits on `receive()`. When the client goes away it
  interrupts the run (`record.interrupt`), which cancels this task wherever it waits; the
  engine closes its iterators and with them the upstream HTTP request. For SSE it also
  sends a `: keep-alive` comment when nothing was written for `keepalive` seconds.
- A run stopped from outside (`POST /runs/{id}/cancel`, a service going down, shutdown)
  ends the stream with `event: done` (status `cancelled`) or `event: error`.
- A run prepared with `events` carries node events: `event: node` between the chunks (SSE),
  or an `events` list in the collected JSON body.

`run_in_background` runs one with nobody listening (model-compose's
`wait_for_completion: false`), keeping the output for `GET /runs/{id}`.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from litestar.types import Receive, Scope, Send

from ..engine.errors import FlowctlError
from ..engine.host import FlowHost, PreparedRun
from ..engine.node_events import NodeEvent
from ..engine.runs import RunRecord, RunStatus
from ..engine.scheduler import chunk_text
from .errors import describe, log_unexpected
from .ready_chunks import anext_or_flush
from .sse import HEADERS, KEEP_ALIVE, done_event, encode_chunk, encode_event, error_event

#: a burst longer than this is written in parts (bounds the bytes held back, and the delay
#: of the burst's first chunk)
_MAX_EVENTS_PER_WRITE = 64

#: (record, output, error or None) -> (HTTP status, JSON body) for a collected run
Render = Callable[[RunRecord, Any, BaseException | None], tuple[int, Any]]


def collect_output(output_type: str, values: list[Any]) -> Any:
    """A run's chunks as one value: text streams joined, JSON streams as a list, a plain
    output as its one value."""
    if output_type == "stream/json":
        return values
    if output_type.startswith("stream/"):
        return "".join([v if v.__class__ is str else chunk_text(v) for v in values])
    if len(values) == 1:
        return values[0]
    if values and all(isinstance(v, str) for v in values):
        return "".join(values)
    return values if values else None


def output_size(output: Any) -> int:
    """About how many bytes an output holds (characters of its text)."""
    if output is None:
        return 0
    return len(output if output.__class__ is str else chunk_text(output))


def render_native(record: RunRecord, output: Any, error: BaseException | None) -> tuple[int, Any]:
    """The body of `POST /workflows/{id}/runs` answered as JSON."""
    body = {"run_id": record.id, "status": record.status.value, "output": output, "chunks": record.chunks, "elapsed_ms": record.elapsed_ms}
    if error is not None:
        status, err, _ = describe(error)
        return status, {**err, **body, "status": RunStatus.FAILED.value}
    if record.error:
        body["error"] = record.error
    if record.usage is not None:
        body["usage"] = record.usage.as_openai()
    return 200, body


class Framing(Protocol):
    """How a streamed run goes on the wire: the native SSE events, or OpenAI's chunk stream."""

    def opening(self) -> bytes:
        """Bytes before the first chunk (may be empty)."""

    def chunk(self, seq: int, text: str) -> bytes:
        """One chunk; runs once per token."""

    def closing(self, record: RunRecord, chunks: int, error: BaseException | None) -> bytes:
        """The end of the stream: success, failure (`error`, or the record's status)."""


class SseFraming:
    """flowctl's own SSE: `id:`/`data:` per chunk, then `event: done` or `event: error`."""

    def opening(self) -> bytes:
        return b""

    def chunk(self, seq: int, text: str) -> bytes:
        return encode_chunk(seq, text)

    def closing(self, record: RunRecord, chunks: int, error: BaseException | None) -> bytes:
        if isinstance(error, FlowctlError):
            return error_event(str(error), run_id=record.id)
        if error is not None:  # a bug: log it, tell the client only an id
            return error_event(f"internal error (id {log_unexpected(error)})", run_id=record.id)
        if record.status is RunStatus.FAILED:
            return error_event(record.error or "the run failed", run_id=record.id)
        return done_event(record.id, record.status.value, chunks, record.elapsed_ms, record.usage.as_openai() if record.usage is not None else None)


class JSONAnswer:
    """A tiny ASGI app answering one JSON body (so a handler can return either this or a run)."""

    __slots__ = ("headers", "payload", "status")

    def __init__(self, status: int, body: Any, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status = status
        self.payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.payload)).encode()), *self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.payload, "more_body": False})


class OutputStore:
    """Outputs of runs that ran with nobody listening, for `GET /runs/{id}`: the newest `keep`
    of them, and `max_bytes` of text at most (oldest dropped first). One run may collect
    `max_bytes // 8` (see `run_in_background`)."""

    def __init__(self, keep: int = 1000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._keep = keep
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0

    @property
    def max_run_bytes(self) -> int:
        return self.max_bytes // 8

    def __setitem__(self, run_id: str, output: Any) -> None:
        size = output_size(output)
        old = self._items.pop(run_id, None)
        if old is not None:
            self._bytes -= old[1]
        self._items[run_id] = (output, size)
        self._bytes += size
        while len(self._items) > self._keep or (self._bytes > self.max_bytes and len(self._items) > 1):
            _, (_, dropped) = self._items.popitem(last=False)
            self._bytes -= dropped

    def get(self, run_id: str, default: Any = None) -> Any:
        item = self._items.get(run_id)
        return default if item is None else item[0]

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._items


class RunResponse:
    """An ASGI app that runs `run` and answers with its output (see the module docstring)."""

    def __init__(
        self,
        host: FlowHost,
        run: PreparedRun,
        *,
        sse: bool,
        keepalive: float | None = 15.0,
        render: Render = render_native,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        framing: Framing | None = None,
    ) -> None:
        self.host = host
        self.framing = framing or SseFraming()
        self.run = run
        self.sse = sse
        self.keepalive = keepalive if sse and keepalive and keepalive > 0 else None
        self.render = render
        self.headers = ((b"x-run-id", run.record.id.encode()), *headers)
        self._last = 0.0
        self._busy = False  # the main task is writing (or has written the end): no keep-alive now
        self._gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        if self.sse:
            await send({"type": "http.response.start", "status": 200, "headers": [*HEADERS, *self.headers]})
        self._last = loop.time()
        watcher = loop.create_task(self._watch(receive, send))
        try:
            if self.sse:
                await self._stream(send)
            else:
                await self._collect(scope, receive, send)
        finally:
            watcher.cancel()

    # -- the two ways to answer --------------------------------------------------------------

    async def _stream(self, send: Send) -> None:
        record = self.run.record
        loop = asyncio.get_running_loop()
        framing = self.framing
        frame = framing.chunk
        stream = self.host.stream(self.run)
        seq = 0
        error: BaseException | None = None
        try:
            # encoded chunks not written yet: those that came ready at once (see ready_chunks)
            pending: list[bytes] = []
            opening = framing.opening()
            if opening:
                pending.append(opening)

            async def flush() -> None:
                if pending:
                    body = b"".join(pending)
                    pending.clear()
                    self._busy = True
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    self._busy = False
                    self._last = loop.time()

            try:
                while True:
                    try:
                        chunk = await anext_or_flush(stream, flush)
                    except StopAsyncIteration:
                        break
                    if chunk.__class__ is str:
                        text = chunk
                    elif chunk.__class__ is NodeEvent:
                        pending.append(encode_event("node", chunk.as_dict()))
                        continue
                    else:
                        text = chunk_text(chunk)
                    if not text:
                        continue
                    seq += 1
                    pending.append(frame(seq, text))
                    if len(pending) >= _MAX_EVENTS_PER_WRITE:
                        await flush()
            except asyncio.CancelledError:
                # interrupted while writing, not inside the engine: finish the run here
                if not record.absorb_cancel():
                    raise
                await stream.aclose()
            except Exception as exc:  # FlowctlError or a bug: the framing says it its way
                error = exc
            pending.append(framing.closing(record, seq, error))
            self._busy = True
            if not self._gone:
                await send({"type": "http.response.body", "body": b"".join(pending), "more_body": False})
        finally:
            await stream.aclose()

    async def _collect(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = self.run.record
        stream = self.host.stream(self.run)
        values: list[Any] = []
        events: list[dict[str, Any]] = []
        error: BaseException | None = None
        try:
            try:
                async for chunk in stream:
                    if chunk.__class__ is NodeEvent:
                        events.append(chunk.as_dict())
                        continue
                    values.append(chunk)
            except asyncio.CancelledError:
                if not record.absorb_cancel():
                    raise
                await stream.aclose()
            except FlowctlError as exc:
                error = exc
            except Exception as exc:
                error = exc
        finally:
            await stream.aclose()
        if self._gone:
            return
        output = collect_output(self.run.workflow.output_type, values)
        try:
            status, body = self.render(record, output, error)
        except Exception as exc:
            status, body, _ = describe(exc)
        if self.run.events and isinstance(body, dict):
            body["events"] = events
        await JSONAnswer(status, body, self.headers)(scope, receive, send)

    # -- the watcher -------------------------------------------------------------------------

    async def _watch(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[Any] = asyncio.ensure_future(receive())
        try:
            while True:
                timeout = None if self.keepalive is None else max(0.0, self._last + self.keepalive - loop.time())
                done, _ = await asyncio.wait((pending,), timeout=timeout)
                if done:
                    message = pending.result()
                    if message["type"] == "http.disconnect":
                        self._gone = True
                        self.run.record.interrupt(RunStatus.CANCELLED, "the client went away")
                        return
                    pending = asyncio.ensure_future(receive())
                    continue
                if self.keepalive is not None and not self._busy and loop.time() - self._last >= self.keepalive:
                    self._last = loop.time()
                    await send({"type": "http.response.body", "body": KEEP_ALIVE, "more_body": True})
        finally:
            pending.cancel()


def run_in_background(host: FlowHost, run: PreparedRun, outputs: OutputStore, tasks: set[asyncio.Task[Any]]) -> asyncio.Task[Any]:
    """Run with nobody listening; the output lands in `outputs[run_id]` when it ends."""

    async def consume() -> None:
        values: list[Any] = []
        size, limit = 0, outputs.max_run_bytes
        try:
            async for chunk in host.stream(run):
                values.append(chunk)
                size += output_size(chunk)
                if size > limit:  # nobody reads it as it comes: keep no more than this
                    values.clear()
                    run.record.interrupt(RunStatus.FAILED, f"the output passed {limit:,} bytes, the most a run without a listener keeps (wait_for_completion: false); stream it instead")
        except FlowctlError:
            pass  # the record says failed, with the message
        except Exception as exc:
            run.record.error = f"internal error (id {log_unexpected(exc)})"
        finally:
            outputs[run.record.id] = collect_output(run.workflow.output_type, values) if size <= limit else None

    task = asyncio.get_running_loop().create_task(consume(), name=f"flowctl-run-{run.record.id}")
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


__all__ = ["Framing", "JSONAnswer", "OutputStore", "RunResponse", "SseFraming", "collect_output", "render_native", "run_in_background"]
