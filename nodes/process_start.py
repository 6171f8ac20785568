"""process-start: launch a long-running server in its own process group and supervise it.

Ready only when its readiness probe passes (`readiness.py`: an HTTP GET, or a POST with a JSON
body such as a 1-token generation, expecting 2xx or a given status; or a TCP connect), within a
timeout; while it waits, a progress line with the process's latest output is logged every
`readiness.progress` seconds. A port held by another process before the start is an error
naming that process, never "ready". A process that exits before it
is ready fails the node at once with its exit code and last log lines. One that dies later
is noticed at once (the owner hears of it through `on_change`, so runs in flight fail and
`/ready` turns 503), and is restarted as its `restart` policy decides (`restart.py`).

Its output goes, line by line, to its log (`process_log.py`: `<state dir>/logs/<node id>.log`,
what `flowctl logs NODE` prints) and to the owner's sink as output lines (the console shows
them with `--verbose`); what flowctl says about it (started, ready, exited) goes there as
events.

    llm:
      type: process-start
      command: [python, -m, vllm.entrypoints.openai.api_server, --port, "8000"]
      port: 8000
      readiness: {http: /v1/models, timeout: 1800}   # or a 1-token generation:
      # readiness: {http: /v1/completions, method: POST, body: {prompt: Hi, max_tokens: 1}}
      # readiness: {log: 'listening on (?P<addr>[^ ]+)'}   # a line of its output; groups: output.matched
      restart: on-failure          # or {policy: on-failure, max_restarts: 5, backoff: 1}
      stop_timeout: 20

`port: auto` takes a free port at start (kept across restarts while it stays free); the
command reads it as `${replica.port}` (also `${replica.index}`, `${replica.name}`, and
`${replica.host}`: `host:`, or on Ray the address of the node the replica was placed on).
`replicas: N` runs N copies (`llm.0`, `llm.1`, ...) owned by a `ReplicaSetNode`
(`replica_set.py`), placed by `placement:` (`nodes/placement/`); this module is one copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..engine.errors import ServiceError
from .balancer import Endpoint, ReplicaPool
from .base import NodeKind, NodeSpecBase, ServiceContext, ServiceState, ServiceStatus
from .heartbeat import heartbeat
from .placement.base import PlacementSpec
from .ports import foreign_answerer, port_conflict
from .process_group import ProcessGroup, describe_exit
from .process_log import ProcessLog, log_file
from .readiness import ReadinessSpec, describe_probe, probe, url_host
from .restart import RestartSpec, decide, restart_schema

#: lines of a process's output shown on the console when it dies (all of them are in its log)
EXIT_TAIL_LINES = 5


#: what `${replica.*}` offers a process-start node's command, env and cwd
_REPLICA_SOURCE = frozenset({"replica"})


#: seconds to wait for the exit code of a server known to have exited (see exited_within)
_EXIT_CODE_GRACE = 2.0


class ProcessStartSpec(NodeSpecBase):
    kind: ClassVar[NodeKind] = NodeKind.SERVICE
    template_fields: ClassVar[tuple[str, ...]] = ("command", "env", "cwd")
    field_sources: ClassVar[Mapping[str, frozenset[str]]] = {"command": _REPLICA_SOURCE, "env": _REPLICA_SOURCE, "cwd": _REPLICA_SOURCE}

    type: Literal["process-start"]
    #: argv list (each item one argument, never re-split); a string is run by `bash -c`
    command: list[str] | str
    env: dict[str, str] = {}
    cwd: str | None = None
    host: str = "127.0.0.1"
    #: the port it listens on, or `auto`: a free one chosen at start (`${replica.port}`)
    port: Annotated[int, Field(ge=1, le=65535)] | Literal["auto"] | None = None
    #: copies of the process, each its own process group and port (`port: auto`), balanced
    #: over by http-stream's `service:`
    replicas: int = Field(default=1, ge=1, le=256)
    #: where the replicas run: `{engine: local | ray, address, resources, spread}`
    placement: PlacementSpec = PlacementSpec()
    readiness: ReadinessSpec = ReadinessSpec()
    #: `never`, `on-failure` or `always`, or a mapping with the policy, limit and backoff
    restart: RestartSpec = Field(default=RestartSpec(), json_schema_extra=restart_schema)
    #: seconds between SIGTERM and SIGKILL when stopping the process group
    stop_timeout: float = Field(default=10.0, ge=0)

    def unservable(self) -> str | None:
        return None if self.port is not None else "it has no `port:` to send requests to"

    @field_validator("replicas")
    @classmethod
    def _replicas_need_ports(cls, value: int, info: ValidationInfo) -> int:
        port = info.data.get("port")
        if value > 1 and isinstance(port, int):
            raise ValueError(f"{value} replicas cannot all listen on port {port}: write `port: auto` (each replica gets a free port, `${{replica.port}}` in the command)")
        return value

    @field_validator("restart", mode="before")
    @classmethod
    def _restart_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"policy": value}
        return value

    @model_validator(mode="after")
    def _probe_needs_port(self) -> ProcessStartSpec:
        if self.readiness.probes and self.port is None:
            raise ValueError("a readiness probe needs `port:`")
        if self.port is not None and not self.readiness.probes and self.readiness.log is None:
            object.__setattr__(self, "readiness", self.readiness.model_copy(update={"tcp": True}))
        return self


class ProcessStartNode:
    def __init__(self, spec: ProcessStartSpec) -> None:
        self.spec = spec
        self._status = ServiceStatus()
        self._group: ProcessGroup | None = None
        self._ctx: ServiceContext | None = None
        self._log = ProcessLog()
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._reported_exit: int | None = None  # the pid whose exit was reported last
        #: the port it listens on: `port:`, or with `port: auto` the one chosen at start
        self.port: int | None = spec.port if isinstance(spec.port, int) else None
        #: the exit code of the process's last death (None: not died, or unknown)
        self.last_exit_code: int | None = None
        #: `readiness.log`: the pattern, and the named groups of the line that matched it
        #: since the last launch (None: none yet)
        self._ready_line = re.compile(spec.readiness.log) if spec.readiness.log is not None else None
        self.matched: dict[str, str] | None = None
        #: a pool of one, so http-stream's `service:` reads a plain node as it reads replicas
        self._endpoint = Endpoint("", lambda: self.output["url"], lambda: self.status.ready)
        self.pool = ReplicaPool("", lambda: [self._endpoint])

    @property
    def status(self) -> ServiceStatus:
        """The node's state, true at the moment it is read: a process that has died is reported
        down even before the event loop has handled its exit (a run that broke off because
        the server died then names the service, not just the broken connection)."""
        status = self._status
        if status.state is ServiceState.READY and self._group is not None:
            code = self._group.peek_exit()
            if code is not False:
                # a view, not a change: the supervising task records the exit with its code
                reason = describe_exit(code) if code is not None else "exited"
                return dataclasses.replace(status, state=ServiceState.FAILED, reason=reason, pid=None, started=None, last_exit=reason)
        return status

    @status.setter
    def status(self, value: ServiceStatus) -> None:
        self._status = value

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, ctx: ServiceContext) -> dict[str, Any]:
        self._ctx = ctx
        self._endpoint.name = self.pool.service = ctx.node_id
        self._stopping = False
        self._log.open(log_file(ctx.state_dir, ctx.node_id))
        try:
            await self._launch_until_ready(ctx)
        except BaseException:
            self._log.close()
            raise
        self._watcher = asyncio.create_task(self._supervise(ctx), name=f"supervise:{ctx.node_id}")
        return self.output

    @property
    def output(self) -> dict[str, Any]:
        spec = self.spec
        url = f"http://{url_host(spec.host)}:{self.port}" if self.port else None
        output: dict[str, Any] = {"pid": self._group.pid if self._group else None, "host": spec.host, "port": self.port, "url": url}
        if self._ready_line is not None:
            output["matched"] = self.matched
        return output

    async def supervised(self) -> None:
        """Return once supervision is over for good: the process is down and its restart
        policy will not bring it back (or the node was stopped)."""
        watcher = self._watcher
        if watcher is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(watcher)

    @property
    def log_path(self) -> Path | None:
        return log_file(self._ctx.state_dir, self._ctx.node_id) if self._ctx else None

    async def exited_within(self, timeout: float) -> bool:
        """True if the process has exited or exits within `timeout` seconds. For an owner that
        saw a connection to the server break and wants to know whether the server died (its
        exit reaches us a moment after its sockets close)."""
        group = self._group
        if group is None:
            return True
        exited = group.peek_exit()
        if exited is not False and exited is not None:
            return True
        # running, or reaped with its exit code not reported yet: wait for asyncio to say
        try:
            await asyncio.wait_for(asyncio.shield(group.process.wait()), timeout)
        except TimeoutError:
            if group.peek_exit() is None:
                # reaped meanwhile: the code is on its way from asyncio's child watcher, which a
                # busy machine can delay past `timeout`; the cause a user reads needs it
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(group.process.wait()), _EXIT_CODE_GRACE)
                return True
            return exited is None
        return True

    def exiting(self) -> bool:
        group = self._group
        return group is not None and self._status.state is ServiceState.READY and group.exiting()

    async def stop(self) -> None:
        self._stopping = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        group, self._group = self._group, None
        if group is not None:
            code = group.peek_exit()
            if code is None:  # reaped a moment ago: asyncio is about to hand us the code
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(group.process.wait(), timeout=1.0)
                code = group.returncode
            if code is False:
                self._record(f"stopping pid {group.pid} (SIGTERM, then SIGKILL after {self.spec.stop_timeout:g}s)")
            elif self._ctx is not None:  # it died on its own before anyone noticed
                self._report_exit(self._ctx, group, describe_exit(code) if code is not None else "exited")
            code = await group.stop(self.spec.stop_timeout)
            if self._reported_exit != group.pid and self._ctx is not None:
                self._reported_exit = group.pid
                self._record(f"stopped pid {group.pid}: {describe_exit(code)}")
                self._ctx.event(f"stopped pid {group.pid}: {describe_exit(code)}")
        self._log.close()
        if self._status.state is not ServiceState.FAILED:
            self._status.state = ServiceState.STOPPED
            self._status.reason = None
        self._status.pid = None
        self._status.started = None

    # -- start and readiness ---------------------------------------------------------------

    async def _launch_until_ready(self, ctx: ServiceContext) -> None:
        spec = self.spec
        if spec.port == "auto" and (self.port is None or port_conflict(spec.host, self.port) is not None):
            self.port = free_port(spec.host)  # a restart keeps its port while it is free
        if self.port is not None:
            held = port_conflict(spec.host, self.port)
            if held is not None:
                self._set(ServiceState.FAILED, held)
                self._record(held)
                raise ServiceError(ctx.node_id, held, hint="stop that process or give this node another `port:`")
        self._set(ServiceState.STARTING, "starting")
        self._log.tail.clear()
        self.matched = None
        resolved = ctx.fields({"replica": {"index": ctx.replica_index, "name": ctx.node_id, "port": self.port, "host": spec.host}})
        command = resolved["command"]
        argv = ["bash", "-c", command] if isinstance(command, str) else command_argv(command)
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (resolved.get("env") or {}).items()})
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            group = await ProcessGroup.spawn(
                argv,
                env=env,
                cwd=resolved.get("cwd"),
                on_line=self._on_line,
                on_partial=self._on_partial,
                grace=spec.stop_timeout,
            )
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename and exc.filename != argv[0] else ""
            self._set(ServiceState.FAILED, f"cannot start {argv[0]}: {exc.strerror or exc}{where}")
            self._record(self._status.reason or "cannot start")
            raise ServiceError(ctx.node_id, self._status.reason or "cannot start") from None
        self._group = group
        self._status.pid = group.pid
        self._status.started = time.time()
        shown = " ".join(argv)
        self._record(f"started pid {group.pid}: {shown}")
        ctx.event(f"started pid {group.pid}: {shown[:200]}".replace("\n", "\\n"))  # one line, even for a script
        started = time.monotonic()
        try:
            await self._wait_ready(ctx, group)
        except BaseException:
            if self._group is group:
                self._group = None
            await group.stop(spec.stop_timeout)
            raise
        self._set(ServiceState.READY, None)
        took = time.monotonic() - started
        self._record(f"ready after {took:.1f}s")
        written = self._log.lines_written
        ctx.event(f"ready ({took:.1f}s; {written} line{'s' if written != 1 else ''} of output in its log)" if written else f"ready ({took:.1f}s)")

    async def _wait_ready(self, ctx: ServiceContext, group: ProcessGroup) -> None:
        probe_spec = self.spec.readiness
        started = time.monotonic()
        deadline = started + probe_spec.timeout
        exited = asyncio.ensure_future(group.process.wait())

        def beat(elapsed: float) -> None:  # also while one probe takes long (a first generation)
            ctx.progress(f"waiting for {self._probe_text()} ({elapsed:.0f}s of {probe_spec.timeout:g}s): {self._latest()[:160]}")

        try:
            async with heartbeat(probe_spec.progress, beat), httpx.AsyncClient(timeout=httpx.Timeout(2.0), trust_env=False) as client:
                while True:
                    if exited.done() or group.peek_exit() is not False:
                        await asyncio.wait({exited}, timeout=1.0)  # let asyncio collect the code
                        await group.drain_output(2.0)  # its last words are what explains the exit
                        reason = f"{describe_exit(group.returncode)} before it was ready"
                        self._set(ServiceState.FAILED, reason)
                        self._status.last_exit = reason
                        self._record(reason)
                        raise ServiceError(ctx.node_id, f"{reason}; last output:\n{self._log.last(10)}")
                    if await self._probe(client) and group.peek_exit() is False:
                        self._check_owner(ctx, group)
                        return
                    now = time.monotonic()
                    if now >= deadline:
                        reason = f"not ready after {probe_spec.timeout:g}s ({self._probe_text()})"
                        self._set(ServiceState.FAILED, reason)
                        self._record(reason)
                        raise ServiceError(ctx.node_id, f"{reason}; last output: {self._latest()}", hint="raise `readiness.timeout`, or see `flowctl logs " + ctx.node_id + "`")
                    # wake early when the process exits, else probe again after the interval
                    await asyncio.wait({exited}, timeout=min(probe_spec.interval, max(deadline - now, 0.01)))
        finally:
            if not exited.done():
                exited.cancel()

    async def _probe(self, client: httpx.AsyncClient) -> bool:
        if self._ready_line is not None:  # `_on_line` watches for it
            return self.matched is not None
        return await probe(self.spec.readiness, self.spec.host, self.port, client)

    def _check_owner(self, ctx: ServiceContext, group: ProcessGroup) -> None:
        """The probe answered, but is it our process answering? A listener that was there
        before our process started (it won a race past the pre-check) is not ours."""
        if self.port is None:
            return
        reason = foreign_answerer(self.port, self.spec.host, group.pgid, group.pid)
        if reason is not None:
            self._set(ServiceState.FAILED, reason)
            self._record(reason)
            raise ServiceError(ctx.node_id, reason, hint="stop that process or give this node another `port:`")

    def _probe_text(self) -> str:
        return describe_probe(self.spec.readiness, self.spec.host, self.port)

    # -- liveness and restart ----------------------------------------------------------------

    async def _supervise(self, ctx: ServiceContext) -> None:
        try:
            await self._supervise_loop(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave the node "restarting" forever
            reason = f"supervision failed: {type(exc).__name__}: {exc}"
            self._set(ServiceState.FAILED, reason)
            self._record(reason)
            ctx.event(reason)
            self._notify(ctx)

    async def _supervise_loop(self, ctx: ServiceContext) -> None:
        failures = 0  # restarts in a row
        while not self._stopping:
            group = self._group
            if group is None:
                return
            up_since = time.monotonic()
            code = await group.process.wait()
            if self._stopping:
                return
            uptime = time.monotonic() - up_since
            self.last_exit_code = code
            # tell the owner first, at once: runs in flight fail, /ready turns 503
            reason = describe_exit(code)
            self._set(ServiceState.FAILED, reason)
            self._status.last_exit = reason  # kept through the restarts, for the UI and /ready
            self._notify(ctx)
            await group.drain_output(0.2)  # its last words, when they come at once
            self._report_exit(ctx, group, reason)
            await group.stop(min(self.spec.stop_timeout, 1.0))  # what the leader left behind goes too
            while not self._stopping:
                decision = decide(self.spec.restart, failures=failures, exit_code=code, uptime=uptime)
                if decision.gave_up:
                    given_up = f"{reason}; gave up after {failures} restarts"
                    self._set(ServiceState.FAILED, given_up)
                    self._record(given_up)
                    ctx.event(given_up)
                    self._notify(ctx)
                if not decision.restart:
                    return
                failures = decision.failures
                self._set(ServiceState.RESTARTING, f"{reason}; restart {failures} of {self.spec.restart.max_restarts} in {decision.delay:g}s")
                self._status.restarts += 1
                self._notify(ctx)
                await asyncio.sleep(decision.delay)  # the backoff itself; stop() cancels it
                try:
                    await self._launch_until_ready(ctx)
                except ServiceError as exc:
                    reason = exc.message.removeprefix(f"service '{ctx.node_id}': ").splitlines()[0]
                    ctx.event(f"restart failed: {reason}")
                    uptime = 0.0  # a restart that never got ready was up for no time
                    continue
                self._notify(ctx)
                break

    # -- reporting ---------------------------------------------------------------------------

    def _report_exit(self, ctx: ServiceContext, group: ProcessGroup, reason: str) -> None:
        if self._reported_exit == group.pid:
            return
        self._reported_exit = group.pid
        last = self._log.tail[-1] if self._log.tail else "-"
        self._record(f"{reason}; last output: {last}")
        ctx.event(f"{reason}; last output:\n{self._log.last(EXIT_TAIL_LINES)}")

    def _notify(self, ctx: ServiceContext) -> None:
        if ctx.on_change is not None:
            try:
                ctx.on_change(ctx.node_id, self.status)
            except Exception as exc:  # the owner's bug must not stop supervision
                ctx.event(f"on_change failed: {exc!r}")

    def _set(self, state: ServiceState, reason: str | None) -> None:
        self._status.state = state
        self._status.reason = reason
        group = self._group
        alive = group is not None and group.returncode is None
        self._status.pid = group.pid if group is not None and alive and state is not ServiceState.FAILED else None
        if self._status.pid is None:
            self._status.started = None

    def _latest(self) -> str:
        return self._status.last_log or (self._log.tail[-1] if self._log.tail else "no output yet")

    def _on_line(self, line: str) -> None:
        if self._ready_line is not None and self.matched is None and (found := self._ready_line.search(line)) is not None:
            self.matched = {name: value for name, value in found.groupdict().items() if value is not None}
        self._log.line(line)
        self._status.last_log = line
        if self._ctx is not None:
            self._ctx.output(line)

    def _on_partial(self, text: str) -> None:
        # a line redrawn in place (a progress bar): remembered for progress, not logged
        self._status.last_log = text

    def _record(self, event: str) -> None:
        """A supervision event, in the node's log file beside the process's own lines."""
        self._log.event(event)


def command_argv(command: list[Any]) -> list[str]:
    """A command list as argv: an item that was one template yielding a list (the URLs of a
    service's replicas, `${nodes.llm.output.replicas}`) is one argument per element, each
    still a single argument, never split by a shell.

    >>> command_argv(["router", "--worker-urls", ["http://a:1", "http://b:2"], "--port", 8000])
    ['router', '--worker-urls', 'http://a:1', 'http://b:2', '--port', '8000']
    """
    return [str(part) for item in command for part in (item if isinstance(item, list) else [item])]


def free_port(host: str) -> int:
    """A port nothing listens on at `host` now, chosen by the kernel (`port: auto`). Another
    process could take it before ours binds: the check before the start and the owner check
    after the probe (`ports.py`) turn that race into a clear error, never a wrong "ready"."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host.strip("[]") if host not in ("localhost", "") else "127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
