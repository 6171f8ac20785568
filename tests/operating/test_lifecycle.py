"""`flowctl up --build` sets environments up again from nothing (not under another running
flowctl); `flowctl prune` removes the cached environments and pip caches that neither the
given flows nor a running flowctl use, lists before it removes, and asks first."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.fake import fake_vllm_argv
from support.flows import chat_nodes, chat_url, q, server_node
from support.paths import PYTHON, REPO_ROOT
from support.procs import free_port

from flowctl.engine.flow import load_flow
from flowctl.engine.supervisor import resolve_fields
from flowctl.nodes.env_setup import env_path, pip_cache_dir


def env_flow(port: int, env_id: str, counter: Path, label: str) -> str:
    """A bare venv (no pip: quick) whose setup appends `label` to `counter`, before the fake."""
    step = f"echo {label} >> {counter}"
    return (
        f"version: 1\nname: {label}\nnodes:\n"
        f"  {env_id}:\n    type: env-setup\n    pip: false\n    commands: [{q(step)}]\n"
        + server_node("llm", fake_vllm_argv(port, quiet=True), port, needs=[env_id])
        + chat_nodes(chat_url(port), needs="llm")
    )


def the_env(flow: Path, node: str, home: Path) -> Path:
    compiled = load_flow(flow)
    return env_path(compiled.nodes[node].spec, resolve_fields(compiled, node, {}), home, node)


def flowctl(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWCTL_HOME": str(home)}
    return subprocess.run([PYTHON, "-m", "flowctl", *args], capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT), env=env, input=stdin)


def test_build_sets_the_environment_up_again(flowctl_up, tmp_path: Path) -> None:
    home, counter = tmp_path / "home", tmp_path / "counter"
    flow = tmp_path / "flow.yml"
    flow.write_text(env_flow(free_port(), "deps", counter, "built"))
    env = {"FLOWCTL_HOME": str(home)}
    flowctl_up(flow, env=env).stop()
    venv = the_env(flow, "deps", home)
    assert counter.read_text() == "built\n" and (venv / "bin" / "python").exists()
    (venv / "left-behind").write_text("x")

    again = flowctl_up(flow, env=env)
    again.stop()
    assert counter.read_text() == "built\n" and "environment up to date, setup skipped" in again.log_text()

    rebuilt = flowctl_up(flow, env=env, extra_args=["--build"])
    assert counter.read_text() == "built\nbuilt\n", "the setup ran again"
    assert not (venv / "left-behind").exists() and (venv / "bin" / "python").exists(), "made again from nothing"
    assert "--build: removing" in rebuilt.log_text()

    # not under another flowctl that uses it: a second flow with the same environment
    twin = tmp_path / "twin" / "flow.yml"
    twin.parent.mkdir()
    twin.write_text(env_flow(free_port(), "deps", counter, "built"))
    assert the_env(twin, "deps", home) == venv, "the same spec shares one environment"
    refused = flowctl_up(twin, env=env, extra_args=["--build"], wait_ready=False)
    assert refused.wait(30) == 4
    assert "cannot rebuild" in refused.log_text() and "another running flowctl uses it" in refused.log_text()
    assert (venv / "bin" / "python").exists() and rebuilt.alive()


def test_prune_keeps_what_flows_and_running_flowctls_use(flowctl_up, tmp_path: Path) -> None:
    home, counter = tmp_path / "home", tmp_path / "counter"
    kept_flow, other_flow = tmp_path / "kept" / "flow.yml", tmp_path / "other" / "flow.yml"
    for flow, label in ((kept_flow, "kept"), (other_flow, "other")):
        flow.parent.mkdir()
        flow.write_text(env_flow(free_port(), f"{label}-env", counter, label))
        flowctl_up(flow, env={"FLOWCTL_HOME": str(home)}).stop()
    kept, other = the_env(kept_flow, "kept-env", home), the_env(other_flow, "other-env", home)
    stale_env = home / "envs" / "gone-0123456789ab"
    (stale_env / "bin").mkdir(parents=True)
    compiled = load_flow(kept_flow)
    kept_pip = pip_cache_dir(home, compiled.nodes["kept-env"].spec, {}, os.environ)
    stale_pip = home / "pip" / "00000000deadbeef"
    for cache in (kept_pip, stale_pip):
        (cache / "wheels").mkdir(parents=True)

    dry = flowctl("prune", "--dry-run", str(kept_flow), home=home)
    assert dry.returncode == 0, dry.stderr
    listed = {line.split()[-1] if line.startswith("would") else line.split("  (")[0].split()[-1]: line.split()[0] for line in dry.stdout.splitlines()}
    assert listed == {str(kept): "keep", str(kept_pip): "keep", str(other): "would", str(stale_env): "would", str(stale_pip): "would"}, dry.stdout
    assert other.exists() and stale_env.exists(), "--dry-run removes nothing"

    asked = flowctl("prune", str(kept_flow), home=home, stdin="")
    assert asked.returncode == 2 and "add --yes" in asked.stderr and other.exists(), "not a terminal: no removal without --yes"

    running = flowctl_up(other_flow, env={"FLOWCTL_HOME": str(home)})  # leases its environment
    busy = flowctl("prune", "--yes", str(kept_flow), home=home)
    assert busy.returncode == 0, busy.stderr
    assert other.exists() and f"{other}  (in use by a running flowctl)" in busy.stdout
    assert not stale_env.exists() and not stale_pip.exists() and kept.exists() and kept_pip.exists()

    running.stop()
    done = flowctl("prune", "--yes", str(kept_flow), home=home)
    assert done.returncode == 0 and not other.exists() and kept.exists(), done.stdout + done.stderr
    assert "removed 1" in done.stderr
