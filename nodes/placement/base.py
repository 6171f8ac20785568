"""The placement seam: how a replica set starts, watches and stops one replica, wherever it runs.

`ReplicaSetNode` (`nodes/replica_set.py`) owns a process-start node's replicas and decides
their state; it asks a `Placement` for each replica and holds the `ReplicaHandle` it gets.
A placement knows nothing of balancing, `/ready` or the other replicas: it starts one
replica of a spec, says how that replica is, and stops it.

Contract, for whoever writes a placement (`local.py` is the reference):

- `Placement.start_replica(spec, index, ctx)` launches replica `index` (or asks the cluster
  for a place for it) and returns its handle promptly; it does not wait for readiness. The
  replica runs the process-start logic: `ctx.service` is a `ServiceContext` already named
  after the replica (`llm.0`: its log file, its console prefix), whose `render(extra)` gives
  the node's fields with `${replica.index}`, `${replica.name}`, `${replica.port}` filled in,
  and whose `on_change` tells the set that this replica's status changed (call it, or let the
  process-start logic call it, on every change: the set recomputes ready/degraded from
  `status`). Never import a cluster library at module import time.
- `ReplicaHandle.wait_ready()` returns once the replica's readiness probe passed, or raises
  `ServiceError` naming the replica when it failed first. It may also return while the
  replica is still `PENDING` (waiting for cluster resources): the set counts it as not
  serving and keeps listening to `on_change`.
- `name` (`llm.0`), `url` (`http://host:port` of its server, None until it has one) and
  `status` (a `ServiceStatus`: state, reason, pid, restarts, last_exit, started) are read
  often and must not block.
- `wait_lost()` returns a `ReplicaLoss` once the replica is gone and will not come back by
  itself. `final=True`: its own supervision already applied the restart policy and gave up
  (local: the process-start node's restarts are spent, or its policy is `never`); the set
  leaves it down. `final=False`: what hosted it died (a Ray actor or node lost); the set
  replaces it, per the node's restart policy, through `start_replica` again.
- `exited_within(timeout)`: True if the replica's process has exited or exits within
  `timeout` (the owner saw a connection break and wants to know whether it died).
- `stop()` releases everything the replica holds (process group, actor, placement group
  bundle); safe to call twice, or after a failed start. `Placement.close()` after the last.

    placement = open_placement(PlacementSpec(), "llm")    # engine: local
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...engine.errors import ServiceError
from ..base import ServiceContext, ServiceStatus

if TYPE_CHECKING:
    from ..process_start import ProcessStartSpec

#: what to install for `engine: ray`
RAY_EXTRA = "pip install 'flowctl[ray]'"


class PlacementSpec(BaseModel):
    """`placement:` of a process-start node: which engine places its replicas, and how.

    engine local: every replica on this machine (`resources: {GPU: 1}` gives each replica
    its own GPUs through `CUDA_VISIBLE_DEVICES`). engine ray: each replica a Ray actor in a
    placement group on the cluster at `address`, with `resources` per replica, spread over
    nodes (`strict`: one replica per node, or not placed) or packed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["local", "ray"] = "local"
    #: the Ray cluster to join (`auto`, `ray://host:10001`); engine ray only
    address: str | None = None
    #: what each replica needs: `{GPU: 1}`, Ray custom resources (`{gpu_slot: 1}`)
    resources: dict[str, float] = Field(default_factory=dict)
    #: how replicas are laid over Ray nodes: `strict` one per node, `pack` as few nodes as fit
    spread: Literal["strict", "pack"] | None = None

    @model_validator(mode="after")
    def _fits_engine(self) -> PlacementSpec:
        for name, amount in self.resources.items():
            if amount < 0:
                raise ValueError(f"resources.{name}: {amount:g} is negative")
        if self.engine == "local":
            if self.address is not None:
                raise ValueError("`address` names a Ray cluster; it needs `engine: ray`")
            if self.spread is not None:
                raise ValueError("`spread` lays replicas over Ray nodes; with `engine: local` they all run on this machine (remove it, or use `engine: ray`)")
            unknown = sorted(set(self.resources) - {"GPU"})
            if unknown:
                raise ValueError(f"`engine: local` knows only the GPU resource, not {', '.join(unknown)} (custom resources need `engine: ray`)")
            gpus = self.resources.get("GPU", 0)
            if gpus != int(gpus):
                raise ValueError(f"resources.GPU: {gpus:g} is not a whole number of GPUs (a local replica gets whole devices)")
        elif importlib.util.find_spec("ray") is None:
            raise ValueError(f"`engine: ray` needs the ray package, which is not installed: {RAY_EXTRA}")
        return self

    @property
    def gpus(self) -> int:
        """Whole GPUs per replica (local engine)."""
        return int(self.resources.get("GPU", 0))


@dataclass(frozen=True)
class ReplicaLoss:
    """Why a replica is gone, as its handle reports it."""

    reason: str
    #: the process's exit code when known (negative: a signal), for the restart decision
    exit_code: int | None = None
    #: True: its own supervision gave up already, leave it down; False: replace it
    final: bool = True
    #: seconds it had been up, for the restart decision (long enough: failures forgotten)
    uptime: float = 0.0


@dataclass
class ReplicaContext:
    """What a placement gets for one replica."""

    #: `<node id>.<index>`: the replica's name in logs, `/ready`, `ps`, metrics and errors
    name: str
    index: int
    #: the replica's own ServiceContext (named `name`; `render` fills `${replica.*}`;
    #: `on_change` tells the set)
    service: ServiceContext


class ReplicaHandle(Protocol):
    """One placed replica, as the set sees it (see the module docstring for the contract)."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str | None: ...

    @property
    def status(self) -> ServiceStatus: ...

    async def wait_ready(self) -> None:
        """Return once ready (or pending a place); raise ServiceError if it failed first."""

    async def wait_lost(self) -> ReplicaLoss:
        """Return once the replica is gone and will not come back by itself."""

    async def exited_within(self, timeout: float) -> bool:
        """True if its process has exited or exits within `timeout` seconds."""

    async def stop(self) -> None:
        """Release everything the replica holds; safe twice and after a failed start."""


class Placement(Protocol):
    """Starts replicas of one process-start node somewhere."""

    async def start_replica(self, spec: ProcessStartSpec, index: int, ctx: ReplicaContext) -> ReplicaHandle:
        """Launch replica `index` of `spec`; return its handle without waiting for readiness."""

    async def close(self) -> None:
        """Release what the placement holds beyond its replicas (a cluster connection)."""


def open_placement(spec: PlacementSpec, node_id: str) -> Placement:
    """The placement `spec.engine` names. `ray` is imported here, not before, and only when a
    flow asks for it; a missing piece is a ServiceError saying what to install."""
    if spec.engine == "local":
        from .local import LocalPlacement

        return LocalPlacement(spec)
    if importlib.util.find_spec("ray") is None:
        raise ServiceError(node_id, "`placement: {engine: ray}` needs the ray package, which is not installed", hint=RAY_EXTRA)
    try:
        module = importlib.import_module(f"{__package__}.ray")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"{__package__}.ray",):
            raise
        raise ServiceError(node_id, "Ray placement is not available in this build of flowctl (flowctl.nodes.placement.ray is missing)", hint="use `engine: local`, or a flowctl with the Ray placement") from None
    placement: Placement = module.RayPlacement(spec)
    return placement


__all__ = ["RAY_EXTRA", "Placement", "PlacementSpec", "ReplicaContext", "ReplicaHandle", "ReplicaLoss", "open_placement"]
