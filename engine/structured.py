"""Structured concurrency, the one way flowctl runs things side by side: a task group whose
first failure cancels the rest and is raised as itself (not wrapped in an exception group).

    await run_together([fetch(a), fetch(b)])   # both at once; if `a` fails, `b` is cancelled
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any


async def run_together(coroutines: Iterable[Coroutine[Any, Any, Any]]) -> None:
    """Run every coroutine in one `asyncio.TaskGroup`. The first failure cancels the others
    (and waits until they have unwound, so whatever they held is released) and is raised.
    Cancelling the caller cancels them all."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as failed:
        raise first_error(failed) from None


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The error that started a task group's cancellation: the first one it collected."""
    first = group.exceptions[0]
    return first_error(first) if isinstance(first, BaseExceptionGroup) else first


__all__ = ["first_error", "run_together"]
