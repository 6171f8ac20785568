"""Replicas placed by Ray (`placement: {engine: ray}`), on a real two-node Ray cluster on
loopback started for this module (tests/support/ray_cluster.py) and stopped by pid.

Each node offers one `slot`; `llm` asks for two replicas of one slot each, `spread: strict`,
so one lands on each node; `spare` asks for one more slot, which is taken: it shows pending.
Runs are balanced over the two (http-stream connects to each replica's URL: no token goes
through Ray). A replica lost mid-run, by `ray.kill` of its actor or by SIGKILL of its server,
fails only the runs it was streaming, leaves the service degraded until it is replaced, and
leaves no process behind; nor do SIGKILL of flowctl and `flowctl down`. Every server carries
the test's marker in its environment, which is how "left behind" is checked.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from replicas_support import replica_argv, replica_rows, replicas_flow, run_many, stats
from supervision.supervision_support import MARK_ENV, marked, wait_gone
from support.fake import expected_text
from support.flows import q
from support.paths import PYTHON, REPO_ROOT
from support.procs import free_port, pid_alive
from support.ray_cluster import RayCluster, kill_actor, ray_missing
from support.waiting import wait_until

from flowctl.nodes.proc import command_line

pytestmark = pytest.mark.skipif(ray_missing() is not None, reason=ray_missing() or "")

#: Ray's first actor on a node starts a worker process: seconds on a busy 2-core machine
START_TIMEOUT = 90.0
#: tokens of a run that is still streaming when its replica is killed (10 ms apart)
LONG_RUN_TOKENS = 1000


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    # not under pytest's temp dir: under pytest-xdist (`/tmp/pytest-of-USER/pytest-N/popen-gwK/`)
    # that is too long for the Unix socket paths Ray makes in it
    root = Path(tempfile.mkdtemp(prefix="ray-"))
    try:
        started = RayCluster.start(root, [{"slot": 1}, {"slot": 1}])
        try:
            yield started
        finally:
            started.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ray_flow(cluster: RayCluster, mark: str, *, spare: bool = True) -> str:
    """`llm`: two replicas of the fake, one slot each, strictly spread; `spare` (one replica,
    one slot: none left) pending; the chat workflow balanced over `llm`."""
    placement = {"engine": "ray", "address": cluster.address, "resources": {"slot": 1}}
    command = [*replica_argv(tokens=6), "--host", "${replica.host}"]  # the node's address as Ray knows it
    text = replicas_flow(2, mark, command=command, restart="on-failure", backoff=2, placement={**placement, "spread": "strict"})
    if spare:
        node = [
            "  spare:",
            "    type: process-start",
            f"    command: {q([PYTHON, str(REPO_ROOT / 'tests' / 'servers' / 'fake_vllm.py'), '--port', '${replica.port}', '--quiet'])}",
            f"    env: {q({MARK_ENV: mark})}",
            "    port: auto",
            f"    placement: {q(placement)}",
        ]
        text = text.replace("  generate:\n", "\n".join(node) + "\n  generate:\n", 1)  # after llm: started after it
    return text


def start(flowctl_up: Any, cluster: RayCluster, mark: str, *, spare: bool = True) -> tuple[Any, httpx.Client]:
    up = flowctl_up(ray_flow(cluster, mark, spare=spare), wait_ready=False)
    client = up.client(timeout=10.0)

    def llm_ready() -> bool:
        if not up.alive():
            raise AssertionError(f"flowctl up exited\n{up.log_tail()}")
        body = client.get("/ready").json()
        return body["services"]["llm"]["state"] == "ready"

    wait_until(llm_ready, timeout=START_TIMEOUT, interval=0.2, message=lambda: f"llm not ready\n{up.log_tail()}", ignore=(httpx.TransportError, KeyError))
    return up, client


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def ray_node_of(pid: int, cluster: RayCluster) -> int:
    """Which of the cluster's nodes hosts the actor that started `pid` (its parent)."""
    actor = parent_of(pid)
    actor_sid = int(Path(f"/proc/{actor}/stat").read_text().rsplit(")", 1)[1].split()[3])
    return next(i for i, node in enumerate(cluster.nodes) if node.sid == actor_sid)


def test_two_replicas_on_two_nodes_a_pending_one_and_replicas_lost_mid_run(cluster: RayCluster, flowctl_up: Any, mark: str) -> None:
    up, client = start(flowctl_up, cluster, mark)

    body = client.get("/ready").json()
    rows = replica_rows(body)
    assert [r["name"] for r in rows] == ["llm.0", "llm.1"] and all(r["state"] == "ready" for r in rows), rows
    assert {ray_node_of(r["pid"], cluster) for r in rows} == {0, 1}  # spread: strict
    spare = replica_rows(body, "spare")[0]
    assert spare["state"] == "pending" and "slot: 1" in spare["reason"], spare
    assert body["ready"] is False and "spare" in str(body)  # not every service is up...
    assert "llm" not in body.get("degraded", {})  # ...but llm serves whole
    ps = subprocess.run([PYTHON, "-m", "flowctl", "ps", str(up.flow_path)], capture_output=True, text=True, timeout=30, cwd=str(REPO_ROOT))
    assert "spare.0" in ps.stdout and "pending" in ps.stdout, ps.stdout + ps.stderr
    # the replica's output, shipped back from its actor, is in its log here
    logs = subprocess.run([PYTHON, "-m", "flowctl", "logs", str(up.flow_path), "llm.1"], capture_output=True, text=True, timeout=30, cwd=str(REPO_ROOT))
    assert f"fake-vllm listening on http://127.0.0.1:{rows[1]['port']}" in logs.stdout, logs.stdout + logs.stderr

    # eight concurrent runs, split over the two replicas (the fakes' own counters)
    answers = asyncio.run(run_many(up.api, [{"tag": f"run-{i}", "delay_ms": 20} for i in range(8)]))
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert all(a.json()["output"] == expected_text(6) for a in answers)
    served = {r["name"]: {g["tag"] for g in stats(r["url"])["generations"]} for r in rows}
    assert served["llm.0"] and served["llm.1"] and len(served["llm.0"] | served["llm.1"]) == 8, served

    # the actor of llm.1 killed by Ray: its server goes too (the watchdog), it is replaced
    lose_mid_run(up, client, mark, "llm.1", lambda row: kill_actor(cluster.address, f"llm.1@{os.uname().nodename}:{up.pid}"))

    # the server of llm.0 SIGKILLed: its actor restarts it, as a local replica does
    lose_mid_run(up, client, mark, "llm.0", lambda row: os.kill(row["pid"], signal.SIGKILL))

    # the worker process hosting llm.1's actor killed outright: the replica is lost, its
    # server goes too (its watchdog), it is replaced
    lose_mid_run(up, client, mark, "llm.1", lambda row: os.kill(parent_of(row["pid"]), signal.SIGKILL))

    # `flowctl down`: every replica's server goes with it
    down = subprocess.run([PYTHON, "-m", "flowctl", "down", str(up.flow_path)], capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT))
    assert down.returncode == 0, down.stderr
    wait_gone(mark, 20, "after flowctl down")


def lose_mid_run(up: Any, client: httpx.Client, mark: str, victim: str, kill: Callable[[dict[str, Any]], None]) -> None:
    """Kill replica `victim` (by `kill(its /ready row)`) while each replica streams two runs:
    its runs fail naming it, the others finish whole, the service is degraded (new runs
    served) until the replica is back, and its old server is gone."""
    rows = {r["name"]: r for r in replica_rows(client.get("/ready").json())}
    # 10 s each: longer than a kill takes (`kill_actor` starts a Ray driver of its own)
    runs = [{"tag": f"{victim}-long-{i}", "tokens": LONG_RUN_TOKENS, "delay_ms": 10} for i in range(4)]
    answers: list[httpx.Response] = []
    runner = threading.Thread(target=lambda: answers.extend(asyncio.run(run_many(up.api, runs))))
    runner.start()
    try:
        wait_until(lambda: all(stats(r["url"])["active_streams"] == 2 for r in rows.values()), timeout=30, message="runs not spread 2 + 2")
        doomed = {g["tag"] for g in stats(rows[victim]["url"])["generations"]} & {r["tag"] for r in runs}
        old_pid = rows[victim]["pid"]
        assert command_line(old_pid) is not None and old_pid in {p.pid for p in marked(mark)}
        kill(rows[victim])

        def degraded() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get("/ready").json()
            return body if body["services"]["llm"]["state"] == "degraded" else None

        body = wait_until(degraded, timeout=20, interval=0.05, message=f"never degraded after losing {victim}")
        assert {r["name"]: r["state"] for r in replica_rows(body)}[victim] != "ready"
        during = asyncio.run(run_many(up.api, [{"tag": f"{victim}-during", "tokens": 3}]))[0]
        assert during.status_code == 200 and during.json()["output"] == expected_text(3), during.text
        wait_until(lambda: not pid_alive(old_pid), timeout=20, message=f"{victim}'s old server (pid {old_pid}) is still running")
    finally:
        runner.join(90)

    by_tag = dict(zip([r["tag"] for r in runs], answers, strict=True))
    assert len(doomed) == 2, doomed
    for tag, answer in by_tag.items():
        if tag in doomed:
            assert answer.status_code >= 500 and f"replica '{victim}'" in answer.json()["error"], answer.text
        else:
            assert answer.status_code == 200 and answer.json()["output"] == expected_text(LONG_RUN_TOKENS), answer.text

    def back() -> list[dict[str, Any]] | None:
        body = client.get("/ready").json()
        return replica_rows(body) if body["services"]["llm"]["state"] == "ready" else None

    rows_after = {r["name"]: r for r in wait_until(back, timeout=START_TIMEOUT, interval=0.2, message=f"{victim} never came back\n{up.log_tail()}")}
    assert rows_after[victim]["restarts"] >= 1 and rows_after[victim]["pid"] != rows[victim]["pid"]
    after = asyncio.run(run_many(up.api, [{"tag": f"{victim}-after-{i}", "tokens": 20, "delay_ms": 10} for i in range(4)]))
    assert [a.status_code for a in after] == [200] * 4, [a.text for a in after]


def test_sigkill_of_flowctl_leaves_no_replica_behind(cluster: RayCluster, flowctl_up: Any, mark: str) -> None:
    up, client = start(flowctl_up, cluster, mark, spare=False)
    pids = [r["pid"] for r in replica_rows(client.get("/ready").json())]
    assert len(marked(mark)) == 2 and all(pid_alive(pid) for pid in pids)
    up.kill()  # the driver goes: Ray kills its actors, their watchdogs stop the servers
    wait_gone(mark, 30, "after SIGKILL of flowctl up")


def test_a_cluster_that_is_not_there_is_a_clear_error_at_once(flowctl_up: Any, mark: str) -> None:
    port = free_port()  # nothing listens there: Ray itself would retry for minutes
    up = flowctl_up(replicas_flow(1, mark, placement={"engine": "ray", "address": f"127.0.0.1:{port}"}), wait_ready=False)
    assert up.wait(60) != 0
    log = up.log_text()
    assert f"service 'llm': cannot join the Ray cluster at 127.0.0.1:{port}: nothing answers there" in log, log
    assert "start one (`ray start --head`) or set `placement.address`" in log and "Traceback" not in log, log
