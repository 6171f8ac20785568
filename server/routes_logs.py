"""A service's log over HTTP, under the API's `base_path` (and the web UI's port, which mounts
the API): what `flowctl logs` prints, for the UI's log pane and for scripts.

    GET {base_path}/services/{node}/logs?tail=100              JSON: {"node", "lines": [...]}
    GET {base_path}/services/{node}/logs?tail=100&follow=1     SSE: the last lines, then each
                                                               new one as it is written

`node` is one of the flow's service ids, or `flowctl` (flowctl's own log); anything else is
404 with a did-you-mean (a path is never read). `tail` is 0..10000 (default 100). Each line
is its text without the file's time stamp (`timestamps=1` keeps it in front, as in the file).

SSE framing: one event per line, `data: <line>` (a line never holds a line break; a bare CR
is dropped); `event: rotated` (data: the node id) when the file was rotated or truncated
since the last line; a `: keep-alive` comment after a quiet while. The stream ends when
flowctl stops; a client that reconnects gets the tail again. Reading is `engine/logs.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from litestar import get
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import ASGIApp

from ..engine.errors import BadRequest
from ..engine.logs import LogLine, LogSource, Rotated, pick_sources
from ..engine.logs import follow as follow_log
from ..engine.logs import tail as tail_log
from .routes_api import FromPath, FromQuery, NamedDependency, ServerContext
from .sse import HEADERS, KEEP_ALIVE

#: the most lines one request may ask for
MAX_TAIL = 10_000


def _text(line: LogLine, timestamps: bool) -> str:
    text = line.text.replace("\r", "")
    return f"{line.stamp} {text}" if timestamps and line.stamp else text


@get("/services/{node:str}/logs", sync_to_thread=False)
def service_logs(ctx: NamedDependency[ServerContext], node: FromPath[str], tail: FromQuery[int] = 100, follow: FromQuery[bool] = False, timestamps: FromQuery[bool] = False) -> ASGIApp:
    if not 0 <= tail <= MAX_TAIL:
        raise BadRequest(f"`tail` must be 0..{MAX_TAIL}", field="tail", status=422)
    host = ctx.host
    source = pick_sources(host.state_dir, [node], known=list(host.flow.services))[0]  # a service with replicas: its first (`llm.1` names another)
    if not follow:
        body = {"node": source.name, "lines": [_text(line, timestamps) for line in tail_log(source, tail)]}
        return ASGIResponse(body=json.dumps(body, ensure_ascii=False).encode(), media_type="application/json")
    # Litestar's streaming answer: it cancels the generator when the client goes away
    headers = {name.decode(): value.decode() for name, value in HEADERS}
    media_type = headers.pop("content-type")
    return ASGIStreamingResponse(iterator=_events(ctx, source, tail, timestamps), headers=headers, media_type=media_type)


async def _events(ctx: ServerContext, source: LogSource, count: int, timestamps: bool) -> AsyncIterator[bytes]:
    """The SSE stream: the tail, then new lines; ends when flowctl stops."""
    stream = follow_log(source, count)
    queue: asyncio.Queue[LogLine | Rotated | None] = asyncio.Queue(maxsize=1000)

    async def pump() -> None:
        try:
            async for item in stream:
                await queue.put(item)
        finally:
            await queue.put(None)

    loop = asyncio.get_running_loop()
    pumping = loop.create_task(pump())
    last_write = loop.time()
    try:
        while not ctx.host.stopping:
            try:  # wake once a second at least, to end when flowctl stops
                item = await asyncio.wait_for(queue.get(), timeout=min(ctx.keepalive, 1.0))
            except TimeoutError:
                if loop.time() - last_write >= ctx.keepalive:
                    last_write = loop.time()
                    yield KEEP_ALIVE
                continue
            last_write = loop.time()
            if item is None:
                return
            if isinstance(item, Rotated):
                yield f"event: rotated\ndata: {item.source}\n\n".encode()
            else:
                yield f"data: {_text(item, timestamps)}\n\n".encode()
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
        await stream.aclose()


LOG_HANDLERS = [service_logs]

__all__ = ["LOG_HANDLERS", "MAX_TAIL", "service_logs"]
