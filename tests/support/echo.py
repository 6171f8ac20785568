"""The stand-in HTTP API (`tests/servers/echo_http.py`) as a process a test can call: started
in its own process group on a free port, ready once it accepts connections, stopped with its
group."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from support.paths import PYTHON, TESTS_DIR
from support.procs import free_port, kill_process_group, port_in_use
from support.waiting import wait_until

ECHO_HTTP = TESTS_DIR / "servers" / "echo_http.py"


@dataclass(frozen=True)
class EchoServer:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def echo_server() -> Iterator[EchoServer]:
    port = free_port()
    proc = subprocess.Popen([PYTHON, str(ECHO_HTTP), "--port", str(port)], stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: port_in_use(port) or proc.poll() is not None, timeout=20, message="echo_http did not listen")
        assert proc.poll() is None, f"echo_http exited with {proc.returncode}"
        yield EchoServer(port)
    finally:
        kill_process_group(proc, grace=2.0)
