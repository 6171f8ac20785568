"""No orphans, ever: whatever happens to flowctl (a normal stop, SIGTERM/SIGINT, an error, or
SIGKILL with no chance to clean up), the whole process group of a managed server is gone
within a deadline and its port is free. The start commands are `bash -c` wrappers with the
server as bash's child (bash stays the group leader), as in the seed's flow. Checked in the
process table (/proc) and the kernel's socket tables."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from supervision_support import MARK_ENV, Proc, alive, bash_wrapped, chat_flow_yaml, listening, live_group, marked, wait_gone
from support.fake import fake_vllm_argv
from support.procs import free_port
from support.waiting import wait_until

from flowctl.engine.paths import state_dir_for
from flowctl.nodes.process_group import ProcessGroup
from flowctl.nodes.process_log import log_file


def managed_tree(mark: str) -> tuple[Proc, Proc]:
    """(bash wrapper, server) of the test's managed process group, once both exist."""

    def find() -> tuple[Proc, Proc] | None:
        procs = marked(mark)
        server = next((p for p in procs if "fake_vllm.py" in p.cmdline and not p.cmdline.startswith("bash")), None)
        wrapper = next((p for p in procs if server and p.pid == server.pgid), None)
        return (wrapper, server) if server and wrapper else None

    wrapper, server = wait_until(find, timeout=10, message=lambda: f"no managed group among {marked(mark)}")
    assert wrapper.cmdline.startswith("bash -c"), wrapper
    assert server.ppid == wrapper.pid, "the server is the wrapper's child (a grandchild of flowctl)"
    return wrapper, server


def write_flow(tmp_path: Path, port: int, stop_timeout: float = 3, **fake: object) -> Path:
    """A chat flow whose server (the fake, with `fake` flags) runs under a `bash -c` wrapper."""
    flow = tmp_path / "flow.yml"
    flow.write_text(chat_flow_yaml(bash_wrapped(fake_vllm_argv(port, **fake)), port, stop_timeout=stop_timeout))
    return flow


def server_log(flow: Path) -> str:
    """What the managed server wrote (its log file: the console shows only flowctl's events)."""
    try:
        return log_file(state_dir_for(flow), "llm").read_text()
    except FileNotFoundError:
        return ""


def assert_all_gone(mark: str, port: int, wrapper: Proc, server: Proc, timeout: float) -> None:
    wait_gone(mark, timeout)
    wait_until(lambda: not live_group(wrapper.pgid), timeout=2, message=lambda: f"group left: {live_group(wrapper.pgid)}")
    assert not alive(server.pid) and not alive(wrapper.pid)
    wait_until(lambda: not listening(port), timeout=2, message=f"port {port} still listening")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_flowctl_run_mid_stream_stops_the_group(flowctl_proc, tmp_path: Path, mark, signum) -> None:
    port = free_port()
    flow = write_flow(tmp_path, port, tokens=100_000, token_delay_ms=5)
    run = flowctl_proc("run", str(flow), "-i", "prompt=hi")
    assert run.read_stdout(2) == "w0", run.stderr()
    wrapper, server = managed_tree(mark)
    os.kill(run.pid, signum)
    code = run.wait(15)
    assert code == 130, run.stderr()
    assert "Traceback" not in run.stderr()
    # flowctl stopped the group itself, in order, before it exited
    assert not live_group(wrapper.pgid)
    assert_all_gone(mark, port, wrapper, server, timeout=5)
    assert "SIGTERM received, shutting down" in server_log(flow), "the server got SIGTERM first, not SIGKILL"


def test_sigkill_to_flowctl_run_mid_stream_leaves_no_orphans(flowctl_proc, tmp_path: Path, mark) -> None:
    port = free_port()
    flow = write_flow(tmp_path, port, tokens=100_000, token_delay_ms=5)
    run = flowctl_proc("run", str(flow), "-i", "prompt=hi")
    assert run.read_stdout(2) == "w0", run.stderr()
    wrapper, server = managed_tree(mark)
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait(5) == -signal.SIGKILL
    assert_all_gone(mark, port, wrapper, server, timeout=8)


def test_sigkill_to_flowctl_run_while_waiting_for_readiness(flowctl_proc, tmp_path: Path, mark) -> None:
    """The vLLM case: flowctl is killed during a long first start."""
    port = free_port()
    flow = write_flow(tmp_path, port, startup_delay_ms=60_000)
    run = flowctl_proc("run", str(flow), "-i", "prompt=hi")
    wrapper, server = managed_tree(mark)
    wait_until(lambda: "starting up" in server_log(flow), timeout=10, message=run.stderr)
    os.kill(run.pid, signal.SIGKILL)
    assert_all_gone(mark, port, wrapper, server, timeout=8)


def test_sigkill_to_flowctl_run_with_a_server_that_ignores_sigterm(flowctl_proc, tmp_path: Path, mark) -> None:
    """The watchdog SIGKILLs the group once stop_timeout has passed after its SIGTERM."""
    port = free_port()
    flow = write_flow(tmp_path, port, stop_timeout=1, tokens=100_000, token_delay_ms=5, ignore_sigterm=True)
    run = flowctl_proc("run", str(flow), "-i", "prompt=hi")
    assert run.read_stdout(2) == "w0", run.stderr()
    wrapper, server = managed_tree(mark)
    killed_at = time.monotonic()
    os.kill(run.pid, signal.SIGKILL)
    assert_all_gone(mark, port, wrapper, server, timeout=8)
    assert time.monotonic() - killed_at >= 0.9, "SIGTERM first, SIGKILL only after the grace"


def test_error_in_flowctl_run_stops_the_group(flowctl_proc, tmp_path: Path, mark) -> None:
    port = free_port()
    flow = write_flow(tmp_path, port, fail_status=500)
    run = flowctl_proc("run", str(flow), "-i", "prompt=hi")
    assert run.wait(20) == 3, run.stderr()
    assert "500" in run.stderr()
    wait_gone(mark, 5)
    assert not listening(port)


def test_sigkill_to_flowctl_up_leaves_no_orphans(flowctl_up, tmp_path: Path, mark) -> None:
    port = free_port()
    flow = chat_flow_yaml(bash_wrapped(fake_vllm_argv(port, quiet=True)), port)
    up = flowctl_up(flow, env={MARK_ENV: mark})
    wrapper, server = managed_tree(mark)
    assert listening(port)
    up.kill()  # SIGKILL to `flowctl up`'s own process group: the watchdog is in a session of its own
    assert_all_gone(mark, port, wrapper, server, timeout=8)


async def test_stop_sigkills_a_server_that_ignores_sigterm(managed, mark) -> None:
    node = managed(fake={"ignore_sigterm": True}, stop_timeout=0.5)
    await node.start()
    pid = node.status.pid
    started = time.monotonic()
    await node.stop()
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 3, elapsed
    assert not alive(pid) and not marked(mark)
    assert "ignoring SIGTERM" in node.rec.text()
    log = node.node.log_path.read_text()
    assert "stopping pid" in log and "SIGKILL after 0.5s" in log


async def test_stop_does_not_wait_for_zombies(mark) -> None:
    """Members that died but are not reaped yet (their parent died; init reaps when it gets
    round to it) are not "alive": stop returns as soon as the living are gone."""
    group = await ProcessGroup.spawn(["bash", "-c", "sleep 30 & sleep 30 & echo started; wait"], env={**os.environ, MARK_ENV: mark}, grace=10)
    try:
        wait_until(lambda: len(group.members()) == 3, timeout=5)
        started = time.monotonic()
        await group.stop()
        assert time.monotonic() - started < 2
        assert not group.group_alive() and not live_group(group.pgid)
        assert group.watchdog is not None and group.watchdog.poll() is not None, "the watchdog is gone too"
    finally:
        group.signal_group(signal.SIGKILL)
