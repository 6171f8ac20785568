"""The jobs waiting for an HTTP callback, by identity: the one owner of callback waits.

A request node with `completion:` says whom it waits for (`expect(identity)`) *before* its
request goes out, so a callback that arrives while the request is still on its way (the
upstream answered through the callback before its own response) is kept, not lost. The
listener hands each callback in with `deliver(identity, outcome)`; a callback for an
identity nobody waits for is refused (the listener answers 404), and so is a second
callback for the same identity.

    >>> import asyncio
    >>> async def demo():
    ...     waits = CallbackWaits()
    ...     wait = waits.expect("task-1")
    ...     early = waits.deliver("task-1", Delivered(result={"ok": 1}))  # before anyone awaits
    ...     unknown = waits.deliver("task-2", Delivered(result=None))
    ...     try:
    ...         waits.expect("task-1")  # one job per identity
    ...     except ValueError as exc:
    ...         twice = str(exc)
    ...     return early, unknown, await waits.outcome(wait, timeout=1.0), twice
    >>> asyncio.run(demo())
    (True, False, {'ok': 1}, "another job already waits for a callback with identity 'task-1'")
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Delivered:
    """What a callback brought: its result, or why the upstream says the task failed."""

    result: Any = None
    #: the callback's status matched `fail_when`: the waiting job fails with this
    failure: str | None = None


class CallbackTimeout(Exception):
    """No callback for the identity came within the timeout."""


class CallbackFailed(Exception):
    """The callback said the task failed (its status matched `fail_when`)."""


@dataclass
class Wait:
    identity: str
    future: asyncio.Future[Delivered]


class CallbackWaits:
    def __init__(self) -> None:
        self._waits: dict[str, Wait] = {}

    def expect(self, identity: str) -> Wait:
        """Register a wait for `identity`; ValueError when another job waits for it already
        (two jobs waiting for one identity could not both be told)."""
        if identity in self._waits:
            raise ValueError(f"another job already waits for a callback with identity '{identity}'")
        wait = Wait(identity, asyncio.get_running_loop().create_future())
        self._waits[identity] = wait
        return wait

    def deliver(self, identity: str, outcome: Delivered) -> bool:
        """Hand a callback to the job waiting for `identity`: False when none is (unknown, or
        told already)."""
        wait = self._waits.get(identity)
        if wait is None or wait.future.done():
            return False
        wait.future.set_result(outcome)
        return True

    async def outcome(self, wait: Wait, *, timeout: float) -> Any:
        """The callback's result, once it has come (at once when it came early). Raises
        CallbackTimeout, or CallbackFailed for a callback that reported a failure. The wait is
        forgotten however this ends."""
        try:
            async with asyncio.timeout(timeout):
                delivered = await asyncio.shield(wait.future)
        except TimeoutError:
            raise CallbackTimeout(f"no callback for identity '{wait.identity}' within {timeout:g}s") from None
        finally:
            self.forget(wait)
        if delivered.failure is not None:
            raise CallbackFailed(delivered.failure)
        return delivered.result

    def forget(self, wait: Wait) -> None:
        """Drop `wait` (its job ended or gave up): a later callback for it is unknown."""
        if self._waits.get(wait.identity) is wait:
            del self._waits[wait.identity]
        if not wait.future.done():
            wait.future.cancel()

    def waiting(self) -> list[str]:
        """The identities waited for now."""
        return [identity for identity, wait in self._waits.items() if not wait.future.done()]

    def close(self, reason: str) -> None:
        """The listener stops: every job still waiting fails with `reason`."""
        for wait in list(self._waits.values()):
            if not wait.future.done():
                wait.future.set_result(Delivered(failure=reason))
