"""The inside of a Ray-placed replica: one process-start node, run in a Ray actor.

`ReplicaActor` is the class `ray.py` makes an actor of (`ray.remote` is applied there, at
run time: importing this module imports no Ray). Inside the actor the replica is today's
`ProcessStartNode`, unchanged: its own process group with flowctl's parent-death watchdog,
the readiness probe, the restart policy, the log tail. The actor only carries what that
node says back to the owner, who may be on another machine:

- `where(port)`: the node's address and a port for the replica (a free one on *this* node
  for `port: auto`), so the owner can render `${replica.port}` / `${replica.host}`;
- `start(spec, fields, index)`: launch and wait for readiness; the outcome as data (an
  exception would cross Ray as a wrapped copy of a flowctl class, which it need not be);
- `watch(seen, timeout)`: a long poll, answered as soon as anything new is there (lines of
  output, flowctl's events about it, a change of status) or after `timeout`;
- `exited_within(timeout)`, `stop()`: as the node's own.

Tokens never pass through here: the owner's http-stream node connects to the server's URL.
The actor's worker is started with `RAY_kill_child_processes_on_worker_exit=false` (see
`ray.py`): when Ray kills the actor, the watchdog outlives it and stops the server's group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

from ...engine.errors import FlowctlError
from ..base import ServiceContext, ServiceLine, ServiceStatus
from ..proc import alive
from ..process_start import ProcessStartNode, ProcessStartSpec, free_port

#: lines kept for an owner that has not fetched them yet
_KEEP_LINES = 2000


class ReplicaActor:
    """One replica of a process-start node, on whichever Ray node hosts this actor."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._node: ProcessStartNode | None = None
        #: every change (a line, a status change) bumps the version; the owner asks for news
        #: after the version it has seen
        self._version = 0
        self._lines: deque[tuple[int, str, str]] = deque(maxlen=_KEEP_LINES)
        self._waiters: list[asyncio.Future[None]] = []
        self._supervised: asyncio.Task[None] | None = None
        self._state_dir = _state_dir(name)

    async def where(self, port: int | None) -> dict[str, Any]:
        """This node's address as Ray knows it, and the replica's port there."""
        import ray

        host = str(ray.util.get_node_ip_address())
        return {"host": host, "port": port if port is not None else free_port(host), "node": str(ray.get_runtime_context().get_node_id())}

    async def start(self, spec: ProcessStartSpec, fields: dict[str, Any], index: int) -> dict[str, Any]:
        """Launch the process and wait until it is ready: `{"output": ...}` or `{"error", "hint"}`."""
        node = ProcessStartNode(spec)
        self._node = node
        ctx = ServiceContext(node_id=self.name, resolved=fields, state_dir=self._state_dir, log=self._line, on_change=self._changed, replica_index=index)
        try:
            output = await node.start(ctx)
        except FlowctlError as exc:
            self._bump()
            return {"error": exc.message.removeprefix(f"service '{self.name}': "), "hint": exc.hint}
        except Exception as exc:  # the owner is told why, in words, rather than a Ray-wrapped copy
            self._bump()
            return {"error": f"{type(exc).__name__}: {exc}", "hint": None}
        self._supervised = asyncio.create_task(self._watch_supervision(node))
        self._bump()
        return {"output": output}

    async def watch(self, seen: int, timeout: float) -> dict[str, Any]:
        """What is new after version `seen`: lines (kind, text), the status, and whether
        supervision is over for good (the restart policy gave up; `exit_code` of the last
        death). Answers at once when there is news, else after `timeout` seconds."""
        if self._version <= seen:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        node = self._node
        return {
            "version": self._version,
            "lines": [(kind, text) for version, kind, text in self._lines if version > seen],
            "status": node.status if node is not None else None,
            "over": self._supervised is not None and self._supervised.done(),
            "exit_code": node.last_exit_code if node is not None else None,
        }

    async def exited_within(self, timeout: float) -> bool:
        node = self._node
        return True if node is None else await node.exited_within(timeout)

    async def stop(self) -> None:
        node = self._node
        if node is not None:
            await node.stop()
        if self._supervised is not None:
            self._supervised.cancel()
        shutil.rmtree(self._state_dir, ignore_errors=True)
        self._bump()

    # -- what the node says ----------------------------------------------------------------

    async def _watch_supervision(self, node: ProcessStartNode) -> None:
        await node.supervised()
        self._bump()

    def _line(self, line: ServiceLine) -> None:
        self._version += 1
        self._lines.append((self._version, line.kind.value, line.text))
        self._wake()

    def _changed(self, _node: str, _status: ServiceStatus) -> None:
        self._bump()

    def _bump(self) -> None:
        self._version += 1
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _state_dir(name: str) -> Path:
    """Where the node's own log file lives on this Ray node, for as long as the actor does
    (the owner writes its copy from the lines it fetches): `<tmp>/flowctl-ray/<pid>-<name>`.
    An actor killed outright cannot remove its own: the next one on the node removes those
    whose actor process is gone."""
    base = Path(tempfile.gettempdir()) / "flowctl-ray"
    with contextlib.suppress(OSError):
        for stale in base.iterdir():
            pid = stale.name.split("-", 1)[0]
            if pid.isdigit() and not alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
    path = base / f"{os.getpid()}-{name}"
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["ReplicaActor"]
