"""Logs of a managed process: a file under the flow's state directory, every line stamped (what
`flowctl logs NODE FLOW` prints, without the stamps); the console gets flowctl's events about
it, prefixed with the node id."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from supervision_support import FLOWCTL, chat_flow_yaml
from support.fake import fake_vllm_argv
from support.paths import REPO_ROOT
from support.procs import free_port
from support.waiting import async_wait_until

from flowctl.cli import main as cli_main
from flowctl.nodes.base import ServiceState


def flowctl_logs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWCTL, "logs", *args], capture_output=True, text=True, timeout=30, cwd=str(REPO_ROOT))


def test_flowctl_logs_prints_the_managed_process_lines(flowctl_proc, tmp_path: Path, capsys) -> None:
    port = free_port()
    flow = tmp_path / "chat.yml"
    flow.write_text(chat_flow_yaml(fake_vllm_argv(port, tokens=3), port))
    run = flowctl_proc("run", str(flow), "-i", "prompt=hi")
    assert run.wait(30) == 0, run.stderr()
    console = run.stderr()
    assert re.search(r"^\d\d:\d\d:\d\d llm +\| started pid \d+", console, re.MULTILINE), "the console says what flowctl does, prefixed"
    assert re.search(r"^\d\d:\d\d:\d\d llm +\| ready \(", console, re.MULTILINE), console
    assert "fake-vllm listening" not in console, "the server's own output goes to its log, not the console"

    log_file = tmp_path / ".flowctl" / "chat" / "logs" / "llm.log"
    assert log_file.is_file()
    raw = log_file.read_text().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d ", line) for line in raw), "every line is stamped"
    result = flowctl_logs("llm", str(flow))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"fake-vllm listening on http://127.0.0.1:{port}" in lines, "the file holds the process's own lines; logs prints them unprefixed"
    assert any('"POST /v1/chat/completions HTTP/1.1" 200' in line for line in lines)
    assert any(line.startswith("[flowctl] started pid") for line in lines)
    assert any("SIGTERM received, shutting down" in line for line in lines), "lines up to its very end"

    # the same command in-process (no interpreter start-up): -n, and a node with no log
    assert cli_main(["logs", "llm", str(flow), "-n", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == lines[-2:]
    assert cli_main(["logs", "nope", str(flow)]) == 2
    assert "no service 'nope'" in capsys.readouterr().err


async def test_log_file_spans_restarts_and_is_closed_on_stop(managed) -> None:
    node = managed(fake={}, restart={"policy": "on-failure", "backoff": 0.01})
    await node.start()
    first = node.status.pid
    os.kill(first, signal.SIGKILL)
    await async_wait_until(lambda: node.status.ready and node.status.pid != first, timeout=10)
    second = node.status.pid
    await node.stop()
    assert node.status.state is ServiceState.STOPPED
    assert node.node._log.closed, "the log file is closed on stop"
    text = node.node.log_path.read_text()
    assert f"started pid {first}" in text and f"started pid {second}" in text
    assert "was killed by SIGKILL" in text
    assert text.count("fake-vllm listening on") == 2
    assert f"stopping pid {second}" in text
