"""`server/ready_chunks.anext_or_flush`: chunks that come ready at once are written together,
none is held back once the stream has to wait, and cancellation unwinds the stream as a
plain `await` would (its `finally` runs and it can still be closed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from flowctl.server.ready_chunks import anext_or_flush


class Source:
    """Yields `ready` chunks back to back, then waits on `gate` before each of `later`."""

    def __init__(self, ready: list[int], later: list[int], *, fail_after_wait: bool = False) -> None:
        self.ready, self.later = ready, later
        self.gate = asyncio.Event()
        self.fail_after_wait = fail_after_wait
        self.closed = False
        self.waiting = asyncio.Event()

    async def chunks(self) -> AsyncIterator[int]:
        try:
            for chunk in self.ready:
                yield chunk
            for chunk in self.later:
                self.waiting.set()
                await self.gate.wait()
                self.gate.clear()
                if self.fail_after_wait:
                    raise ValueError("upstream broke")
                yield chunk
        finally:
            self.closed = True


async def drain(stream: AsyncIterator[int], flush_log: list[list[int]], on_flush=None) -> list[int]:
    pending: list[int] = []
    seen: list[int] = []

    async def flush() -> None:
        if pending:
            flush_log.append(list(pending))
            pending.clear()
        if on_flush is not None:
            await on_flush()

    async with asyncio.timeout(5):  # a chunk held back would hang here
        while True:
            try:
                chunk = await anext_or_flush(stream, flush)
            except StopAsyncIteration:
                break
            seen.append(chunk)
            pending.append(chunk)
    if pending:
        flush_log.append(list(pending))
    return seen


async def test_a_burst_is_flushed_once_just_before_the_stream_waits() -> None:
    source = Source(ready=[0, 1, 2], later=[3, 4])
    flushes: list[list[int]] = []

    async def open_gate() -> None:  # the wait is over by the time the step resumes
        source.gate.set()

    assert await drain(source.chunks(), flushes, open_gate) == [0, 1, 2, 3, 4]
    assert flushes == [[0, 1, 2], [3], [4]]
    assert source.closed


async def test_a_step_that_really_waits_resumes_when_its_future_is_done() -> None:
    source = Source(ready=[0], later=[1, 2])
    flushes: list[list[int]] = []

    async def open_gate_later() -> None:  # set on a later loop turn, after the step yielded
        asyncio.get_running_loop().call_soon(source.gate.set)

    assert await drain(source.chunks(), flushes, open_gate_later) == [0, 1, 2]
    assert flushes == [[0], [1], [2]]


async def test_cancelled_while_flushing_unwinds_the_stream() -> None:
    source = Source(ready=[0, 1], later=[2])
    stuck = asyncio.Event()
    in_flush = asyncio.Event()

    async def slow_write() -> None:  # a client socket that does not drain
        in_flush.set()
        await stuck.wait()

    stream = source.chunks()
    task = asyncio.ensure_future(drain(stream, [], slow_write))
    await asyncio.wait_for(in_flush.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.closed, "the stream's finally did not run"
    await stream.aclose()  # not left 'already running'


async def test_cancelled_while_the_stream_waits_unwinds_it() -> None:
    source = Source(ready=[], later=[0])
    stream = source.chunks()
    task = asyncio.ensure_future(drain(stream, []))
    await asyncio.wait_for(source.waiting.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.closed
    await stream.aclose()


async def test_an_error_after_a_wait_reaches_the_reader() -> None:
    source = Source(ready=[0], later=[1], fail_after_wait=True)

    async def open_gate() -> None:
        source.gate.set()

    with pytest.raises(ValueError, match="upstream broke"):
        await drain(source.chunks(), [], open_gate)
    assert source.closed
