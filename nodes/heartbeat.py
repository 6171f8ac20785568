"""A heartbeat for a long step: `beat(elapsed seconds)` every `every` seconds while a block
runs, from a task of its own, so a step that blocks for minutes (a source build, a first
generation that warms a model up) is never silent. env-setup's steps and process-start's wait
for readiness use it.

    async with heartbeat(10.0, lambda elapsed: ctx.progress(f"building ({duration(elapsed)})")):
        await run_the_build()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable


@contextlib.asynccontextmanager
async def heartbeat(every: float, beat: Callable[[float], None]) -> AsyncIterator[None]:
    started = time.monotonic()

    async def ticking() -> None:
        while True:
            await asyncio.sleep(every)
            beat(time.monotonic() - started)

    ticker = asyncio.create_task(ticking())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


__all__ = ["heartbeat"]
