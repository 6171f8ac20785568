"""The SSE readers: bytes as they arrive (split anywhere) give the same events as lines."""

from __future__ import annotations

import random

from flowctl.nodes.sse_parser import SseEvent, iter_sse_data_bytes, iter_sse_events

STREAM = (
    b": a comment\r\n"
    b"id: 1\r\ndata: {\"a\": 1}\r\n\r\n"
    b"event: x\ndata: two\ndata: lines\n\n"
    b"data: caf\xc3\xa9 \xe2\x9c\x93\r\r"
    b"data:no-space\n\n"
    b"retry: 10\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = ['{"a": 1}', "two\nlines", "café ✓", "no-space", "[DONE]"]


async def _aiter(items):
    for item in items:
        yield item


async def _collect(gen):
    return [item async for item in gen]


def test_lines_reader_keeps_event_names() -> None:
    lines = STREAM.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n")
    events = list(iter_sse_events(lines))
    assert [e.data for e in events] == EXPECTED
    assert events[1] == SseEvent("x", "two\nlines")
    assert {e.event for e in events[:1] + events[2:]} == {"message"}


async def test_bytes_reader_whole() -> None:
    assert await _collect(iter_sse_data_bytes(_aiter([STREAM]))) == EXPECTED


async def test_bytes_reader_split_anywhere() -> None:
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
        assert await _collect(iter_sse_data_bytes(_aiter(pieces))) == EXPECTED, pieces


async def test_pending_data_at_the_end_is_dispatched() -> None:
    assert await _collect(iter_sse_data_bytes(_aiter([b"data: last"]))) == ["last"]
