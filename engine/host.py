"""FlowHost: one served flow. It holds the current compiled graph (swapped whole on reload),
the supervisor of its services, the shared HTTP pool, and the runs in flight.

Every front door goes through it: the native API, the model-compose compatible route, MCP, the
OpenAI facade, the web UI, `flowctl run` (with or without a running `up`), hot reload and
metrics; none of them keep engine state of their own. `prepare` is the one admission check
(the workflow exists, its queue has room, the inputs cast, its services are up), `stream`
runs a prepared run, and the run's `RunRecord` owns its lifecycle.

    host = FlowHost(load_flow("flows/local_chat.yml"))
    await host.start()
    run = host.prepare(None, {"prompt": "Hi"})   # raises WorkflowNotFound / Busy / InputError / ServiceError
    async for chunk in host.stream(run):
        print(chunk, end="")
    await host.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..nodes.base import LogSink, PauseWaiter, ServiceState, ServiceStatus
from .errors import Busy, FlowctlError, FlowError, NotPaused, RunError, RunNotFound, ServiceError, ShuttingDown, WorkflowNotFound
from .graph import CompiledFlow, CompiledWorkflow
from .node_events import NodeEvent
from .paths import state_dir_for
from .pauses import Pause
from .runs import RunRecord, RunStatus
from .scheduler import WorkflowRun, new_http_client, run_workflow
from .spec import ServerSpec
from .supervisor import Supervisor
from .templating import validate_inputs

#: seconds between a service going down and the runs that use it being failed
SERVICE_DOWN_GRACE = 0.1


@dataclass
class PreparedRun:
    """A validated request for a run, bound to the graph that was current when it came in."""

    record: RunRecord
    flow: CompiledFlow
    workflow: CompiledWorkflow
    inputs: dict[str, Any]
    #: the run's stream carries a `NodeEvent` for each node's start, end, failure or skip
    events: bool = False
    #: the client's session (`session_id`), read as `${run.session}`; None when it gave none
    session: str | None = None


Listener = Callable[[str, dict[str, Any]], None]


def settings_fixed_at_start(server: ServerSpec) -> dict[str, Any]:
    """The server settings that take effect only when `up` starts (the sockets are bound and
    the apps built then); a reload that changes one is reported as "restart needed"."""
    return {"host": server.host, "port": server.port, "ui_port": server.ui_port, "base_path": server.base_path, "max_body_bytes": server.max_body_bytes, "mcp_path": server.mcp_path}


class FlowHost:
    def __init__(
        self,
        flow: CompiledFlow,
        *,
        state_dir: Path | None = None,
        log: LogSink | None = None,
        keep_runs: int = 1000,
        fixed_settings: Callable[[ServerSpec], dict[str, Any]] = settings_fixed_at_start,
        answerable: bool = True,
    ) -> None:
        self.flow = flow
        #: whether someone can answer a paused run (`up`'s API); `flowctl run` cannot
        self.answerable = answerable
        self.state_dir = state_dir or state_dir_for(flow.file)
        self._log = log
        self.supervisor = Supervisor(self.state_dir, on_change=self._service_changed, **({"log": log} if log else {}))
        self.http = new_http_client()
        self.runs: OrderedDict[str, RunRecord] = OrderedDict()
        self._keep_runs = keep_runs
        self._active: dict[str, RunRecord] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, int] = {}
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        #: the last reload that failed, shown on /ready and in the UI until a good one lands
        self.reload_error: FlowError | None = None
        self.reloads: dict[str, int] = {"ok": 0, "error": 0}
        #: callbacks for events: ("run.started"|"run.chunk"|"run.finished"|"service"|"reload", data)
        self.listeners: list[Listener] = []
        #: what `fixed_settings` gave for the flow served at start, and the settings a reload
        #: changed since that only a restart applies (on /ready, in the UI and the log)
        self._fixed_settings = fixed_settings
        self._started_with = fixed_settings(flow.spec.server)
        self.restart_needed: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, only: Iterable[str] | None = None, *, rebuild: bool = False) -> None:
        """Start the flow's services (or just `only` and what they need); `rebuild` sets
        their environments up again even where the stamp is current (`up --build`)."""
        await self.supervisor.start(self.flow, only, rebuild=rebuild)

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Take no new runs, let runs in flight finish for `drain_timeout` seconds, fail the
        rest, close the pool, stop the services."""
        self._closing = True
        drain = self.flow.server.drain_timeout if drain_timeout is None else drain_timeout
        try:
            if self._active:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), timeout=drain)
            self.interrupt_all("flowctl is shutting down")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=5.0)
        finally:
            try:  # idle keep-alive connections first, so the servers see clients leave cleanly
                await self.http.aclose()
            finally:
                await asyncio.shield(self.supervisor.stop())

    async def reload(self, flow: CompiledFlow) -> list[str]:
        """Swap in a new graph. Runs in flight keep the one they started with; services are
        restarted only where their own spec (or an upstream one) changed, and only once the
        runs in flight that use them have finished (up to `server.drain_timeout`; the rest
        are cut then, with that reason). Server settings apply at once (concurrency, queue,
        drain timeout, allowed hosts) or are listed in `restart_needed`."""
        self.flow = flow
        self.reload_error = None
        self._slots.clear()  # limits may have changed; runs in flight hold their own semaphore
        now = self._fixed_settings(flow.spec.server)
        self.restart_needed = [f"{name} ({self._started_with[name]} -> {value})" for name, value in now.items() if value != self._started_with.get(name)]
        restarted = await self.supervisor.reconcile(flow, drain=self._drain_runs_using)
        self.reloads["ok"] += 1
        self._emit("reload", {"result": "ok", "restarted": restarted})
        return restarted

    def reload_failed(self, error: FlowError) -> None:
        self.reload_error = error
        self.reloads["error"] += 1
        self._emit("reload", {"result": "error", "error": str(error)})

    # -- state -------------------------------------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        """What /ready answers: `ready` is true only when every service node is up."""
        statuses = self.supervisor.statuses()
        down = self.supervisor.not_ready(self.flow.services)
        services = {node_id: self._service_dict(node_id, statuses.get(node_id)) for node_id in self.flow.services}
        result: dict[str, Any] = {"ready": not down and not self._closing, "services": services}
        if down:
            result["not_ready"] = down
        degraded = self.supervisor.degraded(self.flow.services)
        if degraded:
            result["degraded"] = degraded
        if self._closing:
            result["not_ready"] = {**down, "flowctl": "shutting down"}
        if self.reload_error is not None:
            result["reload_error"] = str(self.reload_error)
        if self.restart_needed:
            result["restart_needed"] = list(self.restart_needed)
        return result

    @property
    def stopping(self) -> bool:
        """True once `stop` began: no new runs; long-lived answers (a followed log) end."""
        return self._closing

    @property
    def in_flight(self) -> int:
        return len(self._active)

    # -- runs --------------------------------------------------------------------------------

    def check(self, workflow_id: str | None, raw_inputs: Mapping[str, Any]) -> tuple[CompiledWorkflow, dict[str, Any]]:
        """What `prepare` checks before services: flowctl takes runs, the workflow exists, its
        queue has room (so a client gets 429, not a broken stream), the inputs cast. For a
        caller that must know before it starts the services (`flowctl run`)."""
        if self._closing:
            raise ShuttingDown("flowctl is shutting down")
        workflow = self.flow.workflow(workflow_id)
        if workflow is None:
            raise WorkflowNotFound(workflow_id or "(default)", list(self.flow.workflows))
        if self._queue_full(workflow):
            raise Busy(f"workflow '{workflow.id}' is at its concurrency limit and its queue is full", hint="retry later")
        return workflow, validate_inputs(workflow.inputs, raw_inputs)

    def prepare(self, workflow_id: str | None, raw_inputs: Mapping[str, Any], *, session: str | None = None) -> PreparedRun:
        """Admit a run request before anything runs: `check`, then the services it needs are
        up. Raises ShuttingDown, WorkflowNotFound, Busy, InputError, ServiceError."""
        flow = self.flow
        workflow, inputs = self.check(workflow_id, raw_inputs)
        down = self.supervisor.not_ready(workflow.services)
        if down:
            node, reason = next(iter(down.items()))
            raise ServiceError(node, f"not ready: {reason}")
        record = RunRecord(id=uuid.uuid4().hex[:16], workflow=workflow.id, services=workflow.services)
        self._remember(record)
        return PreparedRun(record=record, flow=flow, workflow=workflow, inputs=inputs, session=session)

    async def stream(self, run: PreparedRun) -> AsyncGenerator[Any, None]:
        """Run it, yielding output chunks. Waits for a concurrency slot first (Busy when the
        queue is full). Ends normally when interrupted with a status other than failed
        (`cancel`); raises RunError when a node fails or a service it needs goes down."""
        record, workflow = run.record, run.workflow
        record.bind(asyncio.current_task())
        slots = self._slot(workflow)
        acquired = False
        ended: tuple[RunStatus, str | None] | None = None  # None: closed from outside
        try:
            await self._acquire(workflow, slots)
            acquired = True
            record.begin()
            self._active[record.id] = record
            self._idle.clear()
            self._emit("run.started", {"run": record})
            lives = self.supervisor.lives(workflow.services)
            if run.events:
                async for chunk in self._with_events(run):
                    yield chunk
            else:
                # the per-token loop: straight from the output node (see WorkflowRun)
                engine = WorkflowRun(run.flow, workflow, run.inputs, run_id=record.id, http=self.http, service_outputs=self.supervisor.outputs, on_usage=record.add_usage, session=run.session, pools=self.supervisor.pools, pause=self._pause_waiter(record), callbacks=self.supervisor.callbacks)
                try:
                    chunks = await engine.open()
                    if chunks is not None:
                        try:
                            async for chunk in chunks:
                                if record.chunks == 0:
                                    record.first_chunk_mono = time.monotonic()
                                record.chunks += 1
                                yield chunk
                        except Exception as exc:
                            raise engine.named(exc) from exc
                finally:
                    await engine.close()
            await self.supervisor.check_lived(lives)
            ended = (RunStatus.SUCCEEDED, None)
        except asyncio.CancelledError:
            absorbed = record.absorb_cancel()
            ended = record.stop_reason or (RunStatus.CANCELLED, "the client went away")
            if not absorbed:
                raise
            if ended[0] is RunStatus.FAILED:
                raise RunError(workflow.output_node, ended[1] or "stopped") from None
        except RunError as exc:
            # failing already: from here an interrupt (the service that broke it going down)
            # only notes its reason; it must not cancel the explaining below
            record.bind(None)
            explained = await self.supervisor.explain(exc, record.services)
            ended = (RunStatus.FAILED, explained)
            if explained != str(exc):
                raise RunError(exc.node, explained.removeprefix(f"node '{exc.node}': ")) from None
            raise
        except FlowctlError as exc:
            ended = (RunStatus.FAILED, str(exc))
            raise
        finally:
            if acquired:
                slots.release()
            if ended is None:
                record.finish()  # the consumer stopped reading: the interruption's status, if any
            else:
                record.finish(*ended)
            self._active.pop(record.id, None)
            if not self._active:
                self._idle.set()
            self._emit("run.finished", {"run": record})

    async def _with_events(self, run: PreparedRun) -> AsyncGenerator[Any, None]:
        record = run.record
        chunks = run_workflow(run.flow, run.workflow, run.inputs, run_id=record.id, http=self.http, service_outputs=self.supervisor.outputs, events=True, on_usage=record.add_usage, session=run.session, pools=self.supervisor.pools, pause=self._pause_waiter(record), callbacks=self.supervisor.callbacks)
        try:
            async for chunk in chunks:
                if chunk.__class__ is not NodeEvent:
                    if record.chunks == 0:
                        record.first_chunk_mono = time.monotonic()
                    record.chunks += 1
                yield chunk
        finally:
            await chunks.aclose()

    def _pause_waiter(self, record: RunRecord) -> PauseWaiter | None:
        return record.pause if self.answerable else None

    def resume(self, run_id: str, answer: Any, *, node: str | None = None, job: str | None = None) -> Pause:
        """Answer the paused run `run_id` (at `node`, or `job`, else its oldest pause).
        RunNotFound or NotPaused say what is wrong."""
        record = self.runs.get(run_id)
        if record is None:
            raise RunNotFound(run_id)
        if record.status.finished:
            raise NotPaused(run_id, f"run '{run_id}' is not paused: it {record.status.value}")
        return record.resume(answer, node=node, job=job)

    def cancel(self, run_id: str) -> RunRecord | None:
        record = self.runs.get(run_id)
        if record is not None:
            record.interrupt(RunStatus.CANCELLED, "cancelled")
        return record

    def interrupt_all(self, reason: str) -> None:
        """Fail every run not finished yet, running or queued, with `reason` (shutdown)."""
        for record in list(self.runs.values()):
            record.interrupt(RunStatus.FAILED, reason)

    # -- internals ---------------------------------------------------------------------------

    async def _drain_runs_using(self, node_ids: Iterable[str]) -> int:
        """Wait until no run (queued or in flight) uses any of `node_ids`, for at most the
        served flow's `drain_timeout`. Returns how many still do."""
        wanted = set(node_ids)
        using = [record for record in self.runs.values() if not record.status.finished and wanted & set(record.services)]
        if using:
            waits = [asyncio.ensure_future(record.finished.wait()) for record in using]
            try:
                await asyncio.wait(waits, timeout=self.flow.server.drain_timeout)
            finally:
                for wait in waits:
                    wait.cancel()
        return sum(1 for record in using if not record.status.finished)

    def _slot(self, workflow: CompiledWorkflow) -> asyncio.Semaphore:
        slots = self._slots.get(workflow.id)
        if slots is None:
            limit = workflow.max_concurrency or self.flow.server.max_concurrency
            slots = self._slots[workflow.id] = asyncio.Semaphore(limit)
        return slots

    async def _acquire(self, workflow: CompiledWorkflow, slots: asyncio.Semaphore) -> None:
        if not slots.locked():
            await slots.acquire()
            return
        waiting = self._waiting.get(workflow.id, 0)
        if self._queue_full(workflow):  # filled up since `prepare` let it in
            raise Busy(f"workflow '{workflow.id}' has {waiting} runs waiting already", hint="retry later")
        self._waiting[workflow.id] = waiting + 1
        try:
            await slots.acquire()
        finally:
            self._waiting[workflow.id] -= 1

    def _queue_full(self, workflow: CompiledWorkflow) -> bool:
        slots = self._slot(workflow)
        return slots.locked() and self._waiting.get(workflow.id, 0) >= self.flow.server.max_queue

    def _remember(self, record: RunRecord) -> None:
        self.runs[record.id] = record
        while len(self.runs) > self._keep_runs:
            oldest, old = next(iter(self.runs.items()))
            if not old.status.finished:
                break
            self.runs.pop(oldest)

    def _service_changed(self, node_id: str, status: ServiceStatus) -> None:
        if status.state in (ServiceState.FAILED, ServiceState.RESTARTING):
            # A service that died on its own: its runs get a moment to read what it sent
            # before it went (on its way through the socket, maybe ready in this very turn of
            # the loop); then their streams end cut short, or the interrupt fails them, and
            # either names the service. One stopped on purpose (a reload): at once.
            reason = f"service '{node_id}' went down: {status.reason}"
            grace = SERVICE_DOWN_GRACE if status.state is ServiceState.FAILED else 0.0
            loop = asyncio.get_running_loop()
            for record in list(self._active.values()):
                if node_id in record.services:
                    if grace:
                        loop.call_later(grace, record.interrupt, RunStatus.FAILED, reason)
                    else:
                        record.interrupt(RunStatus.FAILED, reason)
        self._emit("service", {"node": node_id, "status": status})

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in self.listeners:
            with contextlib.suppress(Exception):
                listener(event, data)


    def _service_dict(self, node_id: str, status: ServiceStatus | None) -> dict[str, Any]:
        """One service on /ready: its status, its type, and where it listens (what `flowctl
        ps` and the UI show)."""
        result: dict[str, Any] = {"type": self.flow.nodes[node_id].spec.type}
        if status is None:
            return {**result, "state": "pending", "reason": "not started"}
        result.update(state=status.state.value, reason=status.reason, pid=status.pid, restarts=status.restarts, last_exit=status.last_exit, last_log=status.last_log, started=status.started)
        output = self.supervisor.outputs.get(node_id) or {}
        for key in ("port", "url"):
            if output.get(key) is not None:
                result[key] = output[key]
        replicas = self.supervisor.replicas(node_id)
        if replicas is not None:
            result["replicas"] = replicas
        return result
