"""No orphans with replicas: every replica's process group goes when flowctl stops, by
`flowctl down` or by SIGKILL (each replica has its own watchdog). Found by the test's marker
in the replicas' environment, not by a name."""

from __future__ import annotations

import subprocess

from replicas_support import replica_rows, replicas_flow
from supervision.supervision_support import marked, wait_gone
from support.paths import PYTHON, REPO_ROOT
from support.procs import port_in_use
from support.waiting import wait_until


def _replicas_running(up, mark: str) -> list[int]:
    ports = [r["port"] for r in replica_rows(up.client().get("/ready").json())]
    assert len(ports) == 3 and all(port_in_use(port) for port in ports)
    assert len(marked(mark)) >= 3, marked(mark)
    return ports


def test_flowctl_down_stops_every_replica(flowctl_up, mark) -> None:
    up = flowctl_up(replicas_flow(3, mark))
    ports = _replicas_running(up, mark)
    down = subprocess.run([PYTHON, "-m", "flowctl", "down", str(up.flow_path)], capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT))
    assert down.returncode == 0, down.stderr
    wait_gone(mark, 10, "after flowctl down")
    wait_until(lambda: not any(port_in_use(port) for port in ports), timeout=5, message="a replica's port still listens")


def test_sigkill_of_flowctl_leaves_no_replica_behind(flowctl_up, mark) -> None:
    up = flowctl_up(replicas_flow(3, mark))
    ports = _replicas_running(up, mark)
    up.kill()  # no chance to clean up: the watchdogs do it
    wait_gone(mark, 10, "after SIGKILL of flowctl up")
    wait_until(lambda: not any(port_in_use(port) for port in ports), timeout=5, message="a replica's port still listens")
