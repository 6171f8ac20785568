"""Helpers for the process-supervision tests (tests/supervision/): the process table from
/proc, the marker every managed process of a test carries, recorders for a service node's
log and status changes, and the flows the `flowctl run` tests use.

Every managed process these tests make flowctl start carries a marker in its environment
(``FLOWCTL_SUPERVISION_MARK=<uuid>``, inherited by a ``bash -c`` wrapper's children), which is
how a test finds "everything it started" to assert that nothing is left, and how teardown
kills whatever is left, pass or fail.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.flows import chat_nodes, chat_url, server_node
from support.waiting import async_wait_until, wait_until

from flowctl.nodes.base import ServiceContext, ServiceLine, ServiceState, ServiceStatus
from flowctl.nodes.process_start import ProcessStartNode

MARK_ENV = "FLOWCTL_SUPERVISION_MARK"
FLOWCTL = [sys.executable, "-m", "flowctl"]


# -- the process table --------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    cmdline: str


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return Proc(pid=pid, ppid=int(fields[1]), pgid=int(fields[2]), state=fields[0], cmdline=cmdline)


def marked(mark: str) -> list[Proc]:
    """Live (non-zombie) processes whose environment carries `mark`."""
    needle = f"{MARK_ENV}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            proc = read_proc(int(entry))
            if proc is not None and proc.state != "Z":
                found.append(proc)
    return found


def live_group(pgid: int) -> list[Proc]:
    """Live (non-zombie) members of process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = read_proc(int(entry))
            if proc is not None and proc.pgid == pgid and proc.state != "Z":
                members.append(proc)
    return members


def alive(pid: int) -> bool:
    proc = read_proc(pid)
    return proc is not None and proc.state != "Z"


def listening(port: int) -> bool:
    """True while a socket listens on `port` (any address), per the kernel's tables."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def wait_gone(mark: str, timeout: float, what: str = "") -> None:
    wait_until(lambda: not marked(mark), timeout=timeout, message=lambda: f"processes left behind {what}: {marked(mark)}")


def kill_marked(mark: str) -> None:
    """Teardown: SIGKILL every process carrying `mark`, and wait (a little) until they are gone."""

    def all_killed() -> bool:
        procs = marked(mark)
        for proc in procs:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)
        return not procs

    with contextlib.suppress(AssertionError):
        wait_until(all_killed, timeout=5, interval=0.02)


@dataclass
class Recorder:
    """Collects a service node's log lines and status changes."""

    #: each line as `[node] text`
    lines: list[str] = field(default_factory=list)
    #: each line as it came (with its kind: output, event, progress)
    records: list[ServiceLine] = field(default_factory=list)
    events: list[tuple[float, ServiceState, str | None, int | None]] = field(default_factory=list)

    def log(self, line: ServiceLine) -> None:
        self.records.append(line)
        self.lines.append(str(line))

    def on_change(self, node_id: str, status: ServiceStatus) -> None:
        self.events.append((time.monotonic(), status.state, status.reason, status.pid))

    def states(self) -> list[ServiceState]:
        return [event[1] for event in self.events]

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Managed:
    """A process-start node under test, with its context and what it reported."""

    node: ProcessStartNode
    ctx: ServiceContext
    rec: Recorder
    port: int | None

    @property
    def status(self) -> ServiceStatus:
        return self.node.status

    async def start(self) -> dict[str, Any]:
        return await self.node.start(self.ctx)

    async def stop(self) -> None:
        await self.node.stop()

    async def wait_state(self, state: ServiceState, timeout: float = 10.0) -> ServiceStatus:
        await async_wait_until(
            lambda: self.node.status.state is state,
            timeout=timeout,
            interval=0.01,
            message=lambda: f"state is {self.node.status.state.value} ({self.node.status.reason}), not {state.value}\n{self.rec.text()[-2000:]}",
        )
        return self.node.status


@dataclass
class Flowctl:
    proc: subprocess.Popen[str]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"flowctl (pid {self.pid}) still running after {timeout:g}s\n{self.stderr()[-3000:]}") from None

    def read_stdout(self, n: int) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.read(n)


def chat_flow_yaml(
    command: list[str] | str,
    port: int,
    *,
    restart: str = "never",
    stop_timeout: float = 3,
    readiness_timeout: float = 15,
    env: dict[str, str] | None = None,
    backoff: float = 0.1,
) -> str:
    """A native chat flow whose service `llm` runs `command` (the fake vLLM server, or a
    `bash -c` wrapper around it) on `port`, restarted per `restart` after `backoff` seconds."""
    return (
        "version: 1\nname: supervision-test\nnodes:\n"
        + server_node("llm", command, port, env=env, readiness_timeout=readiness_timeout, interval=0.02, restart=restart, backoff=backoff, stop_timeout=stop_timeout)
        + chat_nodes(chat_url(port), needs="llm")
        + "workflows:\n  chat:\n    output: reply\n    default: true\n"
    )


def bash_wrapped(argv: list[str]) -> str:
    """A `bash -c` start command that keeps bash as the parent of the server (the trailing
    command stops bash from exec-ing it), as the seed's model-compose flow does."""
    return f"{shlex.join(argv)}; echo server exited"
