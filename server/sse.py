"""SSE framing (WHATWG "server-sent events"), as pure functions from values to bytes.

One event per chunk, `id: <seq>` then `data: <text>`; a chunk holding line breaks (`\\n`,
`\\r\\n` or `\\r`) becomes several `data:` lines, which a client joins back with `\\n`. The
stream ends with `event: done` (or `event: error` after a failure); a comment line keeps an
idle connection open.

    >>> encode_chunk(1, "Hello")
    b'id: 1\\ndata: Hello\\n\\n'
    >>> encode_chunk(2, "a\\nb")
    b'id: 2\\ndata: a\\ndata: b\\n\\n'

`encode_chunk` runs once per token, so it does no JSON work and allocates one bytes object
on the common path (no line break in the chunk).
"""

from __future__ import annotations

import json
from typing import Any

#: a comment line between two events. No blank line after it: a blank line would end an
#: "event" without data, which some clients (httpx-sse, once an id was seen) hand on as an
#: empty message; the next event's own blank line ends it instead.
KEEP_ALIVE = b": keep-alive\n"

#: response headers of every SSE answer (proxies must neither buffer nor cache it)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


def encode_chunk(seq: int, text: str) -> bytes:
    """One chunk as one SSE event with id `seq`."""
    if "\n" in text or "\r" in text:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return (f"id: {seq}\n" + "".join([f"data: {line}\n" for line in lines]) + "\n").encode()
    return f"id: {seq}\ndata: {text}\n\n".encode()


def encode_event(event: str, data: Any) -> bytes:
    """A named event whose data is `data` as compact JSON (one line: JSON escapes line breaks)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


def done_event(run_id: str, status: str, chunks: int, elapsed_ms: int, usage: dict[str, int] | None = None) -> bytes:
    data: dict[str, Any] = {"run_id": run_id, "status": status, "chunks": chunks, "elapsed_ms": elapsed_ms}
    if usage is not None:
        data["usage"] = usage
    return encode_event("done", data)


def error_event(message: str, **extra: Any) -> bytes:
    return encode_event("error", {"message": message, **extra})


__all__ = ["HEADERS", "KEEP_ALIVE", "done_event", "encode_chunk", "encode_event", "error_event"]
