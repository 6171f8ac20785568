"""A child process that leads its own process group, so it can be stopped as a whole.

Every process flowctl starts goes through `ProcessGroup.spawn`:

- the child gets a new session (`setsid`), so a `bash -c` wrapper and everything it forks
  share one process group id, and a terminal's Ctrl-C reaches flowctl, which then stops
  the group in order;
- a tiny watchdog process (its own session too, so a Ctrl-C or a kill of flowctl's group does
  not reach it) holds the read end of a pipe whose write end only flowctl holds. If flowctl
  dies for any reason, SIGKILL included, the pipe reaches EOF and the watchdog stops the group
  (SIGTERM, grace, SIGKILL), reading the group's output meanwhile so that a server logging its
  shutdown does not die of a broken pipe instead. No orphans, even without a chance to clean up;
- `stop()` sends SIGTERM to the group, waits up to a grace period for every member to go,
  then SIGKILLs what is left. Zombies do not count as members: a grandchild whose parent
  died is reparented to init, which may be slow to reap it;
- output (stdout and stderr together) is read as it comes and split into lines on `\\n`;
  a line redrawn in place with `\\r` (a progress bar) is reported through `on_partial`, so
  the latest state is known without logging every redraw.

    group = await ProcessGroup.spawn(["bash", "-c", "python server.py"], on_line=print)
    ...
    await group.stop(grace=10)   # SIGTERM the group, SIGKILL what is left after 10 s
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from .proc import exiting as proc_exiting
from .proc import group_alive, group_members

# The watchdog runs with `python -I -S`: no site, no environment, starts in a few ms (and so
# carries its own copy of `proc.group_members`: it cannot import flowctl). It exits
# once the group is gone; SIGTERM/SIGHUP make it clean up at once, as EOF does.
_WATCHDOG = r"""
import os, select, signal, sys, time
def stop_now(signum, frame):
    try:
        os.close(0)  # the read below fails, as on EOF
    except OSError:
        pass
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, stop_now)
signal.signal(signal.SIGHUP, stop_now)
pgid, grace, out_fd = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
try:
    while os.read(0, 4096):
        pass
except OSError:
    pass
def drain(seconds):
    # flowctl no longer reads the group's output: read it here, so that a server logging
    # its shutdown neither dies of a broken pipe nor blocks on a full one
    global out_fd
    if out_fd < 0:
        time.sleep(seconds)
        return
    try:
        ready = select.select([out_fd], [], [], seconds)[0]
        if ready and not os.read(out_fd, 65536):
            os.close(out_fd)
            out_fd = -1
    except (OSError, ValueError):
        out_fd = -1
def alive():
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/" + name + "/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False
def kill(signum):
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
if alive():
    kill(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive() and time.monotonic() < deadline:
        drain(0.05)
    kill(signal.SIGKILL)
"""

LineCallback = Callable[[str], None]

_EOL = re.compile(r"\r\n|\n|\r")
_MAX_LINE = 64 * 1024


def describe_exit(code: int | None) -> str:
    """`exited with code 3`, or `was killed by SIGKILL` for a negative return code."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class ProcessGroup:
    """A running child process group with its output pumped line by line to a callback."""

    def __init__(self, process: asyncio.subprocess.Process, watchdog: subprocess.Popen[bytes] | None, watchdog_fd: int | None, grace: float) -> None:
        self.process = process
        self.pid = process.pid
        self.pgid = process.pid  # the leader of a new session: its pid is the group id
        self.watchdog = watchdog
        self._watchdog_fd = watchdog_fd
        self._grace = grace
        self._pump: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[int | None] | None = None
        #: the child's stdin and stdout, when `spawn` was asked for pipes
        self.stdin: asyncio.StreamWriter | None = process.stdin
        self.stdout: asyncio.StreamReader | None = None
        self._stdout_transport: asyncio.ReadTransport | None = None

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        on_line: LineCallback | None = None,
        on_partial: LineCallback | None = None,
        grace: float = 10.0,
        stdin_pipe: bool = False,
        stdout_pipe: bool = False,
    ) -> ProcessGroup:
        """`stdin_pipe`: `group.stdin` is a writer to the child's stdin (else /dev/null).
        `stdout_pipe`: stdout goes to `group.stdout` (a reader) and only stderr to `on_line`
        (else both go to `on_line`)."""
        # The output pipe is ours, not the asyncio transport's: asyncio's `Process.wait()`
        # returns only once the process has exited *and* its pipes are closed, and a member
        # left behind (the server under a `bash -c` wrapper) keeps the pipe open. Exit and
        # end of output are separate events here.
        out_read, out_write = os.pipe()
        data_read, data_write = os.pipe() if stdout_pipe else (-1, -1)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=asyncio.subprocess.PIPE if stdin_pipe else asyncio.subprocess.DEVNULL,
                stdout=data_write if stdout_pipe else out_write,
                stderr=out_write if stdout_pipe else asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            os.close(out_read)
            if stdout_pipe:
                os.close(data_read)
            raise
        finally:
            os.close(out_write)
            if stdout_pipe:
                os.close(data_write)
        # From here on nothing awaits until the watchdog holds the pipe. A plain Popen (not an
        # asyncio transport): asyncio would kill a transport's process when it is collected
        # at shutdown, which is exactly when the watchdog has to live on.
        try:
            watchdog, write_fd = _start_watchdog(process.pid, grace, out_read)
        except BaseException:
            os.close(out_read)
            raise
        group = cls(process, watchdog, write_fd, grace)
        if stdout_pipe:
            group.stdout, group._stdout_transport = await _pipe_reader(data_read)
        group._pump = asyncio.create_task(
            group._pump_output(out_read, on_line or (lambda _line: None), on_partial or (lambda _line: None)),
            name=f"output:{process.pid}",
        )
        return group

    async def _pump_output(self, fd: int, on_line: LineCallback, on_partial: LineCallback) -> None:
        stream, transport = await _pipe_reader(fd)
        try:
            await self._split_lines(stream, on_line, on_partial)
        finally:
            transport.close()

    @staticmethod
    async def _split_lines(stream: asyncio.StreamReader, on_line: LineCallback, on_partial: LineCallback) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        redrawing = False  # the line being written follows a "\r": a progress bar
        while True:
            data = await stream.read(65536)
            if not data:
                break
            pending += decoder.decode(data)
            pos = 0
            for match in _EOL.finditer(pending):
                if match.group() == "\r" and match.end() == len(pending):
                    break  # maybe the first half of "\r\n": wait for more
                text = pending[pos : match.start()]
                pos = match.end()
                redrawing = match.group() == "\r"
                if redrawing:
                    if text.strip():
                        on_partial(text)
                else:
                    on_line(text)
            pending = pending[pos:]
            while len(pending) > _MAX_LINE:  # a very long line: pass it on in pieces
                on_line(pending[:_MAX_LINE])
                pending = pending[_MAX_LINE:]
            current = pending.rstrip("\r")
            if current.strip() and (redrawing or current != pending):
                # the state a progress bar shows between redraws is the latest output
                on_partial(current)
        pending += decoder.decode(b"", final=True)
        if pending.rstrip("\r"):
            on_line(pending.rstrip("\r"))

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait(self) -> int:
        """Wait for the leader to exit (returns at its exit, whatever else holds its output
        pipe), then for its output to be fully read (up to 2 s more: a member left behind may
        hold the pipe open)."""
        code = await self.process.wait()
        await self.drain_output(2.0)
        return code

    async def drain_output(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the output pump to reach EOF."""
        if self._pump is not None and not self._pump.done():
            await asyncio.wait({self._pump}, timeout=timeout)

    def peek_exit(self) -> int | None | bool:
        """Has the leader exited? False while it runs; else its return code (negative: killed
        by that signal), or None when it is gone but the code is not known yet. Does not
        reap it (`waitid(WNOWAIT)`), so asyncio still sees the exit."""
        if self.process.returncode is not None:
            return self.process.returncode
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return None  # reaped already: asyncio is about to report the code
        except OSError:
            return False
        if info is None or info.si_pid == 0:
            return False
        if info.si_code == os.CLD_EXITED:
            return info.si_status
        return -info.si_status

    def exiting(self) -> bool:
        """True once the leader has begun to exit (or has exited), though asyncio may not
        have seen it yet."""
        return self.peek_exit() is not False or proc_exiting(self.pid)

    def group_alive(self) -> bool:
        """True while any member of the group, the leader included, is alive (not a zombie)."""
        return group_alive(self.pgid)

    def members(self) -> list[int]:
        try:
            return group_members(self.pgid)
        except OSError:
            return []

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)

    async def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM the whole group, wait up to `grace` seconds, then SIGKILL what is left.
        Safe to call more than once and concurrently; if the caller is cancelled, the stop
        still runs to the end (and the watchdog is there if flowctl itself goes away)."""
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop(self._grace if grace is None else grace))
        return await asyncio.shield(self._stop_task)

    async def _stop(self, grace: float) -> int | None:
        try:
            if self.group_alive():
                self.signal_group(signal.SIGTERM)
                if not await self._until_gone(grace, 0.05):
                    self.signal_group(signal.SIGKILL)
                    await self._until_gone(5.0, 0.02)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), timeout=5.0)
            await self.drain_output(1.0)
        finally:
            self._release_watchdog()
            if self.stdin is not None:
                self.stdin.close()
            if self._stdout_transport is not None:
                self._stdout_transport.close()
            if self._pump is not None and not self._pump.done():
                self._pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._pump
            await self._reap_watchdog()
        return self.process.returncode

    async def _until_gone(self, seconds: float, step: float) -> bool:
        """Poll until no member is left or `seconds` pass; True when the group is gone. Waiting
        on the leader meanwhile lets asyncio reap it the moment it exits."""
        deadline = time.monotonic() + seconds
        exited = asyncio.ensure_future(self.process.wait())
        try:
            while self.group_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                await asyncio.wait({exited}, timeout=min(step, left))
            return True
        finally:
            if not exited.done():
                exited.cancel()

    def _release_watchdog(self) -> None:
        if self._watchdog_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._watchdog_fd)
            self._watchdog_fd = None

    async def _reap_watchdog(self) -> None:
        # once released it sees EOF, finds the group gone and exits within milliseconds
        watchdog = self.watchdog
        if watchdog is None:
            return
        deadline = time.monotonic() + 2.0
        while watchdog.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # still running (a member it is waiting out): subprocess reaps it later

    def __del__(self) -> None:  # closing the pipe makes the watchdog clean up
        self._release_watchdog()


async def _pipe_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.ReadTransport]:
    """A StreamReader over the read end of a pipe we own; closing the transport closes it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_MAX_LINE, loop=loop)
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        transport, _protocol = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    except BaseException:
        pipe.close()
        raise
    return reader, transport


def _start_watchdog(pgid: int, grace: float, output_fd: int) -> tuple[subprocess.Popen[bytes] | None, int | None]:
    """The watchdog gets the read end of a pipe only we write to (its stdin), and a copy of
    the read end of the group's output pipe (to drain it once we are gone)."""
    read_fd, write_fd = os.pipe()  # both ends non-inheritable: no other child gets them
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(pgid), f"{grace:g}", str(output_fd)],
            stdin=read_fd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            pass_fds=(output_fd,),
        )
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)  # never leave a group nobody would clean up after
        raise
    os.close(read_fd)
    return watchdog, write_fd


async def run_to_completion(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    on_line: LineCallback | None = None,
    on_partial: LineCallback | None = None,
) -> int:
    """Run a command in its own group to the end; stop the group if we are cancelled."""
    group = await ProcessGroup.spawn(argv, env=env, cwd=cwd, on_line=on_line, on_partial=on_partial, grace=5.0)
    try:
        code = await group.wait()
    except BaseException:
        await group.stop()
        raise
    await group.stop(grace=1.0)  # members a command left behind go with it
    return code
