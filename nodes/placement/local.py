"""Replicas on this machine: each one today's process-start logic (`ProcessStartNode`), named
`<node>.<index>`, with its own process group, watchdog, readiness probe, restart policy, log
file and, with `port: auto`, its own port. With `placement.resources: {GPU: g}` replica `i`
sees GPUs `i*g .. i*g+g-1` (`CUDA_VISIBLE_DEVICES`), unless the node's `env:` sets that itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..base import ServiceStatus
from .base import PlacementSpec, ReplicaContext, ReplicaHandle, ReplicaLoss

if TYPE_CHECKING:
    from ..process_start import ProcessStartNode, ProcessStartSpec


class LocalReplica:
    """A `ReplicaHandle` over one `ProcessStartNode` started in a task of its own."""

    def __init__(self, node: ProcessStartNode, ctx: ReplicaContext) -> None:
        self.node = node
        self.ctx = ctx
        self._starting: asyncio.Task[Any] = asyncio.create_task(node.start(ctx.service), name=f"start:{ctx.name}")

    @property
    def name(self) -> str:
        return self.ctx.name

    @property
    def url(self) -> str | None:
        url = self.node.output.get("url")
        return str(url) if url else None

    @property
    def status(self) -> ServiceStatus:
        return self.node.status

    async def wait_ready(self) -> None:
        await asyncio.shield(self._starting)

    async def wait_lost(self) -> ReplicaLoss:
        with contextlib.suppress(Exception):
            await asyncio.shield(self._starting)
        await self.node.supervised()
        status = self.node.status
        return ReplicaLoss(reason=status.reason or status.last_exit or "stopped", exit_code=self.node.last_exit_code, final=True)

    async def exited_within(self, timeout: float) -> bool:
        return await self.node.exited_within(timeout)

    async def stop(self) -> None:
        if not self._starting.done():
            self._starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._starting
        await self.node.stop()


class LocalPlacement:
    """Every replica on this machine."""

    def __init__(self, spec: PlacementSpec) -> None:
        self.spec = spec

    async def start_replica(self, spec: ProcessStartSpec, index: int, ctx: ReplicaContext) -> ReplicaHandle:
        from ..process_start import ProcessStartNode

        gpus = self.spec.gpus
        if gpus:
            devices = ",".join(str(index * gpus + n) for n in range(gpus))
            ctx = dataclasses.replace(ctx, service=dataclasses.replace(ctx.service, render=_with_env(ctx.service.render, "CUDA_VISIBLE_DEVICES", devices)))
        return LocalReplica(ProcessStartNode(spec), ctx)

    async def close(self) -> None:
        return None


def _with_env(render: Any, name: str, value: str) -> Any:
    """`render` whose `env` gets `name=value` unless the node's own `env:` sets it."""

    def rendered(extra: Mapping[str, Any]) -> dict[str, Any]:
        fields = dict(render(extra))
        env = dict(fields.get("env") or {})
        env.setdefault(name, value)
        fields["env"] = env
        return fields

    return rendered


__all__ = ["LocalPlacement", "LocalReplica"]
