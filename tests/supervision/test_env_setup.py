"""env-setup: stamps make re-runs instant, a changed spec re-runs, a failed install leaves no
stamp and reports its exit code and output tail. Plain shell commands (`venv: false`) and a
bare venv (`venv: true`, no packages), so no network is needed."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import pytest
from supervision_support import MARK_ENV, Recorder, marked

from flowctl.engine.errors import ServiceError
from flowctl.nodes.base import ServiceContext, ServiceState
from flowctl.nodes.env_setup import EnvSetupNode, EnvSetupSpec


class Setup:
    """An env-setup node id `deps` over a tmp state dir; `start(**spec)` makes a fresh node
    (as a new flowctl process would) and starts it."""

    def __init__(self, tmp_path: Path, mark: str) -> None:
        self.tmp_path = tmp_path
        self.mark = mark
        self.rec = Recorder()
        self.node: EnvSetupNode | None = None

    async def start(self, **spec: Any) -> dict[str, Any]:
        spec = {"type": "env-setup", **spec}
        spec["env"] = {**spec.get("env", {}), MARK_ENV: self.mark}
        node_spec = EnvSetupSpec.model_validate(spec)
        self.node = EnvSetupNode(node_spec)
        resolved = {"packages": node_spec.packages, "commands": node_spec.commands, "env": node_spec.env, "path": node_spec.path}
        ctx = ServiceContext(node_id="deps", resolved=resolved, state_dir=self.tmp_path / "state", cache_dir=self.tmp_path / "cache", log=self.rec.log)
        return await self.node.start(ctx)

    @property
    def stamp(self) -> Path:
        return self.tmp_path / "state" / "stamps" / "deps.stamp"


@pytest.fixture
def deps(tmp_path: Path, mark: str) -> Setup:
    return Setup(tmp_path, mark)


def counting(counter: Path, label: str = "ran") -> str:
    return f"echo {label} >> {shlex.quote(str(counter))}; echo installed {label}"


async def test_stamp_makes_a_rerun_instant(deps: Setup, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    await deps.start(venv=False, commands=[counting(counter)])
    assert counter.read_text().splitlines() == ["ran"]
    assert deps.stamp.is_file()
    assert "[deps] installed ran" in deps.rec.lines

    started = time.monotonic()
    await deps.start(venv=False, commands=[counting(counter)])
    assert time.monotonic() - started < 0.5
    assert counter.read_text().splitlines() == ["ran"], "skipped: the command did not run again"
    assert deps.node.status.state is ServiceState.READY and deps.node.status.reason == "up to date"
    assert deps.rec.lines[-1] == "[deps] environment up to date, setup skipped"


async def test_a_changed_spec_runs_again(deps: Setup, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    await deps.start(venv=False, commands=[counting(counter, "one")])
    await deps.start(venv=False, commands=[counting(counter, "two")])
    await deps.start(venv=False, commands=[counting(counter, "two")], env={"EXTRA": "1"})
    assert counter.read_text().splitlines() == ["one", "two", "two"]


async def test_a_failing_command_reports_code_and_tail_and_leaves_no_stamp(deps: Setup, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    await deps.start(venv=False, commands=[counting(counter, "good")])
    assert deps.stamp.is_file()

    failing = "echo 'building wheel'; echo 'error: compiler not found' >&2; exit 7"
    with pytest.raises(ServiceError) as caught:
        await deps.start(venv=False, commands=[counting(counter, "first"), failing])
    message = str(caught.value)
    assert message.startswith("service 'deps': `bash -c echo 'building wheel';")
    assert "exited with code 7" in message
    assert "building wheel" in message and "error: compiler not found" in message, "the tail of the output"
    assert deps.node.status.state is ServiceState.FAILED
    assert not deps.stamp.exists(), "a failed setup leaves no stamp (not even the old one)"

    # going back to the spec that worked runs it again: its stamp went with the failure
    await deps.start(venv=False, commands=[counting(counter, "good")])
    assert counter.read_text().splitlines() == ["good", "first", "good"]


async def test_a_missing_command_is_an_error(deps: Setup) -> None:
    with pytest.raises(ServiceError, match="command not found: no-such-installer"):
        await deps.start(venv=False, commands=[["no-such-installer", "--all"]])
    assert not deps.stamp.exists()


async def test_a_setup_past_its_timeout_is_stopped(deps: Setup, mark: str) -> None:
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"setup took longer than 0.5s"):
        await deps.start(venv=False, commands=["echo fetching; sleep 30"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert not marked(mark), "the command's process group is stopped"
    assert not deps.stamp.exists()


async def test_a_bare_venv_is_made_once(deps: Setup, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    output = await deps.start(path=str(venv))
    assert output == {"python": str(venv / "bin" / "python"), "venv": str(venv), "bin": str(venv / "bin")}
    assert (venv / "bin" / "python").exists()
    assert (venv / ".flowctl-stamp").is_file()

    started = time.monotonic()
    assert await deps.start(path=str(venv)) == output
    assert time.monotonic() - started < 0.5
    assert deps.rec.lines[-1] == "[deps] environment up to date, setup skipped"


async def test_commands_run_inside_the_venv(deps: Setup, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    probe = "import sys, os; print('prefix', sys.prefix); print('virtual_env', os.environ['VIRTUAL_ENV'])"
    await deps.start(path=str(venv), pip=False, commands=[["python", "-c", probe]])
    assert f"[deps] prefix {venv}" in deps.rec.lines, deps.rec.lines
    assert f"[deps] virtual_env {venv}" in deps.rec.lines
    assert not (venv / "bin" / "pip").exists()
