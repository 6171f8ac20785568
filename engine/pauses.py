"""Pauses: a run waiting for a person's answer (a `pause` node; model-compose's `interrupt:`).

A pause node asks its run's `PauseBoard` to wait; the board is the run record's (a run has
one owner, `RunRecord`), so `GET /runs/{id}` reports what the run waits for and a resume
(`POST /runs/{id}/resume`, model-compose's `POST /tasks/{id}/resume`) answers it. Every
pause waits at most its `timeout`; cancelling the run cancels the wait like any other.
Several branches of one run may pause at once; each is answered by its node (or its job).

    >>> import asyncio
    >>> async def demo():
    ...     board = PauseBoard()
    ...     waiting = asyncio.ensure_future(board.wait(Pause("review", "ok?", None, timeout=5)))
    ...     await asyncio.sleep(0)
    ...     shown = board.current().as_dict()["message"]
    ...     board.answer("r1", {"approved": True})
    ...     return shown, await waiting, board.current()
    >>> asyncio.run(demo())
    ('ok?', {'approved': True}, None)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import NotPaused

#: seconds a pause waits for its answer unless its `timeout:` says otherwise: a working day's
#: hour is long enough for a person at hand to review, short enough that a forgotten run does
#: not hold its workflow's concurrency slot for ever
DEFAULT_PAUSE_TIMEOUT = 3600.0
#: the longest `timeout:` a pause may ask for (a week)
MAX_PAUSE_TIMEOUT = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Pause:
    """What a paused run shows the person who answers it."""

    node: str
    message: str | None
    metadata: Any
    timeout: float = DEFAULT_PAUSE_TIMEOUT
    #: model-compose's words: the job it stands for, and `before` or `after` it
    job: str | None = None
    phase: str | None = None
    since: float = field(default_factory=time.time)
    #: why an answer cannot replace what passes on (None: it can); the pause then only
    #: takes a null answer, to go on
    no_answer_because: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "job_id": self.job,
            "phase": self.phase,
            "message": self.message,
            "metadata": self.metadata,
            "since": self.since,
            "expires_at": self.since + self.timeout,
            "takes_answer": self.no_answer_because is None,
        }

    def describe(self) -> str:
        """How an error names it: `the interrupt before job 'x'`, or `the pause 'review'`."""
        if self.job is not None:
            return f"the interrupt {self.phase or 'at'} job '{self.job}'"
        return f"the pause '{self.node}'"


class PauseBoard:
    """The pauses of one run in flight, oldest first."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[Pause, asyncio.Future[Any]]] = {}
        #: set while at least one pause waits (what a caller that waits for "paused or
        #: finished" watches)
        self.paused = asyncio.Event()

    def current(self) -> Pause | None:
        """The oldest pause still waiting, or None."""
        return next(iter(self._waiting.values()))[0] if self._waiting else None

    async def wait(self, pause: Pause) -> Any:
        """Wait for `pause`'s answer (None: go on unchanged). Raises TimeoutError after its
        timeout; a cancellation takes the pause off the board as well."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[pause.node] = (pause, future)
        self.paused.set()
        try:
            async with asyncio.timeout(pause.timeout):
                return await future
        finally:
            self._waiting.pop(pause.node, None)
            if not self._waiting:
                self.paused.clear()

    def answer(self, run_id: str, answer: Any, *, node: str | None = None, job: str | None = None) -> Pause:
        """Give the pause at `node` (or `job`; else the oldest) its answer. NotPaused names
        what is wrong when there is no such pause."""
        if not self._waiting:
            raise NotPaused(run_id, f"run '{run_id}' is not paused", hint="GET the run: only a paused run takes an answer")
        for pause, future in self._waiting.values():
            if (node is None or pause.node == node) and (job is None or pause.job == job):
                if answer is not None and pause.no_answer_because is not None:
                    raise NotPaused(run_id, f"{pause.describe()} takes no answer: {pause.no_answer_because}",
                                    hint="resume it without an answer to go on, or cancel the run")
                del self._waiting[pause.node]  # answered: off the board now, not when its waiter wakes
                if not self._waiting:
                    self.paused.clear()
                if not future.done():
                    future.set_result(answer)
                return pause
        waiting = ", ".join(f"job '{p.job}'" if job is not None else f"node '{p.node}'" for p, _ in self._waiting.values())
        asked = f"job '{job}'" if job is not None else f"node '{node}'"
        raise NotPaused(run_id, f"run '{run_id}' is not paused at {asked}; it waits at {waiting}")


__all__ = ["DEFAULT_PAUSE_TIMEOUT", "MAX_PAUSE_TIMEOUT", "Pause", "PauseBoard"]
