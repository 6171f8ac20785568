"""process-start: launch a long-running server in its own process group and supervise it.

Ready only when its readiness probe passes (HTTP GET expecting 2xx or a given status, or a
TCP connect), within a timeout. A process that exits before it is ready fails the node at
once with its exit code and last log lines. One that dies later is noticed at once, reported
through `status`, and restarted with exponential backoff per its `restart` policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, model_validator

from ..engine.errors import ServiceError
from .base import NodeKind, NodeSpecBase, ServiceContext, ServiceState, ServiceStatus
from .ports import describe_holder, port_is_free
from .process_group import ProcessGroup


class ReadinessSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: HTTP path probed with GET, e.g. /v1/models; `tcp: true` probes a TCP connect instead
    http: str | None = None
    #: expected HTTP status; default any 2xx
    status: int | None = None
    tcp: bool = False
    #: seconds to wait for readiness before failing the node
    timeout: float = 600.0
    #: seconds between probes
    interval: float = 0.25


class RestartSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["never", "on-failure", "always"] = "on-failure"
    #: restarts in a row before giving up (the count resets once a process stays up a minute)
    max_restarts: int = 5
    #: first backoff in seconds, doubled after each failed restart
    backoff: float = 1.0
    max_backoff: float = 30.0


class ProcessStartSpec(NodeSpecBase):
    kind: ClassVar[NodeKind] = NodeKind.SERVICE
    template_fields: ClassVar[tuple[str, ...]] = ("command", "env", "cwd")

    type: Literal["process-start"]
    #: argv list (each item one argument, never re-split); a string is run by `bash -c`
    command: list[str] | str
    env: dict[str, str] = {}
    cwd: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    readiness: ReadinessSpec = ReadinessSpec()
    restart: RestartSpec = RestartSpec()
    #: seconds between SIGTERM and SIGKILL when stopping the process group
    stop_timeout: float = 10.0

    @model_validator(mode="after")
    def _probe_needs_port(self) -> ProcessStartSpec:
        if (self.readiness.http or self.readiness.tcp) and self.port is None:
            raise ValueError("a readiness probe needs `port:`")
        if self.port is not None and not self.readiness.http and not self.readiness.tcp:
            object.__setattr__(self, "readiness", self.readiness.model_copy(update={"tcp": True}))
        return self


class ProcessStartNode:
    def __init__(self, spec: ProcessStartSpec) -> None:
        self.spec = spec
        self.status = ServiceStatus()
        self._group: ProcessGroup | None = None
        self._ctx: ServiceContext | None = None
        self._tail: deque[str] = deque(maxlen=30)
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._log_file: Any = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, ctx: ServiceContext) -> dict[str, Any]:
        self._ctx = ctx
        self._stopping = False
        log_dir = ctx.state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(log_dir / f"{ctx.node_id}.log", "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        await self._launch_until_ready(ctx)
        self._watcher = asyncio.create_task(self._supervise(ctx), name=f"supervise:{ctx.node_id}")
        return self.output

    @property
    def output(self) -> dict[str, Any]:
        spec = self.spec
        url = f"http://{spec.host}:{spec.port}" if spec.port else None
        return {"pid": self._group.pid if self._group else None, "host": spec.host, "port": spec.port, "url": url}

    async def stop(self) -> None:
        self._stopping = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        group, self._group = self._group, None
        if group is not None:
            await group.stop(self.spec.stop_timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.status.state is not ServiceState.FAILED:
            self.status.state = ServiceState.STOPPED
            self.status.reason = None
        self.status.pid = None

    # -- start and readiness ---------------------------------------------------------------

    async def _launch_until_ready(self, ctx: ServiceContext) -> None:
        spec = self.spec
        if spec.port is not None and not port_is_free(spec.host, spec.port):
            reason = describe_holder(spec.port)
            self._set(ServiceState.FAILED, reason)
            raise ServiceError(ctx.node_id, reason, hint="stop that process or give this node another `port:`")
        self._set(ServiceState.STARTING, "starting")
        resolved = ctx.resolved
        command = resolved["command"]
        argv = ["bash", "-c", command] if isinstance(command, str) else [str(a) for a in command]
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (resolved.get("env") or {}).items()})
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self._group = await ProcessGroup.spawn(
                argv, env=env, cwd=resolved.get("cwd"), on_line=self._on_line, grace=spec.stop_timeout
            )
        except OSError as exc:
            self._set(ServiceState.FAILED, f"cannot start {argv[0]}: {exc.strerror or exc}")
            raise ServiceError(ctx.node_id, self.status.reason or "cannot start") from None
        self.status.pid = self._group.pid
        ctx.log(f"[{ctx.node_id}] started pid {self._group.pid}: {' '.join(argv)[:200]}")
        try:
            await self._wait_ready(ctx, self._group)
        except BaseException:
            group, self._group = self._group, None
            await asyncio.shield(group.stop(spec.stop_timeout))
            raise
        self._set(ServiceState.READY, None)
        ctx.log(f"[{ctx.node_id}] ready")

    async def _wait_ready(self, ctx: ServiceContext, group: ProcessGroup) -> None:
        probe = self.spec.readiness
        started = time.monotonic()
        deadline = started + probe.timeout
        last_progress = started
        async with httpx.AsyncClient(timeout=httpx.Timeout(2.0), trust_env=False) as client:
            while True:
                if group.returncode is not None:
                    await group.wait()
                    reason = f"exited with code {group.returncode} before it was ready"
                    self._set(ServiceState.FAILED, reason)
                    raise ServiceError(ctx.node_id, f"{reason}; last output:\n" + "\n".join(list(self._tail)[-10:]))
                if await self._probe(client):
                    return
                now = time.monotonic()
                if now >= deadline:
                    reason = f"not ready after {probe.timeout:g}s ({self._probe_text()})"
                    self._set(ServiceState.FAILED, reason)
                    raise ServiceError(ctx.node_id, reason, hint="raise `readiness.timeout`, or check the log: " + (self._tail[-1] if self._tail else "no output yet"))
                if now - last_progress >= 5.0:
                    last_progress = now
                    latest = self._tail[-1] if self._tail else "no output yet"
                    ctx.log(f"[{ctx.node_id}] waiting for {self._probe_text()} ({now - started:.0f}s): {latest[:160]}")
                # wake early when the process exits, else probe again after the interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(group.process.wait()), timeout=probe.interval)

    def _probe_text(self) -> str:
        spec = self.spec
        if spec.readiness.http:
            return f"GET http://{spec.host}:{spec.port}{spec.readiness.http}"
        if spec.readiness.tcp:
            return f"TCP {spec.host}:{spec.port}"
        return "process start"

    async def _probe(self, client: httpx.AsyncClient) -> bool:
        spec = self.spec
        probe = spec.readiness
        if probe.http:
            try:
                response = await client.get(f"http://{spec.host}:{spec.port}{probe.http}")
            except httpx.HTTPError:
                return False
            if probe.status is not None:
                return response.status_code == probe.status
            return 200 <= response.status_code < 300
        if probe.tcp:
            try:
                _reader, writer = await asyncio.wait_for(asyncio.open_connection(spec.host, spec.port), timeout=2.0)
            except (OSError, TimeoutError):
                return False
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return True
        return True

    # -- liveness and restart ----------------------------------------------------------------

    async def _supervise(self, ctx: ServiceContext) -> None:
        restart = self.spec.restart
        failures = 0
        while not self._stopping:
            group = self._group
            if group is None:
                return
            up_since = time.monotonic()
            code = await group.wait()
            if self._stopping:
                return
            await group.stop(1.0)  # what the leader left behind in its group goes too
            reason = f"exited with code {code}"
            self._set(ServiceState.FAILED, reason)
            ctx.log(f"[{ctx.node_id}] {reason}; last output: {self._tail[-1] if self._tail else '-'}")
            self._notify(ctx)
            if restart.policy == "never" or (restart.policy == "on-failure" and code == 0):
                return
            if time.monotonic() - up_since > 60:
                failures = 0
            while not self._stopping:
                if failures >= restart.max_restarts:
                    self._set(ServiceState.FAILED, f"{reason}; gave up after {failures} restarts")
                    self._notify(ctx)
                    return
                delay = min(restart.backoff * (2**failures), restart.max_backoff)
                failures += 1
                self._set(ServiceState.RESTARTING, f"{reason}; restart {failures} in {delay:g}s")
                self.status.restarts += 1
                self._notify(ctx)
                await asyncio.sleep(delay)  # backoff between restarts, not synchronisation
                try:
                    await self._launch_until_ready(ctx)
                except ServiceError as exc:
                    ctx.log(f"[{ctx.node_id}] restart failed: {exc.message.splitlines()[0]}")
                    continue
                self._notify(ctx)
                break

    def _notify(self, ctx: ServiceContext) -> None:
        if ctx.on_change is not None:
            ctx.on_change(ctx.node_id, self.status)

    def _set(self, state: ServiceState, reason: str | None) -> None:
        self.status.state = state
        self.status.reason = reason
        self.status.pid = self._group.pid if self._group and state is not ServiceState.FAILED else None

    def _on_line(self, line: str) -> None:
        self._tail.append(line)
        self.status.last_log = line
        if self._log_file is not None:
            with contextlib.suppress(ValueError):
                self._log_file.write(line + "\n")
        if self._ctx is not None:
            self._ctx.log(f"[{self._ctx.node_id}] {line}")
