"""Server-sent events, read per the WHATWG rules: `data:` lines gather into one event,
a blank line dispatches it, comment lines (`:`) and other fields are skipped."""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

_EOL = re.compile(r"\r\n|\n|\r")


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


class SseDataSplitter:
    """The data of each event in a byte stream, fed as it arrives: `feed(bytes)` returns the
    events that read completed (usually one; none while an event is still partial), `end()`
    the one left when the stream ends.

    The same rules as `iter_sse_events`, applied to bytes (data only): lines end in `\\n`,
    `\\r\\n` or `\\r` (also when a `\\r\\n` is split over two reads), `data:` lines join with
    `\\n`, a blank line dispatches, comments and other fields are skipped, and data still
    pending when the body ends is dispatched. Each event's data is decoded once. A plain
    object, not a generator: a stream's reader calls it inline, with no frame per event.

        >>> split = SseDataSplitter()
        >>> split.feed(b"data: a\\n\\ndata: b"), split.feed(b"\\n\\n"), split.end()
        (['a'], ['b'], [])
    """

    __slots__ = ("_encoding", "_pending", "_cr")

    def __init__(self, encoding: str = "utf-8") -> None:
        self._encoding = encoding
        self._pending = b""
        self._cr = False  # the previous read ended on `\r` (already made `\n`): a leading `\n` is its pair

    def feed(self, chunk: bytes) -> list[str]:
        if self._cr:
            self._cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        pending = self._pending
        buf = pending + chunk if pending else chunk
        if b"\n\n" not in buf:
            self._pending = buf
            return []
        blocks = buf.split(b"\n\n")
        self._pending = blocks.pop()
        out = []
        encoding = self._encoding
        for block in blocks:
            if block[:5] == b"data:" and b"\n" not in block:  # the usual event: one data line
                out.append((block[6:] if block[5:6] == b" " else block[5:]).decode(encoding, "replace"))
                continue
            data = _block_data(block)
            if data is not None:
                out.append(data.decode(encoding, "replace"))
        return out

    def end(self) -> list[str]:
        pending, self._pending = self._pending, b""
        data = _block_data(pending) if pending else None
        return [] if data is None else [data.decode(self._encoding, "replace")]


class LineSplitter:
    """Non-empty lines of a byte stream (a newline-delimited body), fed as it arrives; the
    same `feed`/`end` shape as `SseDataSplitter`."""

    __slots__ = ("_decoder", "_pending")

    def __init__(self, encoding: str = "utf-8") -> None:
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._pending = ""

    def feed(self, chunk: bytes) -> list[str]:
        text = self._pending + self._decoder.decode(chunk)
        *lines, self._pending = _EOL.split(text)
        return [line for line in lines if line.strip()]

    def end(self) -> list[str]:
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return [rest] if rest.strip() else []


async def iter_sse_data_bytes(raw: AsyncIterator[bytes], encoding: str = "utf-8") -> AsyncIterator[str]:
    """Yield the data of each event in a byte stream (see `SseDataSplitter`)."""
    split = SseDataSplitter(encoding)
    async for chunk in raw:
        for data in split.feed(chunk):
            yield data
    for data in split.end():
        yield data


def _block_data(block: bytes) -> bytes | None:
    """The joined `data:` values of the lines of one event, or None if it has none."""
    values = []
    for line in block.split(b"\n"):
        if line[:5] == b"data:":
            values.append(line[6:] if line[5:6] == b" " else line[5:])
    return b"\n".join(values) if values else None
