"""`flowctl run` as a user runs it: a real subprocess that starts the fake vLLM server as its
managed process, streams the chunks to stdout, and stops what it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.fake import echo_tokens, expected_tokens
from support.flows import native_chat_flow
from support.procs import free_port, pid_alive, port_in_use
from support.waiting import wait_until

FLOWCTL = [sys.executable, "-m", "flowctl"]


def flowctl(*args: str, timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWCTL, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture
def chat_flow(tmp_path: Path):
    def write(**kwargs) -> tuple[Path, int]:
        port = free_port()
        path = tmp_path / "chat.yml"
        path.write_text(native_chat_flow(port, **kwargs))
        return path, port

    return write


def test_run_streams_every_token_once_and_in_order(chat_flow) -> None:
    flow, port = chat_flow(fake={"tokens": 40})
    result = flowctl("run", str(flow), "--input", '{"prompt": "Hello, how are you?", "temperature": 0.2}')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(expected_tokens(40)) + "\n"
    assert "Traceback" not in result.stderr
    assert not port_in_use(port), "the managed server must be stopped when run ends"


def test_run_prints_chunks_as_they_arrive(chat_flow) -> None:
    """The first token reaches stdout while the server is still generating the rest."""
    flow, _port = chat_flow(fake={"tokens": 6, "token_delay_ms": 400})
    proc = subprocess.Popen([*FLOWCTL, "run", str(flow), "-i", "prompt=hi"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.read(len(expected_tokens(6)[0]))
        assert first == expected_tokens(6)[0]
        assert proc.poll() is None, "still streaming: the output is not buffered to the end"
        rest, _err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert first + rest == "".join(expected_tokens(6)) + "\n"


def test_input_templating_reaches_the_upstream(chat_flow) -> None:
    flow, _port = chat_flow()
    result = flowctl("run", str(flow), "-i", "prompt=echo: the quick brown fox")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(echo_tokens("the quick brown fox")) + "\n"


def test_input_from_file(chat_flow, tmp_path: Path) -> None:
    flow, _port = chat_flow()
    (tmp_path / "in.json").write_text(json.dumps({"prompt": "echo: from a file", "max_tokens": 3}))
    result = flowctl("run", str(flow), "--input", f"@{tmp_path / 'in.json'}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(echo_tokens("from a file")) + "\n"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--input", '{"prompt": "hi", "temperature": "hot"}'], "temperature"),
        (["--input", '{"temperature": 0.3}'], "prompt"),
        (["-i", "prompt=hi", "-i", "max_tokens=1.5"], "max_tokens"),
    ],
)
def test_bad_input_fails_before_anything_starts(chat_flow, args: list[str], field: str) -> None:
    flow, port = chat_flow()
    result = flowctl("run", str(flow), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"input '{field}'" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not port_in_use(port)


def test_invalid_json_input_is_one_line(chat_flow) -> None:
    flow, _port = chat_flow()
    result = flowctl("run", str(flow), "--input", "{prompt: hi}")
    assert result.returncode == 2
    assert result.stderr.startswith("flowctl: error: input '--input': not valid JSON")


def test_upstream_error_fails_the_run_with_status_and_body(chat_flow) -> None:
    flow, port = chat_flow(fake={"fail_status": 500})
    result = flowctl("run", str(flow), "-i", "prompt=hi")
    assert result.returncode == 3
    assert "node 'chat'" in result.stderr and "500" in result.stderr
    assert "Traceback" not in result.stderr
    assert not port_in_use(port)


def test_server_dying_mid_stream_fails_the_run_and_names_the_service(chat_flow) -> None:
    flow, port = chat_flow(fake={"tokens": 50, "die_after_tokens": 5})
    result = flowctl("run", str(flow), "-i", "prompt=hi")
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("".join(expected_tokens(50)[:5]))
    assert "node 'chat'" in result.stderr
    assert "model-server" in result.stderr, "the cause (the service died) is named"
    assert not port_in_use(port)


def test_sigterm_mid_stream_stops_the_managed_server(chat_flow, tmp_path: Path) -> None:
    flow, port = chat_flow(fake={"tokens": 500, "token_delay_ms": 50})
    proc = subprocess.Popen([*FLOWCTL, "run", str(flow), "-i", "prompt=hi"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.read(3) == "w0 "
        server_pid = _managed_pid(tmp_path)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode != 0
    wait_until(lambda: not pid_alive(server_pid), timeout=10, message="managed server still alive after flowctl run was stopped")
    assert not port_in_use(port)


def _managed_pid(tmp_path: Path) -> int:
    log = tmp_path / ".flowctl" / "chat" / "logs" / "model-server.log"
    wait_until(log.exists, timeout=10, message="no log file for the managed server")
    for path in Path("/proc").iterdir():
        if not path.name.isdigit():
            continue
        try:
            cmdline = (path / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "fake_vllm.py" in cmdline and str(os.getpid()) != path.name and "--tokens\x00500" in cmdline:
            return int(path.name)
    raise AssertionError("managed fake server process not found")


def test_run_goes_through_a_running_up_instead_of_starting_a_second_server(flowctl_up, tmp_path: Path) -> None:
    from support.flowctl_up import fake_flow_yaml

    port = free_port()
    up = flowctl_up(fake_flow_yaml(port, tokens=7))
    before = httpx.get(f"http://127.0.0.1:{port}/stats").json()["requests"]
    result = flowctl("run", str(up.flow_path), "-i", "prompt=hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(expected_tokens(7)) + "\n"
    assert "running through `flowctl up`" in result.stderr
    assert httpx.get(f"http://127.0.0.1:{port}/stats").json()["requests"] == before + 1
    assert up.alive(), "the `up` keeps serving after the run"
    bad = flowctl("run", str(up.flow_path), "-i", "prompt=hi", "-i", "temperature=hot")
    assert bad.returncode == 2 and "temperature" in bad.stderr
