"""Run records: what `GET /runs/{id}` reports, and the handle that cancels or fails a run."""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from typing import Any


class RunStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
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
    #: set once the run has ended, whatever the way
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _task: asyncio.Task[Any] | None = field(default=None, repr=False)
    _stop_reason: tuple[RunStatus, str | None] | None = field(default=None, repr=False)

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

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.id,
            "workflow_id": self.workflow,
            "status": self.status.value,
            "chunks": self.chunks,
            "created": self.created,
            "elapsed_ms": self.elapsed_ms,
            "error": self.error,
        }
