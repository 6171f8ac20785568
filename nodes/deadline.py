"""Timeouts for a long stream without a timer per chunk.

`asyncio.timeout()` around every read costs a few microseconds per token (a timer armed and
cancelled each time). `WaitDeadline` keeps one timer for the whole stream: each wait only
records when it began, and the timer, when it fires, checks whether the current wait has
gone on too long. Time the consumer spends with a chunk (writing it to a slow client, say)
is not counted: only waiting on the upstream is.

    deadline = WaitDeadline(first=300, idle=60)
    try:
        while True:
            deadline.begin()
            try:
                chunk = await anext(chunks)
            except asyncio.CancelledError:
                if deadline.expired(): raise TimeoutError from None
                raise
            deadline.end()
            deadline.flowing()
            yield chunk
    finally:
        deadline.close()
"""

from __future__ import annotations

import asyncio


class WaitDeadline:
    def __init__(self, first: float, idle: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._limit = first
        self._idle = idle
        self._since = self._loop.time()
        self._waiting = False
        self._fired = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self._since + first, self._check)

    @property
    def limit(self) -> float:
        """The limit of the current (or last) wait, in seconds."""
        return self._limit

    def begin(self) -> None:
        self._since = self._loop.time()
        self._waiting = True

    def end(self) -> None:
        self._waiting = False

    def flowing(self) -> None:
        """The first output arrived: from now on each wait gets the idle limit."""
        if self._limit != self._idle:
            self._limit = self._idle
            if self._handle is not None:  # the timer was armed for the (longer) first limit
                self._handle.cancel()
                self._handle = self._loop.call_at(self._loop.time() + self._idle, self._check)

    def expired(self) -> bool:
        """True when a cancellation came from this deadline (and takes it back)."""
        if not self._fired:
            return False
        if self._task is not None:
            self._task.uncancel()
        return True

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        now = self._loop.time()
        due = self._since + self._limit
        if self._waiting and now >= due and self._task is not None and not self._task.done():
            self._fired = True
            self._handle = None
            self._task.cancel()  # the task is suspended in the wait: that is where it lands
            return
        self._handle = self._loop.call_at(due if self._waiting and due > now else now + self._limit, self._check)
