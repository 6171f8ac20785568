"""A child process that leads its own process group, so it can be stopped as a whole.

Every process flowctl starts goes through `ProcessGroup.spawn`:

- the child gets a new session (`setsid`), so a `bash -c` wrapper and everything it forks
  share one process group id, and a terminal's Ctrl-C reaches flowctl, which then stops
  the group in order;
- a tiny watchdog process holds the read end of a pipe whose write end only flowctl holds.
  If flowctl dies for any reason, SIGKILL included, the pipe reaches EOF and the watchdog
  stops the group (SIGTERM, grace, SIGKILL). No orphans, even without a chance to clean up;
- `stop()` sends SIGTERM to the group, waits up to a grace period for every member to go,
  then SIGKILLs what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence

_WATCHDOG = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
pgid, grace = int(sys.argv[1]), float(sys.argv[2])
try:
    while os.read(0, 4096):
        pass
except OSError:
    pass
def alive():
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
if alive():
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        sys.exit(0)
    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
"""

LineCallback = Callable[[str], None]


class ProcessGroup:
    """A running child process group with its output pumped line by line to a callback."""

    def __init__(self, process: asyncio.subprocess.Process, watchdog_fd: int, grace: float) -> None:
        self.process = process
        self.pid = process.pid
        self.pgid = process.pid  # the leader of a new session: its pid is the group id
        self._watchdog_fd: int | None = watchdog_fd
        self._grace = grace
        self._pump: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_line: LineCallback | None = None,
        grace: float = 10.0,
    ) -> ProcessGroup:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        read_fd, write_fd = os.pipe()
        try:
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WATCHDOG, str(process.pid), str(grace),
                stdin=read_fd,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=(),
            )
        finally:
            os.close(read_fd)
        os.set_inheritable(write_fd, False)
        group = cls(process, write_fd, grace)
        group._pump = asyncio.create_task(group._pump_output(on_line or (lambda _line: None)))
        return group

    async def _pump_output(self, on_line: LineCallback) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the stream limit: take what is there
                raw = await stream.read(65536)
            if not raw:
                return
            on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait(self) -> int:
        """Wait for the leader to exit, and for its output to be fully read."""
        code = await self.process.wait()
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._pump), timeout=2.0)
        return code

    def group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)

    async def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM the whole group, wait up to `grace` seconds, then SIGKILL what is left."""
        grace = self._grace if grace is None else grace
        try:
            if self.group_alive():
                self.signal_group(signal.SIGTERM)
                deadline = time.monotonic() + grace
                while self.group_alive() and time.monotonic() < deadline:
                    await self._reap_leader(0.05)
                if self.group_alive():
                    self.signal_group(signal.SIGKILL)
                    deadline = time.monotonic() + 5.0
                    while self.group_alive() and time.monotonic() < deadline:
                        await self._reap_leader(0.02)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), timeout=5.0)
        finally:
            self._release_watchdog()
            if self._pump is not None and not self._pump.done():
                self._pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._pump
        return self.process.returncode

    async def _reap_leader(self, seconds: float) -> None:
        # waiting on the leader lets asyncio reap it; a zombie leader still counts as alive
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.process.wait()), timeout=seconds)

    def _release_watchdog(self) -> None:
        if self._watchdog_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._watchdog_fd)
            self._watchdog_fd = None

    def __del__(self) -> None:  # closing the pipe makes the watchdog clean up
        self._release_watchdog()


async def run_to_completion(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    on_line: LineCallback | None = None,
) -> int:
    """Run a command in its own group to the end; stop the group if we are cancelled."""
    group = await ProcessGroup.spawn(argv, env=env, cwd=cwd, on_line=on_line, grace=5.0)
    try:
        code = await group.wait()
    except BaseException:
        await asyncio.shield(group.stop())
        raise
    await group.stop(grace=1.0)  # members a command left behind go with it
    return code
