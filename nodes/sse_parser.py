"""Server-sent events, read per the WHATWG rules: `data:` lines gather into one event,
a blank line dispatches it, comment lines (`:`) and other fields are skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str


def iter_sse_events(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Events with their names from `lines` (already split, without line endings): what a
    client of flowctl's own stream needs (`message` chunks, then `done` or `error`)."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield SseEvent(event, "\n".join(data))
            event, data = "message", []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
        elif line.startswith("event:"):
            event = line[6:].strip() or "message"
        # comments, `id:` and `retry:` are not needed by any reader here
    if data:
        yield SseEvent(event, "\n".join(data))


async def iter_sse_data_bytes(raw: AsyncIterator[bytes], encoding: str = "utf-8") -> AsyncIterator[str]:
    """Yield the data of each event in a byte stream (a response body as it arrives).

    The same rules as `iter_sse_events`, applied to bytes (data only): lines end in `\\n`, `\\r\\n` or `\\r`
    (also when a `\\r\\n` is split over two reads), `data:` lines join with `\\n`, a blank
    line dispatches, comments and other fields are skipped, and data still pending when the
    body ends is dispatched. Each event's data is decoded once. One network read that
    carries several events yields them all without reading again.
    """
    pending = b""
    cr = False  # the previous read ended on `\r` (already made `\n`): a leading `\n` is its pair
    async for chunk in raw:
        if cr:
            cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = pending + chunk if pending else chunk
        if b"\n\n" not in buf:
            pending = buf
            continue
        blocks = buf.split(b"\n\n")
        pending = blocks.pop()
        for block in blocks:
            if block[:5] == b"data:" and b"\n" not in block:  # the usual event: one data line
                value = block[6:] if block[5:6] == b" " else block[5:]
                yield value.decode(encoding, "replace")
                continue
            data = _block_data(block)
            if data is not None:
                yield data.decode(encoding, "replace")
    if pending:
        data = _block_data(pending)
        if data is not None:
            yield data.decode(encoding, "replace")


def _block_data(block: bytes) -> bytes | None:
    """The joined `data:` values of the lines of one event, or None if it has none."""
    values = []
    for line in block.split(b"\n"):
        if line[:5] == b"data:":
            values.append(line[6:] if line[5:6] == b" " else line[5:])
    return b"\n".join(values) if values else None
