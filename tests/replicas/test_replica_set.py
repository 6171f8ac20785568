"""The replica set through its seam, in process: a placement whose replicas report their
loss as not final (as a Ray actor that died does) is replaced by the set per the node's
restart policy; the set is degraded meanwhile and its output's URLs follow; a set whose
replicas all fail to start fails naming each, and leaves nothing running."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from replicas_support import replica_argv
from supervision.supervision_support import MARK_ENV, Recorder, wait_gone
from support.waiting import async_wait_until

from flowctl.engine.errors import ServiceError
from flowctl.nodes import replica_set
from flowctl.nodes.base import ServiceContext, ServiceState
from flowctl.nodes.placement import PlacementSpec, ReplicaContext, ReplicaHandle, ReplicaLoss
from flowctl.nodes.placement.local import LocalPlacement, LocalReplica
from flowctl.nodes.process_start import ProcessStartSpec


class HostedReplica(LocalReplica):
    """A local replica that, like an actor, does not restart itself: its loss is not final."""

    async def wait_lost(self) -> ReplicaLoss:
        loss = await super().wait_lost()
        return dataclasses.replace(loss, final=False)


class HostedPlacement(LocalPlacement):
    """Replicas that leave restarting to the set (the spec each runs says `restart: never`)."""

    async def start_replica(self, spec: ProcessStartSpec, index: int, ctx: ReplicaContext) -> ReplicaHandle:
        from flowctl.nodes.process_start import ProcessStartNode

        return HostedReplica(ProcessStartNode(spec.model_copy(update={"restart": spec.restart.model_copy(update={"policy": "never"})})), ctx)


def spec(mark: str, **fields: Any) -> ProcessStartSpec:
    base = {
        "type": "process-start",
        "command": replica_argv(tokens=3),
        "env": {MARK_ENV: mark},
        "port": "auto",
        "replicas": 2,
        "readiness": {"http": "/v1/models", "timeout": 20, "interval": 0.05},
        "restart": {"policy": "on-failure", "backoff": 0.2},
        "stop_timeout": 3,
    }
    return ProcessStartSpec.model_validate({**base, **fields})


def context(tmp_path: Path, node: ProcessStartSpec, rec: Recorder) -> ServiceContext:
    resolved = {"command": node.command, "env": dict(node.env), "cwd": None}

    def render(extra: Any) -> dict[str, Any]:
        port = str(extra["replica"]["port"])
        return {**resolved, "command": [port if part == "${replica.port}" else part for part in node.command]}

    return ServiceContext(node_id="llm", resolved=resolved, state_dir=tmp_path / "state", cache_dir=tmp_path / "cache", log=rec.log, on_change=rec.on_change, render=render)


@pytest.fixture
def hosted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_set, "open_placement", lambda placement, node_id: HostedPlacement(PlacementSpec()))


async def test_a_replica_lost_for_good_is_replaced_by_the_set(tmp_path: Path, mark: str, hosted: None) -> None:
    # a 2 s backoff: the degraded set is observed before the replacement can be back (with
    # 0.2 s, a busy machine saw it back, on a new port, before the first look)
    node = spec(mark, restart={"policy": "on-failure", "backoff": 2})
    rec = Recorder()
    replicas = replica_set.ReplicaSetNode(node)
    try:
        output = await replicas.start(context(tmp_path, node, rec))
        assert replicas.status.state is ServiceState.READY and len(output["replicas"]) == 2
        first = replicas.replicas()
        os.kill(first[1]["pid"], signal.SIGKILL)
        # the set's state follows its replicas' at once; its output's URLs when the set has
        # handled the loss (the balancer asks each replica whether it is ready in between)
        await async_wait_until(lambda: replicas.status.state is ServiceState.DEGRADED and len(output["replicas"]) == 1, timeout=10, message=lambda: rec.text())
        assert "llm.1" in (replicas.status.reason or "") and output["replicas"] == [first[0]["url"]]
        await async_wait_until(lambda: replicas.status.state is ServiceState.READY, timeout=20, message=lambda: rec.text())
        after = replicas.replicas()
        assert after[1]["restarts"] == 1 and after[1]["pid"] not in (None, first[1]["pid"]) and after[0]["pid"] == first[0]["pid"]
        assert len(output["replicas"]) == 2 and "[llm.1] lost (was killed by SIGKILL); starting it again" in rec.text()
        assert ServiceState.DEGRADED in rec.states()
    finally:
        await replicas.stop()
    wait_gone(mark, 10, "after the set stopped")


async def test_a_set_none_of_whose_replicas_start_fails_naming_each(tmp_path: Path, mark: str) -> None:
    node = spec(mark, command=["bash", "-c", "echo no model here; exit 3"], readiness={"http": "/v1/models", "timeout": 10, "interval": 0.05})
    rec = Recorder()
    replicas = replica_set.ReplicaSetNode(node)
    with pytest.raises(ServiceError, match=r"none of its 2 replicas got ready \(llm\.0: exited with code 3 before it was ready; last output: no model here; llm\.1: exited with code 3 before it was ready; last output: no model here\)"):
        await replicas.start(context(tmp_path, node, rec))
    assert replicas.status.state is ServiceState.FAILED
    wait_gone(mark, 5, "after the failed start")


class FirstStartFails(HostedPlacement):
    """Replica 1's first start exits before it is ready; later starts are fine."""

    def __init__(self, spec: PlacementSpec) -> None:
        super().__init__(spec)
        self.starts: dict[int, int] = {}

    async def start_replica(self, spec: ProcessStartSpec, index: int, ctx: ReplicaContext) -> ReplicaHandle:
        self.starts[index] = self.starts.get(index, 0) + 1
        if index == 1 and self.starts[index] == 1:
            failing = {"command": ["bash", "-c", "echo cannot load; exit 4"], "env": ctx.service.resolved["env"], "cwd": None}
            ctx = dataclasses.replace(ctx, service=dataclasses.replace(ctx.service, render=lambda extra: failing))
        return await super().start_replica(spec, index, ctx)


async def test_a_replica_that_fails_to_start_leaves_the_set_degraded_until_it_is_retried(tmp_path: Path, mark: str, monkeypatch: pytest.MonkeyPatch) -> None:
    placement = FirstStartFails(PlacementSpec())
    monkeypatch.setattr(replica_set, "open_placement", lambda spec, node_id: placement)
    node = spec(mark, restart={"policy": "on-failure", "backoff": 0.5})
    rec = Recorder()
    replicas = replica_set.ReplicaSetNode(node)
    try:
        output = await replicas.start(context(tmp_path, node, rec))
        status = replicas.status
        assert status.state is ServiceState.DEGRADED and status.ready, status
        assert "llm.1 exited with code 4 before it was ready; last output: cannot load" in (status.reason or "")
        assert len(output["replicas"]) == 1
        await async_wait_until(lambda: replicas.status.state is ServiceState.READY, timeout=20, message=lambda: rec.text())
        assert placement.starts == {0: 1, 1: 2} and len(output["replicas"]) == 2 and replicas.replicas()[1]["restarts"] == 1
    finally:
        await replicas.stop()
    wait_gone(mark, 10, "after the set stopped")
