"""The supervisor owns a flow's service nodes (env-setup, process-start) for as long as they
live: it starts them in dependency order, stops them in reverse, answers "is everything up?",
and on a reload restarts exactly the services whose spec (or upstream) changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..nodes.base import ServiceContext, ServiceNode, ServiceState, ServiceStatus
from ..nodes.registry import create_node
from .errors import FlowctlError, ServiceError, TemplateError
from .graph import CompiledFlow

LogSink = Callable[[str], None]


def _stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Supervisor:
    def __init__(self, state_dir: Path, *, log: LogSink = _stderr_log, on_change: Callable[[str, ServiceStatus], None] | None = None) -> None:
        self.state_dir = state_dir
        self.log = log
        self.on_change = on_change
        self._nodes: dict[str, ServiceNode] = {}
        self._fingerprints: dict[str, str] = {}
        self.outputs: dict[str, Any] = {}
        self._order: list[str] = []
        self._lock = asyncio.Lock()

    # -- queries -----------------------------------------------------------------------------

    def statuses(self) -> dict[str, ServiceStatus]:
        return {node_id: self._nodes[node_id].status for node_id in self._order if node_id in self._nodes}

    def not_ready(self, node_ids: Iterable[str] | None = None) -> dict[str, str]:
        """Services (of `node_ids`, default all) that are not up, with the reason."""
        wanted = list(node_ids) if node_ids is not None else self._order
        missing = {}
        for node_id in wanted:
            node = self._nodes.get(node_id)
            if node is None:
                missing[node_id] = "not started"
            elif not node.status.ready:
                missing[node_id] = node.status.reason or node.status.state.value
        return missing

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, flow: CompiledFlow, only: Iterable[str] | None = None) -> None:
        """Start `flow`'s services (or just `only` and what they need), in dependency order.
        On failure, what this call started is stopped again and the error is raised."""
        wanted = set(only) if only is not None else set(flow.services)
        async with self._lock:
            started: list[str] = []
            try:
                for node_id in flow.services:
                    if node_id not in wanted or node_id in self._nodes:
                        continue
                    await self._start_one(flow, node_id)
                    started.append(node_id)
            except BaseException:
                for node_id in reversed(started):
                    await asyncio.shield(self._stop_one(node_id))
                raise

    async def _start_one(self, flow: CompiledFlow, node_id: str) -> None:
        node = flow.nodes[node_id]
        scope = {"env": os.environ, "nodes": {sid: {"output": out} for sid, out in self.outputs.items()}}
        try:
            resolved = {name: value.render(scope) for name, value in node.fields.items()}
        except TemplateError as exc:
            raise ServiceError(node_id, exc.message, hint=exc.hint) from None
        instance: ServiceNode = create_node(node.spec)
        self._nodes[node_id] = instance
        self._fingerprints[node_id] = flow.service_fingerprints[node_id]
        if node_id not in self._order:
            self._order.append(node_id)
        ctx = ServiceContext(node_id=node_id, resolved=resolved, state_dir=self.state_dir, log=self.log, on_change=self.on_change)
        try:
            self.outputs[node_id] = await instance.start(ctx)
        except BaseException as exc:
            if isinstance(exc, FlowctlError | OSError):
                instance.status.state = ServiceState.FAILED
                instance.status.reason = instance.status.reason or str(exc).splitlines()[0]
            await asyncio.shield(self._release(node_id, instance))
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

    async def _stop_one(self, node_id: str) -> None:
        instance = self._nodes.get(node_id)
        if instance is not None:
            await self._release(node_id, instance)

    async def stop(self) -> None:
        """Stop every service, dependents first. Safe to call more than once."""
        async with self._lock:
            for node_id in reversed(list(self._nodes)):
                await asyncio.shield(self._stop_one(node_id))

    async def reconcile(self, flow: CompiledFlow) -> list[str]:
        """Bring the running services in line with `flow` after a reload: stop the ones that
        are gone or changed (a changed upstream counts), start the new and changed ones.
        Returns the ids of services that were (re)started."""
        new_prints = flow.service_fingerprints
        async with self._lock:
            stale = [n for n in self._nodes if new_prints.get(n) != self._fingerprints.get(n)]
            for node_id in reversed(stale):
                self.log(f"[{node_id}] spec changed, stopping")
                await asyncio.shield(self._stop_one(node_id))
                self._fingerprints.pop(node_id, None)
            self._order = [n for n in self._order if n in new_prints]
        to_start = [n for n in flow.services if n not in self._nodes]
        await self.start(flow, to_start)
        self._order = list(flow.services)
        return to_start
