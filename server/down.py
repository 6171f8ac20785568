"""`flowctl down FLOW`: stop the `flowctl up` recorded in FLOW's state dir.

SIGTERM (it drains its runs and stops its services), then SIGKILL after `timeout` seconds
(its managed processes have their own watchdogs and process groups). A stale record is
removed and never makes `down` signal a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from ..engine.errors import ExitCode
from ..nodes import proc
from .console import error, say
from .pidfile import PidFile


def down(flow: str | Path, timeout: float = 30.0) -> int:
    pidfile = PidFile(flow)
    if pidfile.read() is None:
        say(f"{flow} is not up (no pid file in {pidfile.dir})")
        return ExitCode.OK
    record, stale = pidfile.live()
    if record is None:
        say(f"{flow} is not up; removed a stale pid file ({stale})")
        pidfile.remove()
        return ExitCode.OK
    say(f"stopping {flow} (pid {record.pid})")
    started = time.monotonic()
    try:
        os.kill(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.remove(record.pid)
        say("it was already gone")
        return ExitCode.OK
    deadline = started + timeout
    while time.monotonic() < deadline:
        if not proc.alive(record.pid):
            pidfile.remove(record.pid)
            say(f"stopped {flow} (pid {record.pid}) in {time.monotonic() - started:.1f}s")
            return ExitCode.OK
        time.sleep(0.05)
    # still there: it ignores SIGTERM or cannot drain; kill it (its managed processes have
    # their own watchdogs and process groups)
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGKILL)
    kill_deadline = time.monotonic() + 5.0
    while proc.alive(record.pid) and time.monotonic() < kill_deadline:
        time.sleep(0.05)
    pidfile.remove(record.pid)
    error(f"{flow} (pid {record.pid}) did not stop within {timeout:g}s after SIGTERM; killed it")
    return ExitCode.RUN


__all__ = ["down"]
