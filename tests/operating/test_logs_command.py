"""`flowctl logs [-f] [--tail N] [NODE...]`, compose's habits: every log interleaved in the
order written under aligned prefixes, one log bare, `-f` follows across rotations, a
did-you-mean for an unknown node, env-setup's build output and flowctl's own log, and the flow
found the way every command finds it (not `flows/local_chat.yml` from anywhere)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from support.fake import fake_vllm_argv
from support.flowctl_up import fake_flow_yaml
from support.flows import chat_nodes, chat_url, q, server_node
from support.paths import PYTHON, REPO_ROOT
from support.procs import free_port, kill_process_group
from support.waiting import wait_until

from flowctl.engine.paths import state_dir_for
from flowctl.nodes import process_log
from flowctl.nodes.process_log import ProcessLog, log_file


def flowctl(*args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    child_env = {key: value for key, value in os.environ.items() if key != "FLOWCTL_FLOW"}
    child_env.update(env or {})
    return subprocess.run([PYTHON, "-m", "flowctl", *args], capture_output=True, text=True, timeout=30, cwd=str(cwd), env=child_env)


def two_services(port: int, other: int, *, quiet: bool = False) -> str:
    return (
        "version: 1\nname: two\nnodes:\n"
        + server_node("llm", fake_vllm_argv(port, quiet=quiet), port)
        + server_node("embedder-server", fake_vllm_argv(other, quiet=quiet), other)
        + chat_nodes(chat_url(port), needs="llm")
    )


def test_all_logs_interleaved_in_the_order_written(flowctl_up) -> None:
    port, other = free_port(), free_port()
    up = flowctl_up(two_services(port, other))
    for target in (port, other, port):  # lines in both logs, one after the other
        assert httpx.get(f"http://127.0.0.1:{target}/v1/models", timeout=5).status_code == 200
    wait_until(lambda: log_file(state_dir_for(up.flow_path), "llm").read_text().count("GET /v1/models") >= 2, timeout=5)
    result = flowctl("logs", "--tail", "all", "-t", str(up.flow_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    sources = [line.split("|", 1)[0].strip() for line in lines]
    assert set(sources) == {"llm", "embedder-server", "flowctl"}
    assert {line.index("|") for line in lines} == {len("embedder-server") + 1}, "aligned"
    stamps = [re.search(r"\| (\S+) ", line).group(1) for line in lines]
    assert stamps == sorted(stamps), "in the order written"
    gets = [source for source, line in zip(sources, lines, strict=True) if "GET /v1/models" in line]
    assert gets[-3:] == ["llm", "embedder-server", "llm"]
    # flowctl's own log repeats its events about each service; shown side by side, once
    assert sum("started pid" in line for line in lines) == 2, "\n".join(lines)

    # one log alone: as it is, without a prefix
    alone = flowctl("logs", "llm", str(up.flow_path), "-n", "1").stdout
    assert alone.count("\n") == 1 and "|" not in alone.split(" ", 1)[0]


def test_an_unknown_node_gets_a_did_you_mean(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yml"
    flow.write_text(fake_flow_yaml(free_port()))
    result = flowctl("logs", "lm", str(flow))
    assert result.returncode == 2
    assert result.stderr.strip() == "flowctl: error: no service 'lm' in this flow (did you mean 'llm'?)"


def test_env_setup_output_and_flowctls_own_log(flowctl_up) -> None:
    port = free_port()
    flow = (
        "version: 1\nname: built\nnodes:\n"
        f"  deps:\n    type: env-setup\n    venv: false\n    commands: [{q('echo compiling thing.c; echo linking thing.so')}]\n"
        + server_node("llm", fake_vllm_argv(port, quiet=True), port, needs=["deps"])
        + chat_nodes(chat_url(port), needs="llm")
    )
    up = flowctl_up(flow)
    build = flowctl("logs", "deps", str(up.flow_path)).stdout.splitlines()
    assert "compiling thing.c" in build and "linking thing.so" in build
    assert any(line.startswith("[flowctl] running echo compiling") for line in build)
    own = flowctl("logs", "flowctl", str(up.flow_path)).stdout
    assert f"serving {up.flow_path} on {up.api}" in own and "[llm] ready" in own


def test_the_flow_is_the_one_in_the_current_directory_or_flowctl_flow(flowctl_up, tmp_path: Path) -> None:
    """`flowctl logs llm` in a project directory reads that project's logs."""
    up = flowctl_up(fake_flow_yaml(free_port()))
    project = up.flow_path.parent
    here = flowctl("logs", "llm", cwd=project)
    assert here.returncode == 0 and "fake-vllm listening on" in here.stdout, here.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    named = flowctl("logs", "llm", cwd=elsewhere, env={"FLOWCTL_FLOW": str(up.flow_path)})
    assert named.returncode == 0 and "fake-vllm listening on" in named.stdout, named.stderr
    with_f = flowctl("-f", str(up.flow_path), "logs", "llm", cwd=elsewhere)
    assert with_f.stdout == named.stdout


def test_follow_prints_each_line_once_across_rotations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer rotates its file every ~40 lines while `flowctl logs -f` follows it."""
    monkeypatch.setattr(process_log, "LOG_ROTATE_BYTES", 4096)
    flow = tmp_path / "flow.yml"
    flow.write_text(fake_flow_yaml(free_port()))
    writer = ProcessLog()
    writer.open(log_file(state_dir_for(flow), "llm"))
    writer.line("before the follow")
    proc = subprocess.Popen([PYTHON, "-m", "flowctl", "logs", "-f", "--tail", "1", "llm", str(flow)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO_ROOT), start_new_session=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_until(lambda: seen == ["before the follow\n"], timeout=15, message=lambda: f"{seen} {proc.poll()}")  # it follows from here on
        seen.clear()
        written = 0
        for _batch in range(12):
            for _ in range(30):
                writer.line(f"line {written:04d} {'x' * 40}")
                written += 1
            wait_until(lambda: len(seen) >= written, timeout=10, message=lambda: f"{len(seen)} of {written} lines; last: {seen[-1:]}")  # noqa: B023  (called within the iteration)
        assert log_file(state_dir_for(flow), "llm").with_name("llm.log.1").exists(), "the log rotated meanwhile"
        assert [line.split()[1] for line in seen] == [f"{n:04d}" for n in range(written)], "each line once, in order"
    finally:
        writer.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0, proc.stderr.read()
        kill_process_group(proc, 0.0)


def test_paths_are_never_names(tmp_path: Path) -> None:
    flow = tmp_path / "flows" / "flow.yml"
    flow.parent.mkdir()
    flow.write_text(fake_flow_yaml(free_port()))
    (state_dir_for(flow) / "logs").mkdir(parents=True)
    (state_dir_for(flow) / "secret.log").write_text("private\n")
    for name in ("../secret", "..", "logs/../../secret"):
        result = flowctl("logs", name, str(flow))
        assert result.returncode == 2 and "private" not in result.stdout and "not a node id" in result.stderr
