"""The SSE readers: bytes as they arrive (split anywhere) give the same events as lines."""

from __future__ import annotations

import random

from flowctl.nodes.sse_parser import iter_sse_data, iter_sse_data_bytes

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


async def test_lines_reader() -> None:
    lines = STREAM.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n")
    assert await _collect(iter_sse_data(_aiter(lines))) == EXPECTED


async def test_bytes_reader_whole() -> None:
    assert await _collect(iter_sse_data_bytes(_aiter([STREAM]))) == EXPECTED


async def test_bytes_reader_split_anywhere() -> None:
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        pieces = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)])]
        assert await _collect(iter_sse_data_bytes(_aiter(pieces))) == EXPECTED, pieces


async def test_pending_data_at_the_end_is_dispatched() -> None:
    assert await _collect(iter_sse_data_bytes(_aiter([b"data: last"]))) == ["last"]
