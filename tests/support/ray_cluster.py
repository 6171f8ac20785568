"""A Ray cluster of several nodes on this machine's loopback, for the Ray placement tests.

``RayCluster.start(root, nodes=[{"slot": 1}, {"slot": 1}])`` starts a head node and one more
node per further entry (each with those custom resources and no CPUs to speak of), every one
on 127.0.0.1 only (see ray_node.py for why not Ray's CLI as is) with its own `--temp-dir`
under ``root``; ``stop()`` stops them by pid. Never `ray stop`: it stops every Ray process
on the machine, other tests' and other users' included.

Each node is started in a session of its own (`start_new_session`), and every process Ray
starts for it (GCS, raylet, its agents, the workers that host actors) stays in that session,
so stopping a node is: SIGTERM to the members of its session, SIGKILL what is left after a
grace period. A server an actor starts leads a session of its own (flowctl's process
groups): it is not stopped here, on purpose; flowctl's watchdog must do it, and the tests
check that it does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.paths import PYTHON, TESTS_DIR
from support.procs import free_port
from support.waiting import wait_until

RAY_NODE = TESTS_DIR / "support" / "ray_node.py"
#: a Unix socket path holds 107 bytes; Ray puts its sockets ~64 bytes under the temp dir
_MAX_TEMP_DIR = 40


def ray_missing() -> str | None:
    """Why the Ray tests cannot run here, or None when they can."""
    if importlib.util.find_spec("ray") is None:  # not imported here: see `kill_actor`
        return "ray is not installed (pip install 'flowctl[ray]'; `make test` does)"
    return None


#: `ray.kill` of a named actor, as a user would do it, from a driver of its own
_KILL_ACTOR = """
import sys
import ray
ray.init(address=sys.argv[1], namespace=sys.argv[3], log_to_driver=False, logging_level="ERROR")
ray.kill(ray.get_actor(sys.argv[2], namespace=sys.argv[3]))
ray.shutdown()
"""


def kill_actor(address: str, name: str, namespace: str = "flowctl") -> None:
    """`ray.kill` the actor `name`, from a short-lived Ray driver in a process of its own: a
    test process that joined Ray as a driver would be exited by Ray once its cluster is gone."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # loopback stays loopback
    done = subprocess.run([PYTHON, "-c", _KILL_ACTOR, address, name, namespace], capture_output=True, text=True, timeout=60, env=env)
    if done.returncode != 0:
        raise AssertionError(f"ray.kill of {name} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session `sid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != b"Z":
            members.append(int(entry))
    return members


@dataclass
class RayNode:
    """One node: the session its `ray start` led (its pid is the session id)."""

    sid: int
    temp_dir: Path
    resources: Mapping[str, float]
    log_path: Path

    def members(self) -> list[int]:
        return session_members(self.sid)

    def stop(self, grace: float = 5.0) -> None:
        for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            for pid in self.members():
                try:
                    os.kill(pid, signum)
                except (ProcessLookupError, PermissionError):
                    pass
            with contextlib.suppress(AssertionError):  # not gone in time: the next signal
                wait_until(lambda: not self.members(), timeout=wait, interval=0.05)
                return
        raise AssertionError(f"ray node (session {self.sid}) still has {self.members()} after SIGKILL")


@dataclass
class RayCluster:
    address: str
    nodes: list[RayNode] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, nodes: Sequence[Mapping[str, float]], *, timeout: float = 120.0) -> RayCluster:
        """Start a head node with `nodes[0]`'s resources and one node for each of the others."""
        cluster = cls(address=f"127.0.0.1:{free_port()}")
        try:
            for index, resources in enumerate(nodes):
                cluster.nodes.append(_start_node(root, index, cluster.address, resources, timeout))
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        for node in reversed(self.nodes):  # the head last: the others talk to it as they stop
            node.stop()

    def pids(self) -> set[int]:
        return {pid for node in self.nodes for pid in node.members()}


def _start_node(root: Path, index: int, address: str, resources: Mapping[str, float], timeout: float) -> RayNode:
    temp_dir = root / f"n{index}"
    if len(str(temp_dir)) > _MAX_TEMP_DIR:
        raise AssertionError(f"{temp_dir}: too long for Ray's Unix sockets (at most {_MAX_TEMP_DIR} characters)")
    temp_dir.mkdir(parents=True, exist_ok=True)
    common = ["--node-ip-address", "127.0.0.1", "--temp-dir", str(temp_dir), "--num-cpus", "1", "--resources", json.dumps(dict(resources)), "--disable-usage-stats"]
    if index == 0:
        argv = [PYTHON, str(RAY_NODE), "start", "--head", "--port", address.rsplit(":", 1)[1], "--include-dashboard=false", *common]
    else:
        argv = [PYTHON, str(RAY_NODE), "start", "--address", address, *common]
    log_path = root / f"n{index}.log"
    # what the node's workers write to the temp dir (a replica actor's own log) stays here too
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "TMPDIR": str(tmp)})
    node = RayNode(sid=proc.pid, temp_dir=temp_dir, resources=dict(resources), log_path=log_path)
    try:
        code = proc.wait(timeout)  # `ray start` returns once its node has joined
    except subprocess.TimeoutExpired:
        node.stop(grace=0.0)
        raise AssertionError(f"ray node {index} not started after {timeout:g}s:\n{log_path.read_text(errors='replace')[-3000:]}") from None
    if code != 0:
        node.stop(grace=0.0)
        raise AssertionError(f"ray start exited with {code}:\n{log_path.read_text(errors='replace')[-3000:]}")
    return node
