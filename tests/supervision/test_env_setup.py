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


# -- pip's cache never hands a venv a wheel built with other flags -------------------------

TINY_BACKEND = '''\
"""A PEP 517 build backend with no dependencies: the wheel records TINY_FLAVOR at build time,
as a compiled extension records its compiler flags."""
import base64, hashlib, os, zipfile

def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = "tinybuild-1.0.dist-info"
    files = {
        "tinybuild.py": f"FLAVOR = {os.environ.get('TINY_FLAVOR', 'unset')!r}\\n".encode(),
        f"{info}/METADATA": b"Metadata-Version: 2.1\\nName: tinybuild\\nVersion: 1.0\\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: tinybuild\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = "\\n".join([*(_record_line(p, d) for p, d in files.items()), f"{info}/RECORD,,"]) + "\\n"
    name = "tinybuild-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
        wheel.writestr(f"{info}/RECORD", record)
    return name
'''


def tiny_sdist(directory: Path) -> Path:
    """`directory/tinybuild-1.0.tar.gz`: an sdist that pip builds into a wheel (and caches:
    the file name says name and version) without fetching anything."""
    import io
    import tarfile

    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "PKG-INFO": "Metadata-Version: 2.1\nName: tinybuild\nVersion: 1.0\n",
        "backend.py": TINY_BACKEND,
    }
    directory.mkdir(parents=True, exist_ok=True)
    sdist = directory / "tinybuild-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(f"tinybuild-1.0/{name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return sdist


async def test_a_changed_build_env_builds_again_instead_of_reusing_a_cached_wheel(deps: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue-12 trap: a venv for CMAKE_ARGS=B must not get the wheel pip built and cached
    for CMAKE_ARGS=A (pip keys its wheel cache by source URL and interpreter only). Here the
    'flag' is TINY_FLAVOR, baked into the wheel at build time."""
    import subprocess

    dist = tmp_path / "dist"
    tiny_sdist(dist)
    # the shell's pip cache, as a user has one: without flowctl's own cache, both builds meet here
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "shell-pip-cache"))
    monkeypatch.delenv("PIP_NO_CACHE_DIR", raising=False)
    offline = ["--no-index", "--find-links", str(dist)]

    def flavor(output: dict[str, Any]) -> str:
        return subprocess.run([output["python"], "-c", "import tinybuild; print(tinybuild.FLAVOR)"],
                              capture_output=True, text=True, check=True).stdout.strip()

    portable = await deps.start(packages=["tinybuild"], pip_args=offline, env={"TINY_FLAVOR": "portable"})
    assert flavor(portable) == "portable"
    native = await deps.start(packages=["tinybuild"], pip_args=offline, env={"TINY_FLAVOR": "native"})
    assert native["venv"] != portable["venv"], "another build env is another venv"
    assert flavor(native) == "native", "pip handed back the wheel built with the other flags"
    assert not (tmp_path / "shell-pip-cache").exists(), "setups keep out of the shell's pip cache"


def test_the_pip_cache_is_keyed_by_what_changes_a_build(tmp_path: Path) -> None:
    from flowctl.nodes.env_setup import pip_cache_dir

    def key(spec: dict[str, Any], own_env: dict[str, str] | None = None, inherited: dict[str, str] | None = None) -> Path:
        node = EnvSetupSpec.model_validate({"type": "env-setup", **spec})
        return pip_cache_dir(tmp_path, node, own_env or {}, inherited or {})

    base = key({"packages": ["a"]})
    assert base.parent == tmp_path / "pip"
    # other packages or commands build the same wheels the same way: the cache is shared
    assert key({"packages": ["a", "b"], "commands": [["true"]]}) == base
    assert key({}, inherited={"HOME": "/elsewhere", "PATH": "/x"}) == base
    # flags, pip arguments and the shell's compiler variables are not
    assert key({}, {"CMAKE_ARGS": "-DGGML_NATIVE=ON"}) != base
    assert key({"pip_args": ["--no-binary", ":all:"]}) != base
    assert key({}, inherited={"CFLAGS": "-march=native"}) != base
    # the node's own value wins over the shell's, so the shell's does not matter then
    assert key({}, {"CMAKE_ARGS": "x"}, {"CMAKE_ARGS": "y"}) == key({}, {"CMAKE_ARGS": "x"})
