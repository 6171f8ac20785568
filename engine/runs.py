"""Run records: what `GET /runs/{id}` reports, and the one owner of a run's lifecycle.

A run is consumed by one task (the HTTP response, the CLI, a background task). The record
binds that task, and is the only thing that stops it from outside: `interrupt` notes why and
cancels the task; wherever the cancellation lands, the consumer asks `absorb_cancel` whether
it was this interruption (then the run ends with that status, and the task goes on) or a
cancellation of the task itself (then it propagates). `finish` closes the record whatever
the way the run ended.

    >>> record = RunRecord(id="r1", workflow="chat")
    >>> record.begin()
    >>> record.interrupt(RunStatus.CANCELLED, "cancelled")   # no task bound: nothing to cancel
    True
    >>> record.finish()                                       # ends as the interruption said
    >>> record.status.value, record.error, record.finished.is_set()
    ('cancelled', 'cancelled', True)
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from typing import Any

from .pauses import Pause, PauseBoard
from .usage import TokenUsage


class RunStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    #: waiting for a person's answer (a `pause` node; model-compose's `interrupt:`)
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


@dataclass
class RunRecord:
    id: str
    workflow: str
    status: RunStatus = RunStatus.QUEUED
    chunks: int = 0
    created: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)
    first_chunk_mono: float | None = None
    finished_mono: float | None = None
    error: str | None = None
    #: services this run depends on: a run fails at once when one of them goes down
    services: tuple[str, ...] = ()
    #: tokens its upstreams said they read and wrote (summed over the nodes that said), or None
    usage: TokenUsage | None = None
    #: set once the run has ended, whatever the way
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: what the run waits for a person's answer to, if anything (`pause`)
    pauses: PauseBoard = field(default_factory=PauseBoard, repr=False)
    _task: asyncio.Task[Any] | None = field(default=None, repr=False)
    _stop_reason: tuple[RunStatus, str | None] | None = field(default=None, repr=False)

    # -- lifecycle (the only code that changes a run's status) ------------------------------

    def bind(self, task: asyncio.Task[Any] | None) -> None:
        """`task` consumes the run: an `interrupt` cancels it."""
        self._task = task

    def begin(self) -> None:
        """The run got its slot and starts now."""
        self.status = RunStatus.RUNNING
        self.started_mono = time.monotonic()

    @property
    def elapsed_ms(self) -> int:
        end = self.finished_mono if self.finished_mono is not None else time.monotonic()
        return int((end - self.started_mono) * 1000)

    @property
    def time_to_first_chunk(self) -> float | None:
        return None if self.first_chunk_mono is None else self.first_chunk_mono - self.started_mono

    def interrupt(self, status: RunStatus, reason: str | None) -> bool:
        """Stop the run from outside (cancel, a service died, shutdown). The consuming task is
        cancelled and turns that into this status. False if the run is already over."""
        if self.status.finished or self._stop_reason is not None:
            return False
        self._stop_reason = (status, reason)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        return True

    def absorb_cancel(self) -> bool:
        """Called by the consuming task where a CancelledError reached it. True when the
        cancellation was this run's `interrupt` and nothing else: it is taken back
        (`Task.uncancel`) and the consumer goes on to end the run normally. False when the
        task itself is being cancelled (a client gone without an interrupt, the server being
        killed): the consumer must let the CancelledError propagate."""
        if self._stop_reason is None:
            return False
        task = asyncio.current_task()
        if task is not None and task.uncancel() > 0:
            return False  # cancelled for another reason as well
        return True

    async def pause(self, pause: Pause) -> Any:
        """A node of this run waits for a person's answer (`PauseBoard.wait`): the run shows
        as paused meanwhile."""
        self.status = RunStatus.PAUSED
        try:
            return await self.pauses.wait(pause)
        finally:
            if self.status is RunStatus.PAUSED and self.pauses.current() is None:
                self.status = RunStatus.RUNNING

    def resume(self, answer: Any, *, node: str | None = None, job: str | None = None) -> Pause:
        """Answer one of this run's pauses (`PauseBoard.answer`, which raises NotPaused)."""
        pause = self.pauses.answer(self.id, answer, node=node, job=job)
        if self.status is RunStatus.PAUSED and self.pauses.current() is None:
            self.status = RunStatus.RUNNING
        return pause

    def finish(self, status: RunStatus | None = None, error: str | None = None) -> None:
        """Close the record. `status` (and `error`) say how the run ended; without one, an
        unfinished run ends as its interruption said, else as cancelled (its consumer stopped
        reading). Sets `finished`; safe to call once per run, in a `finally`."""
        if status is not None:
            self.status, self.error = status, error
        elif not self.status.finished:
            if self._stop_reason is not None:
                self.status, self.error = self._stop_reason
            else:
                self.status, self.error = RunStatus.CANCELLED, self.error or "the consumer stopped reading"
        self._task = None
        self.finished_mono = time.monotonic()
        self.finished.set()

    @property
    def stop_reason(self) -> tuple[RunStatus, str | None] | None:
        """(status, reason) given to `interrupt`, or None."""
        return self._stop_reason

    def add_usage(self, usage: TokenUsage) -> None:
        """A node's upstream reported its token counts (once per node, its last report)."""
        self.usage = usage if self.usage is None else self.usage + usage

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "run_id": self.id,
            "workflow_id": self.workflow,
            "status": self.status.value,
            "chunks": self.chunks,
            "created": self.created,
            "elapsed_ms": self.elapsed_ms,
            "error": self.error,
        }
        if self.usage is not None:
            result["usage"] = self.usage.as_openai()
        pause = self.pauses.current()
        if pause is not None:
            result["pause"] = pause.as_dict()
        return result
