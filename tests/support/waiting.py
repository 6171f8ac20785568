"""Wait on a condition with a deadline, never on a fixed sleep.

``wait_until(predicate)`` polls ``predicate`` every ``interval`` seconds until it returns a
truthy value (which is returned) or ``timeout`` seconds pass, then raises AssertionError with
``message`` (a string, or a callable evaluated only on failure, e.g. to attach a log tail).
Exceptions listed in ``ignore`` count as "not yet" (e.g. ``httpx.TransportError`` while a
server is still starting); the last one is quoted in the failure message. Any other
exception propagates at once, so a predicate can fail fast (e.g. "the process exited").
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

Message = str | Callable[[], str] | None


def _fail(predicate: Any, timeout: float, message: Message, last_exc: BaseException | None) -> AssertionError:
    if callable(message):
        text = message()
    elif message:
        text = message
    else:
        text = f"condition {getattr(predicate, '__name__', predicate)!r} not met"
    text = f"{text} (waited {timeout:g}s)"
    if last_exc is not None:
        text += f"; last error: {last_exc!r}"
    return AssertionError(text)


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: Message = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate()`` until truthy; return its value. AssertionError on the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as e:
            last_exc, result = e, None
        if result:
            return result
        now = time.monotonic()
        if now >= deadline:
            raise _fail(predicate, timeout, message, last_exc)
        time.sleep(min(interval, deadline - now))


async def async_wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: Message = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Like :func:`wait_until`; ``predicate`` may be sync or return an awaitable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
        except ignore as e:
            last_exc, result = e, None
        if result:
            return result  # type: ignore[return-value]
        now = loop.time()
        if now >= deadline:
            raise _fail(predicate, timeout, message, last_exc)
        await asyncio.sleep(min(interval, deadline - now))
