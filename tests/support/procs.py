"""Ports and processes: small helpers for tests that start real servers."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
from pathlib import Path

from flowctl.nodes.proc import alive as pid_alive  # noqa: F401  (re-exported: non-zombie, as the tests need)

_handed_out: set[int] = set()
_rng = random.Random()

# Below the kernel's ephemeral range (32768-60999 on Linux): a port taken from there by
# bind(0) can be handed by the kernel to the next outgoing connection, or to the next
# bind(0), before the server meant for it binds. This band is never auto-assigned.
# Under pytest-xdist each worker gets its own slice of the band, so two workers never hand
# out the same port between one's check and its server's bind.
def _port_band() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw") or 0) if worker.startswith("gw") else 0
    width = (32000 - 20000) // max(count, 1)
    return range(20000 + index * width, 20000 + (index + 1) * width)


_PORT_BAND = _port_band()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now and that no other call in this process has returned."""
    for _ in range(1000):
        port = _rng.choice(_PORT_BAND)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port found in {_PORT_BAND.start}-{_PORT_BAND.stop - 1}")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def pgid_alive(pgid: int) -> bool:
    """True when any process of process group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_process_group(proc: subprocess.Popen, grace: float = 5.0) -> int:
    """SIGTERM ``proc``'s process group (it must have been started with
    ``start_new_session=True``), SIGKILL it after ``grace`` seconds, and reap ``proc``.
    Whatever else is left in the group is SIGKILLed too. Returns ``proc``'s exit status."""
    pgid = proc.pid
    if proc.poll() is None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def term_when_parent_dies() -> None:
    """A `preexec_fn`: SIGTERM the child if the test process dies without a teardown (killed
    by a timeout), so a flowctl under test still stops its services. Linux only."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass
