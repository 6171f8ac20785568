"""A run's record owns its lifecycle: checked on real tasks, without a server."""

from __future__ import annotations

import asyncio

from flowctl.engine.runs import RunRecord, RunStatus


async def _consume(record: RunRecord, started: asyncio.Event) -> str:
    """A consumer as FlowHost.stream is one: bound to the record, absorbing an interruption."""
    record.bind(asyncio.current_task())
    record.begin()
    try:
        started.set()
        await asyncio.Event().wait()  # a run that would go on for ever
    except asyncio.CancelledError:
        if not record.absorb_cancel():
            record.finish(RunStatus.CANCELLED, "the task itself was cancelled")
            raise
        record.finish()
        return "absorbed"
    return "not reached"


async def test_an_interrupt_cancels_the_bound_task_which_ends_the_run_with_its_status() -> None:
    record, started = RunRecord(id="r1", workflow="chat"), asyncio.Event()
    task = asyncio.create_task(_consume(record, started))
    await started.wait()
    assert record.interrupt(RunStatus.FAILED, "service 'llm' went down")
    assert await task == "absorbed" and not task.cancelled()
    assert (record.status, record.error, record.finished.is_set()) == (RunStatus.FAILED, "service 'llm' went down", True)
    assert not record.interrupt(RunStatus.CANCELLED, "too late"), "a finished run is not interrupted again"


async def test_a_cancellation_that_is_not_the_interrupt_propagates() -> None:
    record, started = RunRecord(id="r2", workflow="chat"), asyncio.Event()
    task = asyncio.create_task(_consume(record, started))
    await started.wait()
    record.interrupt(RunStatus.CANCELLED, "cancelled")
    task.cancel()  # the server is being killed as well
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert task.cancelled()
    assert record.status is RunStatus.CANCELLED and record.finished.is_set()


async def test_an_unbound_record_only_notes_the_reason() -> None:
    record = RunRecord(id="r3", workflow="chat")
    record.begin()
    record.bind(None)  # already failing: nothing to cancel
    assert record.interrupt(RunStatus.FAILED, "service 'llm' went down")
    record.finish(RunStatus.FAILED, "node 'chat': connection broke (service 'llm' went down)")
    assert record.error == "node 'chat': connection broke (service 'llm' went down)"
