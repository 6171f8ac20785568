"""Which flow a command means (given, $FLOWCTL_FLOW, the one flow file here, the default flow,
from any directory), which `.env` fills the environment (the process's own values win), and
FLOWCTL_PORT / FLOWCTL_HOST (the command line wins over them, they win over the flow)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from support.fake import fake_vllm_argv
from support.flows import chat_nodes, chat_url, server_node
from support.paths import PYTHON, REPO_ROOT
from support.procs import free_port, kill_process_group, term_when_parent_dies
from support.waiting import wait_until

from flowctl.engine.errors import UsageError
from flowctl.engine.flow_files import choose_flow, default_flow, read_env_files
from flowctl.engine.spec import ServerSpec
from flowctl.server.options import UpOptions, resolve_settings

NATIVE = "version: 1\nnodes:\n  v: {type: http-stream, url: 'http://127.0.0.1:9/'}\n  out: {type: sse-sink, source: '${nodes.v.output as stream/text}'}\n"
MODEL_COMPOSE = "component:\n  type: http-server\n  port: 8000\n"


def flowctl(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    child_env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWCTL_")}
    child_env.update(env or {})
    return subprocess.run([PYTHON, "-m", "flowctl", *args], capture_output=True, text=True, timeout=60, cwd=str(cwd), env=child_env)


def test_the_order_of_choice(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text("services:\n  web: {image: nginx}\n")
    (tmp_path / "notes.yaml").write_text("- just a list\n")
    assert choose_flow(None, cwd=tmp_path, environ={}).path == default_flow(), "no flow here: the default"
    (tmp_path / "chat.yml").write_text(NATIVE)
    here = choose_flow(None, cwd=tmp_path, environ={})
    assert here.path == tmp_path / "chat.yml" and here.how == "the flow file here"
    (tmp_path / "mc.yaml").write_text(MODEL_COMPOSE)
    with pytest.raises(UsageError, match=r"several flow files here \(chat.yml, mc.yaml\)"):
        choose_flow(None, cwd=tmp_path, environ={})
    (tmp_path / ".env").write_text("FLOWCTL_FLOW=mc.yaml\n")
    assert choose_flow(None, cwd=tmp_path, environ={}).path == Path("mc.yaml"), ".env here may name it"
    assert choose_flow(None, cwd=tmp_path, environ={"FLOWCTL_FLOW": "chat.yml"}).path == Path("chat.yml"), "the environment over .env"
    assert choose_flow("other.yml", cwd=tmp_path, environ={"FLOWCTL_FLOW": "chat.yml"}).how == "given"


def test_the_default_flow_resolves_from_any_directory(tmp_path: Path) -> None:
    result = flowctl("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{REPO_ROOT / 'flows' / 'local_chat.yml'}: ok")


def test_two_flows_named_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(NATIVE)
    (tmp_path / "b.yml").write_text(NATIVE)
    result = flowctl("-f", "a.yml", "validate", "b.yml", cwd=tmp_path)
    assert result.returncode == 2 and "two flows given (a.yml and b.yml)" in result.stderr


def tokens_flow(port: int) -> str:
    """The fake server's token count comes from `${env.DEMO_TOKENS}`."""
    argv = [*fake_vllm_argv(port, quiet=True), "--tokens", "${env.DEMO_TOKENS}"]
    return "version: 1\nname: env-demo\nnodes:\n" + server_node("llm", argv, port) + chat_nodes(chat_url(port), needs="llm")


def test_env_files_fill_the_environment_and_the_shell_wins(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "flow.yml").write_text(tokens_flow(free_port()))
    (project / ".env").write_text("# tokens for the demo\nexport DEMO_TOKENS=3\n")
    (tmp_path / "more.env").write_text("DEMO_TOKENS='4'\n")
    run = ["run", "-i", "prompt=hi"]
    assert flowctl(*run, cwd=project).stdout.split() == ["w0", "w1", "w2"], ".env beside the flow"
    assert flowctl(*run, cwd=project, env={"DEMO_TOKENS": "2"}).stdout.split() == ["w0", "w1"], "the process environment wins"
    assert flowctl("--env-file", str(tmp_path / "more.env"), *run, cwd=project).stdout.split() == ["w0", "w1", "w2", "w3"], "--env-file instead of .env"
    missing = flowctl("--env-file", "nope.env", *run, cwd=project)
    assert missing.returncode == 2 and "cannot read nope.env" in missing.stderr


def test_read_env_files_later_files_win_and_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.env").write_text("A=1\nB=from-a\nD=d\n")
    (tmp_path / "b.env").write_text("B=from-b\nC=${A}-${D}\n")
    monkeypatch.setenv("A", "shell")
    for name in "BCD":
        monkeypatch.delenv(name, raising=False)
    applied = read_env_files([tmp_path / "a.env", tmp_path / "b.env"])
    assert applied == {"B": "from-b", "C": "shell-d", "D": "d"}, "the shell's A stays and is what ${A} means"
    assert os.environ["A"] == "shell" and os.environ["C"] == "shell-d"


def test_listen_settings_cli_over_environment_over_flow() -> None:
    flow = ServerSpec(host="127.0.0.1", port=9000, ui_port=9001)
    env = {"FLOWCTL_PORT": "9100", "FLOWCTL_HOST": "::1", "FLOWCTL_UI_PORT": "0"}
    assert (s := resolve_settings(flow, UpOptions(flow="f"), {})).port == 9000 and s.ui_port == 9001
    from_env = resolve_settings(flow, UpOptions(flow="f"), env)
    assert (from_env.port, from_env.host, from_env.ui_port) == (9100, "::1", None)
    from_cli = resolve_settings(flow, UpOptions(flow="f", port=9200, host="127.0.0.2", ui_port=9201), env)
    assert (from_cli.port, from_cli.host, from_cli.ui_port) == (9200, "127.0.0.2", 9201)
    with pytest.raises(UsageError, match=r"\$FLOWCTL_PORT is 'eighty', not a port number"):
        resolve_settings(flow, UpOptions(flow="f"), {"FLOWCTL_PORT": "eighty"})


def test_up_listens_where_flowctl_port_says(tmp_path: Path) -> None:
    port, api_port = free_port(), free_port()
    flow = tmp_path / "flow.yml"
    flow.write_text(tokens_flow(port))
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOWCTL_")}
    env.update(FLOWCTL_PORT=str(api_port), FLOWCTL_UI_PORT="0", DEMO_TOKENS="1")
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([PYTHON, "-m", "flowctl", "up", str(flow), "--no-reload"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT), start_new_session=True, preexec_fn=term_when_parent_dies)
    try:
        ready = wait_until(lambda: httpx.get(f"http://127.0.0.1:{api_port}/api/ready", timeout=2).status_code == 200, timeout=30, ignore=(httpx.TransportError,), message=lambda: log.read_text())
        assert ready
        wait_until(lambda: f"serving {flow} on http://127.0.0.1:{api_port}/api" in log.read_text(), timeout=10, message=log.read_text)
        assert "web UI" not in log.read_text()
    finally:
        kill_process_group(proc, 10.0)
