"""The owner of a process-start node's replicas: the one place that decides their state.

A node with `replicas: N` (or a placement other than local) is a `ReplicaSetNode`: it starts
N replicas through a `Placement` (`nodes/placement/`), each named `<node>.<index>`
(`llm.0`, `llm.1`: their logs, their rows on `/ready` and in `ps`, their metric labels),
and keeps them:

- the service is **ready** while every replica serves, **degraded** (still ready: runs are
  admitted and balanced over the rest) while at least one does, and down (restarting or
  failed) only when none does; runs in flight on the replicas that still serve are never
  failed because another one died;
- a replica lost is **replaced**: a local replica restarts itself per the node's `restart:`
  policy (it is today's process-start logic); one whose host is gone (a Ray actor) is started
  again here, per the same policy; one that fails to start at all is retried the same way;
- its `pool` (`balancer.ReplicaPool`) reads each replica's URL and readiness live, so an
  http-stream node with `service:` balances over the replicas that serve now;
- its output: `replicas` (the URLs of the replicas that serve, kept current in place), and
  with one replica `url`/`port` too, as a plain process-start node.

Start succeeds once every replica has settled and at least one is ready; with none ready it
fails naming each replica's reason, and stops what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..engine.errors import FlowctlError, ServiceError
from .balancer import Endpoint, ReplicaPool
from .base import ServiceContext, ServiceLine, ServiceNode, ServiceState, ServiceStatus
from .placement.base import Placement, ReplicaContext, ReplicaHandle, open_placement
from .process_start import ProcessStartNode, ProcessStartSpec
from .restart import decide


def process_start_service(spec: ProcessStartSpec) -> ServiceNode:
    """The behaviour of a process-start node: one process (today's node), or a replica set
    when it asks for several replicas or a placement engine other than local."""
    if spec.replicas > 1 or spec.placement.engine != "local":
        return ReplicaSetNode(spec)
    return ProcessStartNode(spec)


@dataclass(eq=False)
class _Slot:
    """Replica `index`'s place in the set, whichever handle fills it now."""

    index: int
    name: str
    handle: ReplicaHandle | None = None
    #: the set has taken the handle in (its start settled): until then it does not serve, so
    #: the set's state, its output and the pool change in the same step
    accepted: bool = False
    #: its status while no handle fills it (lost, failed to start, waiting to be replaced)
    down: ServiceStatus | None = None
    #: times this set started it again
    replacements: int = 0
    task: asyncio.Task[None] | None = None
    endpoint: Endpoint = field(init=False)

    def __post_init__(self) -> None:
        self.endpoint = Endpoint(self.name, self._url, self._ready)

    def _url(self) -> str | None:
        return self.handle.url if self.handle is not None else None

    def _ready(self) -> bool:
        return self.handle is not None and self.accepted and self.handle.status.ready

    @property
    def status(self) -> ServiceStatus:
        if self.handle is None:
            return self.down or ServiceStatus(state=ServiceState.PENDING, reason="not started")
        status = self.handle.status
        if status.ready and not self.accepted:
            status = dataclasses.replace(status, state=ServiceState.STARTING, reason="ready; joining the set")
        return dataclasses.replace(status, restarts=status.restarts + self.replacements, last_exit=status.last_exit or (self.down.last_exit if self.down else None))


class ReplicaSetNode:
    def __init__(self, spec: ProcessStartSpec) -> None:
        self.spec = spec
        self._slots: list[_Slot] = []
        self._ctx: ServiceContext | None = None
        self._placement: Placement | None = None
        self._stopping = False
        self._state = ServiceState.PENDING
        self._started: float | None = None
        #: times no replica served any more (the set's own "restarts")
        self._outages = 0
        self._last_seen: tuple[Any, ...] | None = None
        self._output: dict[str, Any] = {"pid": None, "host": spec.host, "replicas": []}
        self.pool = ReplicaPool("", lambda: [slot.endpoint for slot in self._slots])

    # -- state -------------------------------------------------------------------------------

    @property
    def status(self) -> ServiceStatus:
        if self._state in (ServiceState.PENDING, ServiceState.STOPPED) or not self._slots:
            return ServiceStatus(state=self._state)
        statuses = [(slot.name, slot.status) for slot in self._slots]
        ready = sum(1 for _, status in statuses if status.ready)
        down = [(name, status) for name, status in statuses if not status.ready]
        why = "; ".join(f"{name} {status.reason or status.state.value}" for name, status in down)
        last_exit = next((status.last_exit for _, status in reversed(statuses) if status.last_exit), None)
        if self._state is ServiceState.STARTING:
            state, reason = ServiceState.STARTING, f"{ready} of {len(statuses)} replicas ready" + (f" ({why})" if why else "")
        elif not down:
            state, reason = ServiceState.READY, None
        elif ready:
            state, reason = ServiceState.DEGRADED, f"{ready} of {len(statuses)} replicas ready ({why})"
        else:
            coming = any(status.state in (ServiceState.STARTING, ServiceState.RESTARTING, ServiceState.PENDING) for _, status in down)
            state, reason = (ServiceState.RESTARTING if coming else ServiceState.FAILED), f"no replica is ready ({why})"
        return ServiceStatus(state=state, reason=reason, restarts=self._outages, last_exit=last_exit, started=self._started)

    @property
    def output(self) -> dict[str, Any]:
        return self._output

    def replicas(self) -> list[dict[str, Any]]:
        """Each replica as `/ready` shows it (and `flowctl ps`, as sub-rows)."""
        views = []
        for slot in self._slots:
            status = slot.status
            url = slot.endpoint.url
            port = httpx.URL(url).port if url else None
            endpoint = slot.endpoint
            views.append(
                {
                    "name": slot.name,
                    "state": status.state.value,
                    "reason": status.reason,
                    "pid": status.pid,
                    "port": port,
                    "url": url,
                    "restarts": status.restarts,
                    "last_exit": status.last_exit,
                    "started": status.started,
                    "in_flight": endpoint.in_flight,
                    "requests": endpoint.requests,
                    "failures": endpoint.failures,
                }
            )
        return views

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, ctx: ServiceContext) -> dict[str, Any]:
        self._ctx = ctx
        self._stopping = False
        self.pool.service = ctx.node_id
        self._slots = [_Slot(index, f"{ctx.node_id}.{index}") for index in range(self.spec.replicas)]
        self._state = ServiceState.STARTING
        self._started = time.time()
        try:
            self._placement = open_placement(self.spec.placement, ctx.node_id)
            errors = await asyncio.gather(*(self._launch(slot) for slot in self._slots))
            if all(error is not None for error in errors):
                reasons = "; ".join(f"{slot.name}: {slot.status.reason}" for slot in self._slots)
                raise ServiceError(ctx.node_id, f"none of its {len(self._slots)} replicas got ready ({reasons})", hint=f"see `flowctl logs {ctx.node_id}`")
        except BaseException:
            await asyncio.shield(self.stop())
            self._state = ServiceState.FAILED
            raise
        self._state = ServiceState.READY
        for slot in self._slots:
            slot.task = asyncio.create_task(self._keep(slot), name=f"keep:{slot.name}")
        self._changed()
        return self._output

    async def stop(self) -> None:
        self._stopping = True
        tasks = [slot.task for slot in self._slots if slot.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        handles = [slot.handle for slot in self._slots if slot.handle is not None]
        await asyncio.gather(*(handle.stop() for handle in handles), return_exceptions=True)
        placement, self._placement = self._placement, None
        if placement is not None:
            with contextlib.suppress(Exception):
                await placement.close()
        self._state = ServiceState.STOPPED
        self._output["replicas"] = []

    def exiting(self) -> bool:
        """False: one replica's death does not take the set down; a run on that replica
        learns of it from its own connection, named by the balancer."""
        return False

    async def exited_within(self, timeout: float) -> bool:
        """True if any replica's process has exited or exits within `timeout` seconds (at
        once when one is known to be down already)."""
        handles = [slot.handle for slot in self._slots if slot.handle is not None]
        if len(handles) < len(self._slots):
            return True
        answers = await asyncio.gather(*(handle.exited_within(timeout) for handle in handles), return_exceptions=True)
        return any(answer is True for answer in answers)

    # -- one replica -------------------------------------------------------------------------

    async def _launch(self, slot: _Slot) -> str | None:
        """Start the replica in `slot` and wait until it is ready: None, or why it is not
        (the slot is then down with that reason)."""
        ctx, placement = self._ctx, self._placement
        assert ctx is not None and placement is not None
        service = dataclasses.replace(ctx, node_id=slot.name, on_change=lambda _node, _status: self._changed(), replica_index=slot.index)
        handle = await placement.start_replica(self.spec, slot.index, ReplicaContext(name=slot.name, index=slot.index, service=service))
        slot.handle, slot.accepted = handle, False
        try:
            await handle.wait_ready()
        except Exception as exc:  # a placement's bug too: the slot is down, the set goes on
            status = handle.status
            said = exc.message if isinstance(exc, FlowctlError) else f"{type(exc).__name__}: {exc}"
            reason = status.reason or said.removeprefix(f"service '{slot.name}': ").splitlines()[0]
            if status.last_log and status.last_log not in reason:
                reason += f"; last output: {status.last_log}"
            slot.down = ServiceStatus(state=ServiceState.FAILED, reason=reason, last_exit=status.last_exit, restarts=slot.replacements)
            slot.handle = None
            await handle.stop()
            return reason
        slot.accepted = True
        return None

    async def _keep(self, slot: _Slot) -> None:
        """Watch the replica in `slot`; when it is lost (or never started), start it again as
        the restart policy says."""
        ctx = self._ctx
        assert ctx is not None
        policy = self.spec.restart
        failures = 0
        exit_code: int | None = None
        uptime = 0.0
        while not self._stopping:
            if slot.handle is None:
                why = slot.down.reason if slot.down is not None else "lost"
                decision = decide(policy, failures=failures, exit_code=exit_code, uptime=uptime)
                if decision.gave_up:
                    slot.down = ServiceStatus(state=ServiceState.FAILED, reason=f"{why}; gave up after {failures} restarts", last_exit=why, restarts=slot.replacements)
                    ctx.log(ServiceLine(slot.name, f"{why}; gave up after {failures} restarts"))
                    self._changed()
                if not decision.restart:
                    return
                failures = decision.failures
                slot.replacements += 1
                slot.down = ServiceStatus(
                    state=ServiceState.RESTARTING, reason=f"{why}; replacing it ({failures} of {policy.max_restarts}) in {decision.delay:g}s", last_exit=why, restarts=slot.replacements
                )
                ctx.log(ServiceLine(slot.name, f"lost ({why}); starting it again in {decision.delay:g}s"))
                self._changed()
                await asyncio.sleep(decision.delay)  # the backoff; stop() cancels it
                error = await self._launch(slot)
                self._changed()
                if error is not None:
                    exit_code, uptime = None, 0.0
                    continue
            handle = slot.handle
            assert handle is not None
            loss = await handle.wait_lost()
            if self._stopping:
                return
            slot.replacements += handle.status.restarts
            slot.down = ServiceStatus(state=ServiceState.FAILED, reason=loss.reason, last_exit=loss.reason, restarts=slot.replacements)
            slot.handle = None
            await handle.stop()
            self._changed()
            if loss.final:
                return
            exit_code, uptime = loss.exit_code, loss.uptime

    # -- reporting ---------------------------------------------------------------------------

    def _changed(self) -> None:
        """A replica's status may have changed: keep the output's URLs current and tell the
        owner when the set's state or any replica's did change."""
        if self._state in (ServiceState.PENDING, ServiceState.STOPPED):
            return
        self._output["replicas"][:] = [slot.endpoint.url for slot in self._slots if slot.endpoint.ready]
        if len(self._slots) == 1:
            url = self._slots[0].endpoint.url
            self._output["url"] = url
            self._output["port"] = httpx.URL(url).port if url else None
        if self._state is ServiceState.STARTING:
            return
        status = self.status
        seen = (status.state, status.reason, *((slot.status.state, slot.status.pid) for slot in self._slots))
        if seen == self._last_seen:
            return
        was_serving = self._last_seen is not None and self._last_seen[0] in (ServiceState.READY, ServiceState.DEGRADED)
        if was_serving and not status.ready:
            self._outages += 1
            status = self.status
        self._last_seen = seen
        ctx = self._ctx
        if ctx is not None and ctx.on_change is not None:
            try:
                ctx.on_change(ctx.node_id, status)
            except Exception as exc:  # the owner's bug must not stop supervision
                ctx.event(f"on_change failed: {exc!r}")


__all__ = ["ReplicaSetNode", "process_start_service"]
