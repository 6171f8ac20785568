"""The console of `flowctl up`: aligned prefixes per source with the time, colour on a terminal
(a real pty), plain text when not one, JSON lines on request; a service's own output goes to
its log with only flowctl's events on the console (`--verbose` shows it all); the banner with
the URLs comes last; a long env-setup step shows a heartbeat."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from support.console import LINE, messages
from support.fake import DEFAULT_MODEL, fake_vllm_argv
from support.flows import chat_nodes, chat_url, q, server_node
from support.paths import PYTHON, REPO_ROOT
from support.procs import free_port, kill_process_group
from support.waiting import wait_until

from flowctl.engine.paths import state_dir_for
from flowctl.nodes.process_log import log_file

LOADER_LINES = 2500


def chatty_flow(port: int, **fake: object) -> str:
    """A flow whose server prints a model loader's 2,500 lines before it listens (as
    llama.cpp does), next to a quiet second service with a longer id."""
    other = free_port()
    return (
        "version: 1\nname: chatty\nnodes:\n"
        + server_node("llm", fake_vllm_argv(port, startup_lines=LOADER_LINES, quiet=True, **fake), port, restart="on-failure", backoff=0.1)
        + server_node("embedder-server", fake_vllm_argv(other, quiet=True), other)
        + chat_nodes(chat_url(port), needs="llm")
    )


def banner_last(lines: list[str]) -> list[str]:
    """The console's lines from the banner's first to the end; asserts nothing else follows."""
    start = next(i for i, line in enumerate(lines) if "| serving " in line)
    tail = lines[start:]
    assert all(re.search(r"flowctl +\|   ", line) for line in tail[1:]), tail
    return tail


def test_plain_console_hides_a_loaders_output_and_ends_with_the_banner(flowctl_up) -> None:
    port = free_port()
    up = flowctl_up(chatty_flow(port))
    wait_until(lambda: "  stop " in up.log_text(), timeout=10, message=up.log_tail)
    lines = up.log_text().splitlines()
    assert "\x1b[" not in up.log_text(), "no colour when stdout is not a terminal"
    assert len(lines) < 30, f"{len(lines)} console lines:\n" + "\n".join(lines[:40])
    assert not any("llama_model_loader" in line for line in lines), "the loader's lines go to its log only"
    # every line: time, the source padded to the longest id, a bar at one column
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    bars = {line.index("|") for line in lines}
    assert bars == {len("12:00:00 ") + len("embedder-server") + 1}, lines
    assert "ready (" in " ".join(messages(up.log_text(), "llm")) and f"{LOADER_LINES + 1} lines of output in its log" in up.log_text()
    banner = banner_last(lines)
    assert any(f"API      {up.api}" in line for line in banner) and any(f"web UI   {up.ui}" in line for line in banner)
    assert any("flowctl ps" in line for line in banner)
    log = log_file(state_dir_for(up.flow_path), "llm").read_text()
    assert log.count("llama_model_loader") == LOADER_LINES


def test_a_multi_line_message_keeps_its_prefix_on_every_line(flowctl_up) -> None:
    port = free_port()
    up = flowctl_up(chatty_flow(port))
    pid = httpx_ready(up)["services"]["llm"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: "last output:" in up.log_text(), timeout=10, message=up.log_tail)
    lines = up.log_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "was killed by SIGKILL; last output:" in line)
    following = lines[at + 1 : at + 6]
    assert following and all(re.match(r"\d\d:\d\d:\d\d llm +\| ", line) for line in following), following
    assert any("listening on" in line for line in following), "the death shows the last lines of the output"


def test_verbose_shows_every_line_prefixed(flowctl_up) -> None:
    port = free_port()
    up = flowctl_up(chatty_flow(port), extra_args=["--verbose"])
    wait_until(lambda: "  stop " in up.log_text(), timeout=10, message=up.log_tail)
    loader = [m for m in messages(up.log_text(), "llm") if m.startswith("llama_model_loader")]
    assert len(loader) == LOADER_LINES
    banner_last(up.log_text().splitlines())  # still last


def test_json_lines_on_request(flowctl_up) -> None:
    port = free_port()
    up = flowctl_up(chatty_flow(port), extra_args=["--log-format", "json"])
    wait_until(lambda: '"banner"' in up.log_text(), timeout=10, message=up.log_tail)
    records = [json.loads(line) for line in up.log_text().splitlines()]
    assert all({"time", "source", "kind", "text"} <= set(record) for record in records)
    assert {record["source"] for record in records} == {"flowctl", "llm", "embedder-server"}
    assert any(record["source"] == "llm" and record["kind"] == "event" and record["text"].startswith("ready") for record in records)
    assert records[-1]["kind"] == "banner" and records[-1]["api"] == up.api and records[-1]["web_ui"] == up.ui


def test_colour_on_a_terminal(tmp_path: Path) -> None:
    """`flowctl up` with a real pseudo-terminal as stdout and stderr."""
    port, api_port = free_port(), free_port()
    flow = tmp_path / "chatty.yml"
    flow.write_text(chatty_flow(port))
    text = run_in_pty([PYTHON, "-m", "flowctl", "up", str(flow), "--port", str(api_port), "--ui-port", "0", "--no-reload"], until="  stop ", env={"NO_COLOR": ""})
    assert "\x1b[1mflowctl         |\x1b[0m" in text, text[:500]
    assert "\x1b[36mllm             |\x1b[0m" in text and "\x1b[33membedder-server |\x1b[0m" in text, "each service its own colour"
    assert re.search(r"\x1b\[2m\d\d:\d\d:\d\d\x1b\[0m", text), "the time, dimmed"
    assert f"\x1b[1;32mserving {flow} on http://127.0.0.1:{api_port}/api" in text, "the banner stands out"
    assert "llama_model_loader" not in text

    plain = run_in_pty([PYTHON, "-m", "flowctl", "up", str(flow), "--port", str(api_port), "--ui-port", "0", "--no-reload"], until="  stop ", env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain and re.search(r"^\d\d:\d\d:\d\d flowctl +\| serving ", plain, re.MULTILINE), "NO_COLOR turns it off"


def test_an_env_setup_step_shows_a_heartbeat_and_keeps_its_output_in_its_log(flowctl_up, tmp_path: Path) -> None:
    port = free_port()
    marker = tmp_path / "go"
    step = f"echo 'Building wheel for slow-thing (pyproject): started'; while [ ! -e {marker} ]; do sleep 0.05; done; echo built"
    flow = (
        "version: 1\nname: slow-build\nnodes:\n"
        f"  build:\n    type: env-setup\n    venv: false\n    progress: 0.2\n    commands: [{q(step)}]\n"
        + server_node("llm", fake_vllm_argv(port, quiet=True), port, needs=["build"])
        + chat_nodes(chat_url(port), needs="llm")
    )
    up = flowctl_up(flow, wait_ready=False)
    beats = wait_until(lambda: [m for m in messages(up.log_text(), "build") if "(0s)" in m or "(1s)" in m] or None, timeout=15, message=up.log_tail)
    assert "Building wheel for slow-thing (pyproject): started" in beats[0], "the heartbeat names the latest line"
    assert re.search(r"running echo .* \(\ds\): Building wheel", beats[0]), beats[0]
    marker.touch()
    wait_until(lambda: "  stop " in up.log_text(), timeout=20, message=up.log_tail)
    assert not any(m == "built" for m in messages(up.log_text(), "build")), "the step's own lines are in its log"
    build_log = log_file(state_dir_for(up.flow_path), "build").read_text()
    assert "Building wheel for slow-thing" in build_log and " built\n" in build_log


def test_a_slow_readiness_probe_is_not_silent(flowctl_up) -> None:
    """The probe is a generation that takes seconds (a model warming up): the heartbeat goes
    on while that one request is in flight."""
    port = free_port()
    readiness = {"http": "/v1/chat/completions", "method": "POST", "body": {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}, "request_timeout": 20, "progress": 0.3, "timeout": 30}
    flow = (
        "version: 1\nname: warm-up\nnodes:\n"
        f"  llm:\n    type: process-start\n    command: {q(fake_vllm_argv(port, quiet=True, first_token_delay_ms=2500))}\n"
        f"    port: {port}\n    readiness: {q(readiness)}\n"
        + chat_nodes(chat_url(port), needs="llm")
    )
    up = flowctl_up(flow)
    wait_until(lambda: "  stop " in up.log_text(), timeout=10, message=up.log_tail)
    said = messages(up.log_text(), "llm")
    ready_at = next(i for i, m in enumerate(said) if m.startswith("ready ("))
    beats = [m for m in said[:ready_at] if m.startswith("waiting for POST http://127.0.0.1:")]
    assert len(beats) >= 3, said


# -- helpers ------------------------------------------------------------------------------


def httpx_ready(up) -> dict:
    import httpx

    return httpx.get(up.api + "/ready", timeout=5).json()


def run_in_pty(argv: list[str], *, until: str, env: dict[str, str], timeout: float = 30.0) -> str:
    """Run `argv` with a pseudo-terminal as stdout and stderr until `until` shows; SIGTERM it;
    return what it wrote."""
    import pty

    master, slave = pty.openpty()
    child_env = {**os.environ, **env, "TERM": "xterm"}
    child_env.pop("FORCE_COLOR", None)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=str(REPO_ROOT), env=child_env, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + timeout
        while until.encode() not in out:
            left = deadline - time.monotonic()
            assert left > 0, f"no {until!r} within {timeout}s:\n{out.decode(errors='replace')[-2000:]}"
            ready, _, _ = select.select([master], [], [], left)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        finally:
            kill_process_group(proc, 0.0)
            os.close(master)
    return out.decode(errors="replace").replace("\r\n", "\n")
