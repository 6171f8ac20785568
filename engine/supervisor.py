"""The supervisor owns a flow's service nodes (env-setup, process-start) for as long as they
live: it starts them in dependency order, stops them in reverse, answers "is everything up?",
and on a reload restarts exactly the services whose spec (or upstream) changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..nodes.balancer import ReplicaPool
from ..nodes.base import LogSink, ServiceContext, ServiceLine, ServiceNode, ServiceState, ServiceStatus, StartRun
from ..nodes.callback_waits import CallbackWaits
from ..nodes.registry import create_service
from .errors import FlowctlError, RunError, ServiceError, TemplateError, UpstreamError
from .graph import CompiledFlow


def _stderr_log(line: ServiceLine) -> None:
    print(line, file=sys.stderr, flush=True)


class Supervisor:
    def __init__(self, state_dir: Path, *, log: LogSink = _stderr_log, on_change: Callable[[str, ServiceStatus], None] | None = None) -> None:
        self.state_dir = state_dir
        self.log = log
        self.on_change = on_change
        self._nodes: dict[str, ServiceNode] = {}
        #: services whose last start failed (or could not start because an upstream failed):
        #: their status stays visible on /ready; a reload retries them once their spec changes
        self._failed: dict[str, ServiceStatus] = {}
        self._fingerprints: dict[str, str] = {}
        self.outputs: dict[str, Any] = {}
        #: each running service's balancing pool (its replicas, or its one process), for
        #: http-stream's `service:`; read live, so replicas coming and going need no reload
        self.pools: dict[str, ReplicaPool] = {}
        #: each running callback listener's waits, for http-stream's `completion:`
        self.callbacks: dict[str, CallbackWaits] = {}
        #: how an http-trigger starts runs (set by `flowctl up`; None: triggers answer 503)
        self.start_run: StartRun | None = None
        self._order: list[str] = []
        self._lock = asyncio.Lock()
        #: services a reload is about to restart, waiting for the runs in flight on them: not
        #: ready for new runs meanwhile (node -> why)
        self._draining: dict[str, str] = {}

    # -- queries -----------------------------------------------------------------------------

    def statuses(self) -> dict[str, ServiceStatus]:
        result = {}
        for node_id in self._order:
            if node_id in self._nodes:
                result[node_id] = self._nodes[node_id].status
            elif node_id in self._failed:
                result[node_id] = self._failed[node_id]
        return result

    def not_ready(self, node_ids: Iterable[str] | None = None) -> dict[str, str]:
        """Services (of `node_ids`, default all) that are not up, with the reason."""
        wanted = list(node_ids) if node_ids is not None else self._order
        missing = {}
        for node_id in wanted:
            node = self._nodes.get(node_id)
            if node_id in self._draining:
                missing[node_id] = self._draining[node_id]
            elif node is None:
                failed = self._failed.get(node_id)
                missing[node_id] = (failed.reason or "failed") if failed is not None else "not started"
            elif not node.status.ready:
                missing[node_id] = node.status.reason or node.status.state.value
        return missing

    def replicas(self, node_id: str) -> list[dict[str, Any]] | None:
        """The replicas of a service that has them, as `/ready` shows them; None otherwise."""
        describe = getattr(self._nodes.get(node_id), "replicas", None)
        return describe() if callable(describe) else None

    def degraded(self, node_ids: Iterable[str] | None = None) -> dict[str, str]:
        """Services (of `node_ids`, default all) that serve with some replicas down, with why."""
        wanted = list(node_ids) if node_ids is not None else self._order
        return {node_id: node.status.reason or "degraded" for node_id in wanted if (node := self._nodes.get(node_id)) is not None and node.status.state is ServiceState.DEGRADED}

    def lives(self, node_ids: Iterable[str]) -> dict[str, tuple[int | None, int]]:
        """Which life each service is in: (pid, restarts). A run takes this at its start and
        asks `lost_since` at its end, to know whether a service it read from died meanwhile
        (a stream whose end is the connection's end cannot tell a crash from a finish)."""
        return {node_id: (self._nodes[node_id].status.pid, self._nodes[node_id].status.restarts) for node_id in node_ids if node_id in self._nodes}

    async def check_lived(self, lives: dict[str, tuple[int | None, int]], settle: float = 2.0) -> None:
        """Raise ServiceError if a service of `lives` went down (or was restarted) since: a
        run that read from it may have been cut short even though every node ended cleanly.
        A service whose process has begun to exit gets up to `settle` seconds for its exit to
        land first: a dying server's sockets close (so the run may end looking whole) before
        its exit can be seen."""
        dying = [service for node_id in lives if (service := self._nodes.get(node_id)) is not None and service.exiting()]
        if dying:
            await asyncio.gather(*(service.exited_within(settle) for service in dying), return_exceptions=True)
        lost = self.lost_since(lives)
        if lost:
            node, reason = next(iter(lost.items()))
            raise ServiceError(node, f"went down during the run ({reason}); the output may be cut short")

    def lost_since(self, lives: dict[str, tuple[int | None, int]]) -> dict[str, str]:
        """The services of `lives` that are down now or were restarted since, with why."""
        lost = {}
        for node_id, life in lives.items():
            node = self._nodes.get(node_id)
            if node is None:
                lost[node_id] = "it was stopped"
            elif not node.status.ready:  # its own state: a service draining for a reload still serves
                lost[node_id] = node.status.reason or node.status.state.value
            elif (node.status.pid, node.status.restarts) != life:
                lost[node_id] = "it was restarted"
        return lost

    async def settle(self, node_ids: Iterable[str], timeout: float = 0.5) -> None:
        """Give services that look up a moment to show that they died. A model server's
        sockets close a little before its exit is seen, so a run whose connection just broke
        waits here (at most `timeout`) before saying which service went down."""
        # each answers at once when its exit (or that it has no process) is known already
        waits = [node.exited_within(timeout) for node_id in node_ids if (node := self._nodes.get(node_id)) is not None]
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)

    async def explain(self, error: RunError, node_ids: Iterable[str]) -> str:
        """`error`'s message, with the services among `node_ids` that are down and why. When the
        error is a broken connection, the services get a moment (`settle`) to show a death."""
        broken = isinstance(error, UpstreamError) and error.status is None
        if broken:
            await self.settle(node_ids)
        down = self.not_ready(node_ids)
        # a replica that broke a run is down while its service still serves: say so too
        degraded = self.degraded(node_ids) if broken else {}
        if not down and not degraded:
            return str(error)
        states = "; ".join([*(f"service '{node}' {reason}" for node, reason in down.items()), *(f"service '{node}' degraded: {reason}" for node, reason in degraded.items())])
        return f"{error} ({states})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, flow: CompiledFlow, only: Iterable[str] | None = None, *, rebuild: bool = False) -> None:
        """Start `flow`'s services (or just `only` and what they need), in dependency order.
        On failure, what this call started is stopped again and the error is raised.
        `rebuild`: set environments up again even where their stamp is current."""
        wanted = set(only) if only is not None else set(flow.services)
        async with self._lock:
            started: list[str] = []
            try:
                for node_id in flow.services:
                    if node_id not in wanted or node_id in self._nodes:
                        continue
                    await self._start_one(flow, node_id, rebuild=rebuild)
                    started.append(node_id)
            except BaseException:
                for node_id in reversed(started):
                    await asyncio.shield(self._stop_one(node_id))
                raise

    async def _start_one(self, flow: CompiledFlow, node_id: str, *, rebuild: bool = False) -> None:
        node = flow.nodes[node_id]
        outputs = dict(self.outputs)
        try:
            resolved = resolve_fields(flow, node_id, outputs)
        except TemplateError as exc:
            raise ServiceError(node_id, exc.message, hint=exc.hint) from None
        instance = create_service(node.spec)
        self._failed.pop(node_id, None)
        self._nodes[node_id] = instance
        self._fingerprints[node_id] = flow.service_fingerprints[node_id]
        if node_id not in self._order:
            self._order.append(node_id)
        render = functools.partial(resolve_fields, flow, node_id, outputs)  # `${replica.*}` filled at launch
        ctx = ServiceContext(node_id=node_id, resolved=resolved, state_dir=self.state_dir, log=self.log, on_change=self.on_change, rebuild=rebuild, render=render, start_run=self.start_run)
        try:
            self.outputs[node_id] = await instance.start(ctx)
            pool = getattr(instance, "pool", None)
            if isinstance(pool, ReplicaPool):
                self.pools[node_id] = pool
            waits = getattr(instance, "callbacks", None)
            if isinstance(waits, CallbackWaits):
                self.callbacks[node_id] = waits
        except BaseException as exc:
            if isinstance(exc, FlowctlError | OSError):
                instance.status.state = ServiceState.FAILED
                instance.status.reason = instance.status.reason or str(exc).splitlines()[0]
            await asyncio.shield(self._release(node_id, instance))
            if instance.status.state is ServiceState.FAILED:
                self._failed[node_id] = instance.status
            if isinstance(exc, OSError):
                raise ServiceError(node_id, str(exc)) from None
            raise
        if self.on_change:
            self.on_change(node_id, instance.status)

    async def _release(self, node_id: str, instance: ServiceNode) -> None:
        with contextlib.suppress(Exception):
            await instance.stop()
        self._nodes.pop(node_id, None)
        self.outputs.pop(node_id, None)
        self.pools.pop(node_id, None)
        self.callbacks.pop(node_id, None)

    async def _stop_one(self, node_id: str) -> None:
        instance = self._nodes.get(node_id)
        if instance is not None:
            await self._release(node_id, instance)

    async def stop(self) -> None:
        """Stop every service, dependents first. Safe to call more than once."""
        async with self._lock:
            for node_id in reversed(list(self._nodes)):
                await asyncio.shield(self._stop_one(node_id))
            self._failed.clear()

    async def reconcile(self, flow: CompiledFlow, drain: Callable[[list[str]], Awaitable[int]] | None = None) -> list[str]:
        """Bring the services in line with `flow` after a reload, and return the ids of those it
        (re)started or tried to, in start order.

        A service is stopped when it is gone from the flow or its fingerprint (its own spec, or an
        upstream one) changed — dependents first — and then the new and changed ones are started
        in dependency order. Unchanged services are not touched, so a body-only edit restarts
        nothing. A service that fails to start does not raise: it is left down with its reason
        (on `statuses()` / `not_ready()`), its dependents are not started ("needs X"), the others
        still are, and the next reload retries it once its spec changes. The lock is held from
        the first stop to the last start, so two reloads never interleave; cancelling a
        reconcile (a newer save supersedes it) lets a stop in progress finish first.

        `drain(node_ids)`, when given, is awaited before the first stop: the owner waits for
        the runs in flight on those services to finish (bounded) and returns how many did not;
        meanwhile the services report not ready, so no new run starts on them."""
        new_prints = flow.service_fingerprints
        async with self._lock:
            running = [n for n in reversed(self._order) if n in self._nodes]
            running += [n for n in reversed(list(self._nodes)) if n not in running]
            leaving = [n for n in running if new_prints.get(n) != self._fingerprints.get(n)]
            try:
                cut = 0
                if leaving and drain is not None:
                    for node_id in leaving:
                        self._draining[node_id] = "restarting after a reload, once the runs in flight on it finish"
                    cut = await drain(leaving)
                for node_id in leaving:
                    changed = node_id in new_prints
                    reason = "its spec changed (reload)" if changed else "removed from the flow (reload)"
                    self.log(ServiceLine(node_id, f"{reason}, {'restarting' if changed else 'stopping'}" + (f"; cutting {cut} run(s) still in flight" if cut else "")))
                    if self.on_change and changed:
                        # runs still in flight that use it fail now with this reason, not a broken pipe
                        self.on_change(node_id, ServiceStatus(state=ServiceState.RESTARTING, reason=f"restarting: {reason}"))
                    await _finish(self._stop_one(node_id))
                    self._fingerprints.pop(node_id, None)
            finally:
                self._draining.clear()
            for node_id in list(self._failed):
                if new_prints.get(node_id) != self._fingerprints.get(node_id):
                    del self._failed[node_id]
                    self._fingerprints.pop(node_id, None)
            self._order = list(flow.services)
            touched: list[str] = []
            for node_id in flow.services:
                if node_id in self._nodes or node_id in self._failed:
                    continue
                touched.append(node_id)
                blocked = [up for up in flow.nodes[node_id].upstream if up in new_prints and up not in self._nodes]
                if blocked:
                    status = ServiceStatus(state=ServiceState.FAILED, reason=f"needs '{blocked[0]}', which is not up")
                    self._failed[node_id] = status
                    self._fingerprints[node_id] = new_prints[node_id]
                    self.log(ServiceLine(node_id, f"not started: {status.reason}"))
                    if self.on_change:
                        self.on_change(node_id, status)
                    continue
                try:
                    await self._start_one(flow, node_id)
                except FlowctlError as exc:
                    status = self._failed.setdefault(node_id, ServiceStatus(state=ServiceState.FAILED, reason=exc.message.splitlines()[0]))
                    self.log(ServiceLine(node_id, f"failed to start after the reload: {str(exc).splitlines()[0]}"))
                    if self.on_change:
                        self.on_change(node_id, status)
            return touched


def resolve_fields(flow: CompiledFlow, node_id: str, outputs: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A service node's template fields rendered against the environment and the outputs of
    the services started before it, plus `extra` sources (`replica`: which copy, its host and port;
    by default the first copy, on the node's fixed port or 0 for `port: auto` until one is
    chosen). Raises TemplateError for what is not there."""
    spec = flow.nodes[node_id].spec
    port = getattr(spec, "port", None)
    scope: dict[str, Any] = {"env": os.environ, "nodes": {sid: {"output": out} for sid, out in outputs.items()}}
    scope["replica"] = {"index": 0, "name": node_id, "port": port if isinstance(port, int) else 0, "host": getattr(spec, "host", "127.0.0.1")}
    scope.update(extra or {})
    return {name: value.render(scope) for name, value in flow.nodes[node_id].fields.items()}


async def _finish(aw: Awaitable[None]) -> None:
    """Await `aw` to its end even when the caller is cancelled meanwhile (the cancellation is
    raised afterwards), so that a stopped process has released its port before anything else
    may start on it."""
    task = asyncio.ensure_future(aw)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            await asyncio.wait([task])
        raise
