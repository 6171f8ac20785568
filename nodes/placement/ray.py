"""Replicas on a Ray cluster: `placement: {engine: ray, address, resources, spread}`.

Imported only when a flow asks for `engine: ray` (`base.open_placement`), and even then
Ray itself is imported on the first replica's start (`ray_connection.py`).

- **One placement group per node's replica set**, one bundle per replica, each bundle
  `placement.resources` (`{"CPU": 1}` when none is given); `spread: strict` is Ray's
  `STRICT_SPREAD` (one replica per Ray node, or not placed), `pack` is `PACK`, and no
  `spread` is `SPREAD` (over nodes where it can). Ray places a group whole or not at all:
  a set that does not fit waits, every replica `pending`, until the cluster has room.
- **Each replica a named, non-detached actor** (`llm.0@host:pid`, namespace `flowctl`) in
  its bundle, requesting exactly the bundle's resources (so Ray sets `CUDA_VISIBLE_DEVICES`
  for it, and the server inherits it). Non-detached: when flowctl goes, even by SIGKILL,
  Ray kills its actors and removes its placement groups. Inside, the actor runs the same
  process-start logic as a local replica (`ray_actor.py`).
- **Tokens never travel through Ray.** The actor reports the server's URL (the Ray node's
  address and the replica's port); http-stream connects to it directly.
- **A replica whose actor dies** (`ray.kill`, its node lost, its worker killed) is reported
  lost with `final=False`, and the replica set starts it again in the same bundle, per the
  node's restart policy. A server that dies inside a live actor is restarted there, per the
  same policy, as a local one is.
- **No orphans:** Ray kills an actor's direct children with it, and one of them is the
  watchdog that would stop the server's process group, so the server would be orphaned.
  The actor's worker is started with `RAY_kill_child_processes_on_worker_exit=false`: the
  watchdog outlives the actor, sees its pipe close, and stops the group (SIGTERM, grace,
  SIGKILL), as it does when a local flowctl is killed.
- **Joining Ray** (once per flowctl process, loopback kept loopback, `ray.init` off the main
  thread so SIGTERM stays flowctl's): `ray_connection.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import socket
import time
from typing import Any

from ...engine.errors import ServiceError
from ..base import LineKind, ServiceLine, ServiceState, ServiceStatus
from ..process_log import ProcessLog, log_file
from ..process_start import ProcessStartSpec
from .base import PlacementSpec, ReplicaContext, ReplicaHandle, ReplicaLoss
from .ray_actor import ReplicaActor
from .ray_connection import NAMESPACE, connection

#: a placement group not placed within this many seconds shows its replicas as pending
PLACE_WAIT = 3.0
#: how long one long poll of a replica's news waits on the actor side
WATCH_SECONDS = 10.0
#: Ray strategy for `placement.spread`
STRATEGIES = {"strict": "STRICT_SPREAD", "pack": "PACK", None: "SPREAD"}
#: what every replica's actor worker is started with (the module docstring says why)
ACTOR_ENV = {"RAY_kill_child_processes_on_worker_exit": "false"}
INSTALL_HINT = "every Ray node needs flowctl installed with the ray extra (pip install 'flowctl[ray]'), in the Python its Ray runs"


class RayPlacement:
    """A process-start node's replicas as actors in one Ray placement group."""

    def __init__(self, spec: PlacementSpec) -> None:
        self.spec = spec
        self.bundle: dict[str, float] = dict(spec.resources) or {"CPU": 1.0}
        self.strategy = STRATEGIES[spec.spread]
        self._ray: Any = None
        self._group: Any = None
        self._actor_class: Any = None
        self._owner = f"{socket.gethostname()}:{os.getpid()}"

    async def start_replica(self, spec: ProcessStartSpec, index: int, ctx: ReplicaContext) -> ReplicaHandle:
        if self._ray is None:
            self._ray = await connection.join(self.spec.address, ctx.service.node_id.rsplit(".", 1)[0])
        if self._group is None:
            from ray.util.placement_group import placement_group

            node_id = ctx.service.node_id.rsplit(".", 1)[0]
            self._group = placement_group([dict(self.bundle) for _ in range(spec.replicas)], strategy=self.strategy, name=f"{node_id}@{self._owner}")
        return RayReplica(self, spec, index, ctx)

    async def close(self) -> None:
        group, self._group = self._group, None
        if group is not None:
            from ray.util.placement_group import remove_placement_group

            with contextlib.suppress(Exception):
                remove_placement_group(group)
        if self._ray is not None:
            self._ray = None
            await connection.leave()

    def actor_class(self) -> Any:
        """`ReplicaActor` as a Ray actor class (made once: Ray exports a class each time)."""
        if self._actor_class is None:
            self._actor_class = self._ray.remote(ReplicaActor)
        return self._actor_class

    def describe(self) -> str:
        """`{slot: 1} per replica, STRICT_SPREAD`: what it asks the cluster for."""
        wanted = ", ".join(f"{name}: {amount:g}" for name, amount in self.bundle.items())
        return f"{{{wanted}}} per replica, {self.strategy}"

    def actor_options(self, name: str, index: int) -> dict[str, Any]:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundle = dict(self.bundle)
        options: dict[str, Any] = {
            "name": f"{name}@{self._owner}",
            "namespace": NAMESPACE,
            "lifetime": None,  # non-detached: it dies with this flowctl
            "max_restarts": 0,  # a lost replica is replaced by the set, not restarted by Ray behind its back
            "num_cpus": bundle.pop("CPU", 0.0),
            "num_gpus": bundle.pop("GPU", 0.0),
            "scheduling_strategy": PlacementGroupSchedulingStrategy(self._group, placement_group_bundle_index=index),
            "runtime_env": {"env_vars": dict(ACTOR_ENV)},
        }
        if "memory" in bundle:
            options["memory"] = bundle.pop("memory")
        if bundle:
            options["resources"] = bundle
        return options


class RayReplica:
    """A `ReplicaHandle` over one replica actor: its state as the owner last heard it."""

    def __init__(self, placement: RayPlacement, spec: ProcessStartSpec, index: int, ctx: ReplicaContext) -> None:
        self.placement = placement
        self.spec = spec
        self.index = index
        self.ctx = ctx
        self._status = ServiceStatus(state=ServiceState.PENDING, reason="asking the Ray cluster for a place")
        self._url: str | None = None
        self._actor: Any = None
        self._log = ProcessLog()
        self._log.open(log_file(ctx.service.state_dir, ctx.name))
        loop = asyncio.get_running_loop()
        #: settles once ready, pending a place (None) or failed to start (ServiceError)
        self._settled: asyncio.Future[None] = loop.create_future()
        self._lost: asyncio.Future[ReplicaLoss] = loop.create_future()
        self._up_since: float | None = None
        self._stopped = False
        self._watcher: asyncio.Task[None] | None = None
        self._life = asyncio.create_task(self._run(), name=f"ray:{ctx.name}")

    # -- what the set reads ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.ctx.name

    @property
    def url(self) -> str | None:
        return self._url

    @property
    def status(self) -> ServiceStatus:
        status = self._status
        if status.ready and self._url is None:  # the actor's news can come before its answer
            return dataclasses.replace(status, state=ServiceState.STARTING, reason="ready; its URL is on its way")
        return status

    async def wait_ready(self) -> None:
        await asyncio.shield(self._settled)

    async def wait_lost(self) -> ReplicaLoss:
        return await asyncio.shield(self._lost)

    async def exited_within(self, timeout: float) -> bool:
        if self._lost.done() or self._actor is None:
            return True
        from ray.exceptions import RayActorError

        try:
            return bool(await asyncio.wait_for(_future(self._actor.exited_within.remote(timeout)), timeout + 2.0))
        except RayActorError:
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for task in (self._life, self._watcher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        actor, self._actor = self._actor, None
        if actor is not None:
            ray = self.placement._ray
            with contextlib.suppress(Exception):  # a dead actor, or one that does not answer: kill it all the same
                await asyncio.wait_for(_future(actor.stop.remote()), self.spec.stop_timeout + 5.0)
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if self._status.state is not ServiceState.FAILED:
            self._set(ServiceState.STOPPED, None, notify=False)
        self._settle(ServiceError(self.name, "stopped before it was ready"))
        self._lose(ReplicaLoss(reason="stopped", final=True))
        self._log.close()

    # -- its life ---------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._place()
            await self._launch()
        except asyncio.CancelledError:
            raise
        except ServiceError as exc:
            reason = exc.message.removeprefix(f"service '{self.name}': ").splitlines()[0]
            self._event(f"failed to start: {reason}")
            self._set(ServiceState.FAILED, reason)
            self._settle(exc)
            self._lose(ReplicaLoss(reason=reason, final=False))
        except Exception as exc:  # Ray's own errors: the replica is lost, the set decides
            reason = _ray_reason(exc)
            self._event(reason)
            self._set(ServiceState.FAILED, reason)
            self._settle(ServiceError(self.name, reason, hint=_hint(reason)))
            self._lose(ReplicaLoss(reason=reason, final=False))

    async def _place(self) -> None:
        """Wait for the placement group; say `pending` (and let the set go on) while Ray
        has no room for it."""
        placed = _future(self.placement._group.ready())
        done, _ = await asyncio.wait({placed}, timeout=PLACE_WAIT)
        if not done:
            reason = f"waiting for the Ray cluster to have room ({self.placement.describe()})"
            self._event(f"pending: {reason}")
            self._set(ServiceState.PENDING, reason)
            self._settle(None)
        await placed

    async def _launch(self) -> None:
        placement, spec, ctx = self.placement, self.spec, self.ctx
        actor_class = placement.actor_class()
        self._set(ServiceState.STARTING, "starting its Ray actor")
        self._actor = actor_class.options(**placement.actor_options(self.name, self.index)).remote(self.name)
        where = await _future(self._actor.where.remote(spec.port if isinstance(spec.port, int) else None))
        host, port = where["host"], int(where["port"])
        self._event(f"placed on Ray node {where['node'][:12]} ({host}), port {port}")
        fields = dict(ctx.service.fields({"replica": {"index": self.index, "name": self.name, "port": port, "host": host}}))
        # the replica's own spec: one process on that node's address and port (a restart
        # inside the actor keeps them)
        own = spec.model_copy(update={"host": host, "port": port, "replicas": 1, "placement": PlacementSpec()})
        self._watcher = asyncio.create_task(self._watch(), name=f"ray-watch:{self.name}")
        result = await _future(self._actor.start.remote(own, fields, self.index))
        if "error" in result:
            raise ServiceError(self.name, result["error"], hint=result.get("hint"))
        self._url = str(result["output"]["url"])
        self._up_since = time.monotonic()
        self._notify()
        self._settle(None)

    async def _watch(self) -> None:
        """Fetch what the actor has to say until it is lost; Ray's own errors mean it is."""
        from ray.exceptions import ActorUnavailableError, RayError

        seen = 0
        while True:
            try:
                news = await _future(self._actor.watch.remote(seen, WATCH_SECONDS))
            except ActorUnavailableError:  # unreachable for a moment: Ray says "died" when it is
                await asyncio.sleep(1.0)
                continue
            except RayError as exc:
                reason = _ray_reason(exc)
                self._url = None
                self._log.event(reason)  # the set says it on the console ("lost (...)")
                self._set(ServiceState.FAILED, reason)
                self._settle(ServiceError(self.name, reason, hint=_hint(reason)))
                self._lose(ReplicaLoss(reason=reason, final=False, uptime=self._uptime()))
                return
            seen = news["version"]
            for kind, text in news["lines"]:
                self._ship(LineKind(kind), text)
            status: ServiceStatus | None = news["status"]
            if status is not None and status.state is not ServiceState.PENDING:  # PENDING: not launched yet
                self._take(status)
            if news["over"]:
                reason = self._status.reason or self._status.last_exit or "stopped"
                self._lose(ReplicaLoss(reason=reason, exit_code=news["exit_code"], final=True, uptime=self._uptime()))
                return

    # -- reporting ---------------------------------------------------------------------------

    def _take(self, status: ServiceStatus) -> None:
        """The actor's status of its node becomes ours (while the actor lives, it knows best)."""
        old = self._status
        if (old.state, old.reason, old.pid, old.restarts, old.last_exit) != (status.state, status.reason, status.pid, status.restarts, status.last_exit):
            self._status = status
            self._notify()
        else:
            self._status = status

    def _set(self, state: ServiceState, reason: str | None, *, notify: bool = True) -> None:
        self._status = ServiceStatus(state=state, reason=reason, restarts=self._status.restarts, last_exit=self._status.last_exit, last_log=self._status.last_log)
        if notify:
            self._notify()

    def _notify(self) -> None:
        on_change = self.ctx.service.on_change
        if on_change is not None and not self._stopped:
            try:
                on_change(self.name, self.status)
            except Exception as exc:  # the owner's bug must not stop the watching
                self.ctx.service.event(f"on_change failed: {exc!r}")

    def _ship(self, kind: LineKind, text: str) -> None:
        """A line the actor sent: into this replica's log here, and to the console."""
        if kind is LineKind.OUTPUT:
            self._log.line(text)
            self._status.last_log = text
        elif kind is LineKind.EVENT:
            self._log.event(text)
        self.ctx.service.log(ServiceLine(self.name, text, kind))

    def _event(self, text: str) -> None:
        self._ship(LineKind.EVENT, text)

    def _settle(self, outcome: ServiceError | None) -> None:
        if not self._settled.done():
            if outcome is None:
                self._settled.set_result(None)
            else:
                self._settled.set_exception(outcome)
                self._settled.exception()  # retrieved: a set that stopped waiting is no error

    def _lose(self, loss: ReplicaLoss) -> None:
        if not self._lost.done():
            self._lost.set_result(loss)

    def _uptime(self) -> float:
        return time.monotonic() - self._up_since if self._up_since is not None else 0.0


def _future(ref: Any) -> asyncio.Future[Any]:
    """A Ray ObjectRef as an asyncio future (cancelling it stops only the waiting)."""
    return asyncio.wrap_future(ref.future())


def _ray_reason(exc: BaseException) -> str:
    """What Ray said, in one line: `its Ray actor died (it was killed by ray.kill)`, `(its
    worker process has died)`, `(its node has died)`."""
    text = " ".join(str(exc).split())
    because = re.search(r"[Tt]he actor (?:is dead|died) because (.+?)\.(?:\s|$)", text)
    if "ray.kill" in text:
        said = "it was killed by ray.kill"
    elif "No module named 'flowctl" in text:
        said = "flowctl is not installed on its Ray node"
    elif because:
        said = because.group(1).replace("`", "")
    else:
        said = text[:200] or type(exc).__name__
    return f"its Ray actor died ({said})"


def _hint(reason: str) -> str | None:
    return INSTALL_HINT if "not installed" in reason else None


__all__ = ["RayPlacement", "RayReplica"]
