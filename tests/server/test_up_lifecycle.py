"""`flowctl up` as a process: graceful SIGTERM (drain, no orphan), a service that fails at
start, -d/--detach with `flowctl down`, and pid files that went stale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from httpx_sse import connect_sse
from support.fake import expected_text, expected_tokens
from support.flowctl_up import fake_flow_yaml, wait_port_free, wait_ready_200
from support.paths import REPO_ROOT
from support.procs import free_port, pid_alive, port_in_use
from support.waiting import wait_until


def flowctl(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOWCTL_API_KEY"}
    return subprocess.run([sys.executable, "-m", "flowctl", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)


def managed_pid(api: str) -> int:
    return httpx.get(api + "/ready", timeout=5).json()["services"]["llm"]["pid"]


def test_sigterm_lets_a_stream_finish_then_stops_everything(flowctl_up) -> None:
    fake_port = free_port()
    up = flowctl_up(fake_flow_yaml(fake_port, server={"drain_timeout": 10}))
    llm_pid = managed_pid(up.api)
    with httpx.Client(base_url=up.api, timeout=20) as client:
        with connect_sse(client, "POST", "/workflows/chat/runs", json={"input": {"prompt": "x", "tokens": "30", "delay_ms": "30"}}) as source:
            events = source.iter_sse()
            assert next(events).data == "w0"
            up.signal(signal.SIGTERM)
            # it stops accepting at once...
            wait_until(lambda: not port_in_use(up.api_port), timeout=5, message="still accepting after SIGTERM")
            # ...and the stream in flight runs to its end
            rest = list(events)
    assert [e.data for e in rest if e.event == "message"] == expected_tokens(30)[1:]
    assert rest[-1].event == "done" and json.loads(rest[-1].data)["status"] == "succeeded"
    assert up.wait(20) == 0
    assert not pid_alive(llm_pid)
    wait_port_free(fake_port)
    assert not port_in_use(up.ui_port)
    assert "stopped" in up.log_text()


def test_a_stream_past_the_drain_timeout_ends_with_an_error_event(flowctl_up) -> None:
    fake_port = free_port()
    up = flowctl_up(fake_flow_yaml(fake_port, server={"drain_timeout": 0.5}), ui_port=None)
    llm_pid = managed_pid(up.api)
    with httpx.Client(base_url=up.api, timeout=20) as client:
        with connect_sse(client, "POST", "/workflows/chat/runs", json={"input": {"prompt": "x", "tokens": "5000", "delay_ms": "10"}}) as source:
            events = source.iter_sse()
            assert next(events).data == "w0"
            started = time.monotonic()
            up.signal(signal.SIGTERM)
            rest = list(events)
            took = time.monotonic() - started
    assert rest[-1].event == "error"
    assert "shutting down" in json.loads(rest[-1].data)["message"]
    assert took < 5
    assert up.wait(20) == 0
    assert not pid_alive(llm_pid)
    wait_port_free(fake_port)


def test_a_service_that_fails_at_start_makes_up_exit_with_its_error(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yml"
    flow.write_text(fake_flow_yaml(free_port(), exit_before_ready=3))
    result = flowctl("up", str(flow), "--port", str(free_port()), "--ui-port", "0", "--no-reload")
    assert result.returncode == 4
    assert "flowctl: error: service 'llm'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_refused_before_services_start(tmp_path: Path) -> None:
    import socket

    fake_port = free_port()
    flow = tmp_path / "flow.yml"
    flow.write_text(fake_flow_yaml(fake_port))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = flowctl("up", str(flow), "--port", str(taken.getsockname()[1]), "--ui-port", "0", "--no-reload")
    assert result.returncode == 2 and "cannot listen" in result.stderr
    assert not port_in_use(fake_port)


def test_detach_then_down(tmp_path: Path) -> None:
    fake_port, api_port, ui_port = free_port(), free_port(), free_port()
    flow = tmp_path / "flow.yml"
    flow.write_text(fake_flow_yaml(fake_port))
    state = tmp_path / ".flowctl" / "flow"
    result = flowctl("up", "-d", str(flow), "--port", str(api_port), "--ui-port", str(ui_port), "--no-reload")
    try:
        assert result.returncode == 0, result.stderr
        record = json.loads((state / "up.json").read_text())
        pid = int((state / "up.pid").read_text())
        assert record["pid"] == pid and record["port"] == api_port and record["ui_port"] == ui_port
        assert str(pid) in result.stdout and "flowctl down" in result.stdout
        api = f"http://127.0.0.1:{api_port}/api"
        assert httpx.get(api + "/ready").status_code == 200
        r = httpx.post(api + "/workflows/chat/runs", json={"input": {"prompt": "x", "tokens": "3"}}, headers={"Accept": "application/json"})
        assert r.json()["output"] == expected_text(3)
        llm_pid = managed_pid(api)
        # a second `up` of the same flow is refused while it runs
        again = flowctl("up", str(flow), "--port", str(free_port()), "--ui-port", "0", "--no-reload")
        assert again.returncode == 2 and "already up" in again.stderr
        stopped = flowctl("down", str(flow))
        assert stopped.returncode == 0 and "stopped" in stopped.stderr
        assert not pid_alive(pid) and not pid_alive(llm_pid)
        assert not (state / "up.pid").exists() and not (state / "up.json").exists()
        wait_port_free(api_port)
        wait_port_free(fake_port)
        # down again: nothing to do
        assert flowctl("down", str(flow)).returncode == 0
    finally:
        _kill_recorded(state)


def test_a_stale_pid_file_neither_blocks_up_nor_makes_down_kill_a_stranger(tmp_path: Path) -> None:
    fake_port, api_port = free_port(), free_port()
    flow = tmp_path / "flow.yml"
    flow.write_text(fake_flow_yaml(fake_port))
    state = tmp_path / ".flowctl" / "flow"
    state.mkdir(parents=True)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # `down` with a pid file naming a live process that is not flowctl: it is left alone
        (state / "up.pid").write_text(f"{stranger.pid}\n")
        result = flowctl("down", str(flow))
        assert result.returncode == 0 and "stale" in result.stderr
        assert pid_alive(stranger.pid)
        assert not (state / "up.pid").exists()
        # `up` with a stale pid file (a stranger again) starts anyway
        (state / "up.pid").write_text(f"{stranger.pid}\n")
        started = flowctl("up", "-d", str(flow), "--port", str(api_port), "--ui-port", "0", "--no-reload")
        assert started.returncode == 0, started.stderr
        assert "stale" in started.stderr
        assert int((state / "up.pid").read_text()) != stranger.pid
        wait_ready_200(_Handle(f"http://127.0.0.1:{api_port}/api"), timeout=10)
        assert flowctl("down", str(flow)).returncode == 0
        assert pid_alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()
        _kill_recorded(state)


class _Handle:
    """Enough of an UpHandle for wait_ready_200."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.headers: dict[str, str] = {}
        self.process = _Running()

    def log_tail(self) -> str:
        return ""


class _Running:
    def poll(self) -> None:
        return None


def _kill_recorded(state: Path) -> None:
    """Teardown: if a detached `up` is still recorded and alive, kill its group."""
    try:
        pid = int((state / "up.pid").read_text())
    except (OSError, ValueError):
        return
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}/cmdline").exists() else b""
    if b"flowctl" in cmdline:
        try:
            os.killpg(pid, signal.SIGTERM)
            wait_until(lambda: not pid_alive(pid), timeout=15)
        except (ProcessLookupError, AssertionError):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
