"""Readiness faults, injected for real: a server that exits before it is ready, one that never
becomes ready, a port someone else holds, and the progress shown while waiting."""

from __future__ import annotations

import asyncio
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from supervision_support import alive, chat_flow_yaml, marked, wait_gone
from support.fake import fake_vllm_argv
from support.procs import free_port, kill_process_group
from support.waiting import async_wait_until

from flowctl.engine.errors import ServiceError
from flowctl.nodes.base import ServiceState

HOLDER = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def port_holder():
    """Factory: ``port_holder(host, port) -> Popen``, a process listening on host:port (not an
    HTTP server: it never answers a request). Killed at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def start(host: str, port: int) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, host, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "holding", "the port holder could not bind"
        return proc

    yield start
    for proc in procs:
        kill_process_group(proc, 0.0)


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_exit_before_ready_fails_at_once_with_code_and_last_lines(managed, mark) -> None:
    node = managed(fake={"exit_before_ready": 7}, readiness={"http": "/v1/models", "timeout": 60, "interval": 0.02})
    started = time.monotonic()
    with pytest.raises(ServiceError) as caught:
        await node.start()
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert elapsed < 5, f"an exit before ready must fail at once, not after the 60 s timeout ({elapsed:.1f}s)"
    assert "service 'llm'" in message
    assert "exited with code 7 before it was ready" in message
    assert "simulated startup failure (exit 7)" in message, "the last log lines explain the exit"
    assert node.status.state is ServiceState.FAILED
    assert not marked(mark)


async def test_never_ready_times_out_and_stops_the_process(managed, mark) -> None:
    node = managed(fake={"startup_delay_ms": 60_000}, readiness={"http": "/v1/models", "timeout": 1.0, "interval": 0.05})
    started = time.monotonic()
    with pytest.raises(ServiceError) as caught:
        await node.start()
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert 0.9 <= elapsed < 6, elapsed
    assert "not ready after 1s" in message
    assert f"GET http://127.0.0.1:{node.port}/v1/models" in message
    assert "starting up" in message, "the error carries the latest log line"
    assert node.status.state is ServiceState.FAILED
    assert not marked(mark), "the process that never got ready is stopped"


async def test_expected_status_is_checked(managed) -> None:
    node = managed(fake={}, readiness={"http": "/no/such/path", "status": 404, "timeout": 10, "interval": 0.02})
    await node.start()
    assert node.status.state is ServiceState.READY

    wrong = managed(fake={}, node_id="other", readiness={"http": "v1/models", "status": 204, "timeout": 0.5, "interval": 0.02})
    with pytest.raises(ServiceError, match=r"not ready after 0.5s \(GET http://127.0.0.1:\d+/v1/models = 204\)"):
        await wrong.start()


async def test_tcp_readiness(managed) -> None:
    node = managed(fake={}, readiness={"tcp": True, "timeout": 10, "interval": 0.02})
    output = await node.start()
    assert node.status.state is ServiceState.READY
    assert output["pid"] == node.status.pid
    assert alive(output["pid"])


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0", "::"])
async def test_port_held_by_another_process_is_an_error_naming_its_pid(managed, mark, port_holder, bind) -> None:
    if ":" in bind and not has_ipv6():
        pytest.skip("no IPv6 here")
    port = free_port()
    holder = port_holder(bind, port)
    # tcp readiness would pass against the holder: the pre-check must catch it first
    node = managed(command=fake_vllm_argv(port), port=port, readiness={"tcp": True, "timeout": 10})
    with pytest.raises(ServiceError) as caught:
        await node.start()
    message = str(caught.value)
    assert f"port {port} is already in use by pid {holder.pid}" in message
    assert node.status.state is ServiceState.FAILED
    assert holder.poll() is None, "the holder is not ours to stop"
    assert not marked(mark), "nothing was started"


async def test_port_held_by_a_stale_http_server_is_never_ready(managed, mark, fake_vllm) -> None:
    stale = fake_vllm()  # answers /v1/models: an HTTP probe alone would call it ready
    node = managed(command=fake_vllm_argv(stale.port), port=stale.port, readiness={"http": "/v1/models", "timeout": 10})
    with pytest.raises(ServiceError, match=rf"port {stale.port} is already in use by pid {stale.pid} \(.*fake_vllm.py"):
        await node.start()
    assert node.status.state is not ServiceState.READY


async def test_progress_lines_carry_the_latest_output(managed, tmp_path: Path) -> None:
    """A slow start (the vLLM flow takes minutes) shows progress with the process's latest
    line, including a progress bar redrawn with \\r, while it waits."""
    port = free_port()
    release = tmp_path / "release"
    # prints a progress bar redrawn in place, then waits for the test to let it start serving
    script = (
        "printf 'loading weights\\n'; printf 'Downloading:  10%%\\rDownloading:  55%%\\r'; "
        f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.02; done; "
        f"exec {shlex.join(fake_vllm_argv(port))}"
    )
    node = managed(command=script, port=port, readiness={"http": "/v1/models", "timeout": 20, "interval": 0.02, "progress": 0.1})


    task = asyncio.ensure_future(node.start())
    try:
        line = await async_wait_until(
            lambda: next((line for line in node.rec.lines if "waiting for GET" in line and "Downloading:  55%" in line), None),
            timeout=10,
            message=lambda: node.rec.text(),
        )
        assert line.startswith("[llm] waiting for GET http://127.0.0.1:")
        assert node.status.state is ServiceState.STARTING
        release.touch()
        await asyncio.wait_for(task, timeout=15)
    finally:
        release.touch()
        if not task.done():
            task.cancel()
    assert node.status.state is ServiceState.READY
    assert "[llm] loading weights" in node.rec.lines
    redraws = [line for line in node.rec.lines if line.startswith("[llm] Downloading")]
    assert not redraws, "a line redrawn with \\r is not logged at every redraw"


def test_flowctl_run_reports_exit_before_ready(flowctl_proc, tmp_path: Path, mark) -> None:
    port = free_port()
    flow = tmp_path / "flow.yml"
    flow.write_text(chat_flow_yaml(fake_vllm_argv(port, exit_before_ready=9), port, readiness_timeout=60))
    run = flowctl_proc("run", str(flow), "-i", "prompt=hi")
    code = run.wait(timeout=20)
    err = run.stderr()
    assert code == 4, err
    assert "flowctl: error: service 'llm': exited with code 9 before it was ready" in err
    assert "simulated startup failure" in err
    assert "Traceback" not in err
    wait_gone(mark, 5)


async def test_a_command_that_cannot_start_is_an_error(managed, tmp_path: Path) -> None:
    missing = managed(command=["no-such-server", "--port", "1"], node_id="a")
    with pytest.raises(ServiceError, match="service 'a': cannot start no-such-server: No such file or directory"):
        await missing.start()
    bad_cwd = managed(command=["true"], cwd=str(tmp_path / "nowhere"), node_id="b")
    with pytest.raises(ServiceError, match=r"cannot start true: No such file or directory \(.*nowhere\)"):
        await bad_cwd.start()
    assert bad_cwd.status.state is ServiceState.FAILED


#: a process that serves nothing: it says where it is reachable after a moment, then waits
ANNOUNCER = "import time; print('warming up', flush=True); print('tunnel up at https://a-b.example.net now', flush=True); time.sleep(120)"


async def test_log_readiness_waits_for_the_line_and_gives_its_groups(managed, mark) -> None:
    node = managed(command=[sys.executable, "-c", ANNOUNCER], readiness={"log": r"up at (?P<url>https://\S+)", "timeout": 15})
    output = await node.start()
    assert output["matched"] == {"url": "https://a-b.example.net"}
    assert node.status.state is ServiceState.READY
    await node.stop()
    assert not marked(mark)


async def test_log_readiness_that_never_comes_times_out_naming_the_pattern(managed, mark) -> None:
    node = managed(command=[sys.executable, "-c", ANNOUNCER], readiness={"log": "no such line", "timeout": 1.0})
    with pytest.raises(ServiceError) as caught:
        await node.start()
    assert "not ready after 1s (an output line matching /no such line/)" in str(caught.value)
    assert not marked(mark), "the process that never got ready is stopped"


def test_log_readiness_must_be_a_pattern_and_alone() -> None:
    from pydantic import ValidationError

    from flowctl.nodes.readiness import ReadinessSpec

    with pytest.raises(ValidationError, match="not a regular expression"):
        ReadinessSpec(log="(unclosed")
    with pytest.raises(ValidationError, match="readiness of its own"):
        ReadinessSpec(log="x", tcp=True)
