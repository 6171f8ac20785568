"""model-compose container runtimes on a `shell` component: each action's command runs as
`docker run --rm -i --name NAME ... IMAGE COMMAND...` (or Apple's `container run`), and is
stopped by name when the run is cancelled or flowctl stops or is killed.

No container daemon here: a stand-in `docker` / `container` (tests/support/container_cli.py)
first on flowctl's PATH records each call and runs the command as a local process in its own
session, as a daemon's container would be (killing the client does not stop it). Everything
goes through `flowctl up` and real HTTP, or `flowctl run`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import container_cli
from support.model_compose import FLOWCTL, assert_error_at, spec_of
from support.waiting import wait_until

from flowctl.engine.frontends.model_compose_containers import DEFAULT_IMAGE
from flowctl.nodes.proc import alive, command_line

#: model-compose's examples/runtime/docker-shell (controller and description trimmed)
DOCKER_SHELL = """\
controller:
  type: http-server
  port: 8080
  base_path: /api
workflow:
  title: Docker Runtime (shell component)
  job:
    input: ${input}
    output:
      uname: ${output.stdout as text}

component:
  type: shell
  runtime:
    type: docker
    start_timeout: 90s
    stop_timeout: 30s
  action:
    command: [ "uname", "-a" ]
"""

#: model-compose's examples/runtime/apple-container (controller and description trimmed)
APPLE_CONTAINER = DOCKER_SHELL.replace("type: docker\n    start_timeout: 90s", "type: apple-container\n    start_timeout: 120s")

#: a shell component with every lowered runtime setting, and a per-run value in its env
SETTINGS = """\
controller: {type: http-server, base_path: /api}
workflow:
  job:
    input: ${input}
    output: ${output.stdout as text}
component:
  type: shell
  runtime:
    type: docker
    image: alpine:3.20
    container_name: greeter
    environment: {MODE: fast}
    volumes: ["./data:/data:ro"]
    user: "1000"
    stop_timeout: 2s
  env:
    GREETING: ${input.greeting}
  action:
    command: [sh, -c, 'echo "$GREETING $MODE"']
"""

#: a command that runs until it is stopped
SLEEPER = """\
controller: {type: http-server, base_path: /api}
workflow:
  job:
    input: ${input}
    output: ${output.stdout as text}
component:
  type: shell
  runtime: {type: docker, image: "busybox:1", stop_timeout: 3s}
  action:
    command: [sleep, "300"]
    timeout: 10m
"""


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The stand-ins first on PATH for a flowctl started with `env=cli["env"]`."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    for program in ("docker", "container"):
        container_cli.install(bin_dir, state, program)
    try:
        yield {"state": state, "env": {"PATH": f"{bin_dir}:{os.environ['PATH']}"}}
    finally:
        container_cli.kill_all(state)


def post_run(up: Any, body: dict[str, Any]) -> Any:
    with up.client(timeout=60.0) as api:
        return api.post("/workflows/runs", json=body)


def processes_naming(name: str) -> list[int]:
    """Live processes whose command line holds `name` (the guard, the client)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and name in (command_line(int(entry.name)) or "") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(("flow", "program"), [(DOCKER_SHELL, "docker"), (APPLE_CONTAINER, "container")])
def test_the_corpus_examples_run_their_command_in_a_container(flowctl_up: Any, cli: dict[str, Any], flow: str, program: str) -> None:
    up = flowctl_up(flow, env=cli["env"], timeout=60.0)
    r = post_run(up, {"input": {}, "output_only": True})
    assert r.status_code == 200, r.text
    assert r.json() == {"uname": subprocess.run(["uname", "-a"], capture_output=True, text=True, check=True).stdout.strip()}
    calls = container_cli.calls(cli["state"])
    assert {call["program"] for call in calls} == {program}
    assert [call["argv"][:2] for call in calls] == [["image", "inspect"], ["image", "pull"], ["run", "--rm"]]
    run = container_cli.run_argv(cli["state"])
    assert run[:4] == ["run", "--rm", "-i", "--name"] and run[4].startswith("flowctl-")
    assert run[5:] == [DEFAULT_IMAGE, "uname", "-a"]
    # the image is fetched once per flowctl: the second run only runs
    assert post_run(up, {"input": {}, "output_only": True}).status_code == 200
    assert [call["argv"][0] for call in container_cli.calls(cli["state"])[3:]] == ["run"]


def test_the_runtime_settings_and_the_env_go_into_the_run_argv(flowctl_up: Any, cli: dict[str, Any], tmp_path: Path) -> None:
    up = flowctl_up(SETTINGS, env=cli["env"], timeout=60.0)
    r = post_run(up, {"input": {"greeting": "hi; rm -rf /"}, "output_only": True})
    assert r.status_code == 200, r.text
    assert r.json() == "hi; rm -rf / fast"
    run = container_cli.run_argv(cli["state"])
    name = run[run.index("--name") + 1]
    assert name.startswith("greeter-")
    # the runtime's flags, the action's env (a request value, one argv item), the image
    assert run[5:] == ["-v", f"{up.flow_path.parent}/data:/data:ro", "-e", "MODE=fast", "-u", "1000", "-e", "GREETING=hi; rm -rf /",
                       "alpine:3.20", "sh", "-c", 'echo "$GREETING $MODE"']
    second = post_run(up, {"input": {"greeting": "again"}, "output_only": True})
    assert second.json() == "again fast"
    assert container_cli.run_argv(cli["state"])[4] != name  # one container name per run


def start_sleeper(flowctl_up: Any, cli: dict[str, Any]) -> tuple[Any, str, str, int]:
    """`flowctl up` on SLEEPER, one run started: (up, the run id, the container's name, its
    command's pid) once its container runs."""
    up = flowctl_up(SLEEPER, env=cli["env"], timeout=60.0)
    r = post_run(up, {"input": {}, "wait_for_completion": False})
    assert r.status_code == 202, r.text
    name, pid = wait_until(lambda: next(iter(container_cli.running(cli["state"]).items()), None), timeout=30.0,
                           message=lambda: f"no container started\n{up.log_tail()}")
    return up, r.json()["run_id"], name, pid


def assert_stopped_by_name(cli: dict[str, Any], name: str, pid: int) -> None:
    wait_until(lambda: not alive(pid), timeout=30.0, message=lambda: f"the container's command {pid} still runs")
    stops = [call["argv"] for call in container_cli.calls(cli["state"]) if call["argv"][0] == "stop"]
    assert stops and all(stop == ["stop", "-t", "3", name] for stop in stops), stops  # again each second while the client lives
    wait_until(lambda: not processes_naming(name), timeout=30.0, message=lambda: f"left behind: {processes_naming(name)}")


def test_cancelling_a_run_stops_its_container_by_name(flowctl_up: Any, cli: dict[str, Any]) -> None:
    up, run_id, name, pid = start_sleeper(flowctl_up, cli)
    with up.client(timeout=30.0) as api:
        assert api.post(f"/runs/{run_id}/cancel").status_code == 200
        assert_stopped_by_name(cli, name, pid)
        wait_until(lambda: api.get(f"/runs/{run_id}").json()["status"] == "cancelled", timeout=30.0,
                   message=lambda: f"run not cancelled: {api.get(f'/runs/{run_id}').json()}")


def test_stopping_flowctl_stops_a_running_container_by_name(flowctl_up: Any, cli: dict[str, Any]) -> None:
    up, _, name, pid = start_sleeper(flowctl_up, cli)
    up.stop()
    assert_stopped_by_name(cli, name, pid)


def test_a_killed_flowctl_still_gets_its_container_stopped(flowctl_up: Any, cli: dict[str, Any]) -> None:
    up, _, name, pid = start_sleeper(flowctl_up, cli)
    up.kill()  # SIGKILL: flowctl's watchdog stops the node's group, whose guard stops the container
    assert_stopped_by_name(cli, name, pid)


def test_a_command_past_its_timeout_fails_and_its_container_is_stopped(tmp_path: Path, cli: dict[str, Any]) -> None:
    path = tmp_path / "model-compose.yml"
    path.write_text(SLEEPER.replace("timeout: 10m", "timeout: 1s"))
    result = subprocess.run([FLOWCTL, "run", str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, **cli["env"], "FLOWCTL_HOME": str(tmp_path / "home")})
    assert "sleep (in a docker container of busybox:1) ran longer than 1s" in result.stderr, result.stderr
    stops = [call["argv"] for call in container_cli.calls(cli["state"]) if call["argv"][0] == "stop"]
    assert stops and all(stop[:3] == ["stop", "-t", "3"] for stop in stops), stops
    assert not container_cli.running(cli["state"])


@pytest.mark.parametrize(("flow", "program", "fix"), [(DOCKER_SHELL, "docker", "install Docker"),
                                                       (APPLE_CONTAINER, "container", "use `runtime: docker`")])
def test_a_missing_container_program_is_named_with_the_fix(tmp_path: Path, flow: str, program: str, fix: str) -> None:
    path = tmp_path / "model-compose.yml"
    path.write_text(flow)
    result = subprocess.run([FLOWCTL, "run", str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, "PATH": str(tmp_path / "empty"), "FLOWCTL_HOME": str(tmp_path / "home")})
    assert result.returncode != 0
    assert f"the `{program}` program is not on PATH" in result.stderr and fix in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_an_image_that_takes_too_long_to_fetch_fails_the_run_naming_start_timeout(tmp_path: Path, cli: dict[str, Any]) -> None:
    path = tmp_path / "model-compose.yml"
    path.write_text(DOCKER_SHELL.replace("start_timeout: 90s", "start_timeout: 1s\n    image: big:slow"))
    result = subprocess.run([FLOWCTL, "run", str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, **cli["env"], "FLOWCTL_HOME": str(tmp_path / "home")})
    assert result.returncode != 0
    assert "fetching the image big:slow took longer than start_timeout (1s)" in result.stderr, result.stderr
    wait_until(lambda: not processes_naming("big:slow"), timeout=30.0, message="the pull was left running")
    assert not [call for call in container_cli.calls(cli["state"]) if call["argv"][0] == "run"]


def test_an_image_that_cannot_be_fetched_fails_the_run_with_the_cli_s_words(tmp_path: Path, cli: dict[str, Any]) -> None:
    path = tmp_path / "model-compose.yml"
    path.write_text(DOCKER_SHELL.replace("start_timeout: 90s", "image: nope:missing"))
    result = subprocess.run([FLOWCTL, "run", str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, **cli["env"], "FLOWCTL_HOME": str(tmp_path / "home")})
    assert result.returncode != 0
    assert "cannot fetch the image nope:missing: `docker image pull` exited with code 1; Error: pull access denied" in result.stderr, result.stderr


def test_the_lowered_command_carries_the_container_settings() -> None:
    node = spec_of(SETTINGS.replace("    user: \"1000\"\n", "    working_dir: /data\n    gpus: all\n")
                   .replace("  action:\n", "  action:\n    working_dir: /data/sub\n")).nodes["job"]
    assert node.type == "command" and node.argv == ["sh", "-c", 'echo "$GREETING $MODE"'] and node.cwd is None
    container = node.container
    assert (container.program, container.image, container.name_prefix) == ("docker", "alpine:3.20", "greeter")
    assert container.options == ["-v", f"{Path.cwd()}/data:/data:ro", "-e", "MODE=fast", "-w", "/data", "--gpus", "all", "-w", "/data/sub"]
    assert (container.start_timeout, container.stop_timeout) == (90.0, 2.0)  # model-compose's default start_timeout
    apple = spec_of(APPLE_CONTAINER).nodes["job"].container
    assert (apple.program, apple.image, apple.start_timeout, apple.stop_timeout) == ("container", DEFAULT_IMAGE, 120.0, 30.0)


@pytest.mark.parametrize(
    ("edit", "marker", "message"),
    [
        (("    stop_timeout: 30s\n", "    stop_timeout: 30s\n    ports: ['8000:80']\n"), "ports:", "model-compose key 'ports' is not supported"),
        (("    stop_timeout: 30s\n", "    stop_timeout: 30s\n    build: {context: .}\n"), "build:", "model-compose key 'build' is not supported"),
        (("    stop_timeout: 30s\n", "    stop_timeout: soon\n"), "stop_timeout: soon", "`stop_timeout` must be a duration"),
        (("    stop_timeout: 30s\n", "    stop_timeout: 30s\n    container_name: 'a b'\n"), "container_name", "'a b' is not a container name docker takes"),
        (("  action:\n", "  base_dir: ./work\n  action:\n"), "base_dir", "`base_dir` is a folder on this machine"),
        (("type: shell", "type: http-client\n  base_url: http://127.0.0.1:9"), "type: docker", "runtime `docker` is lowered for a shell component, or"),
    ],
)
def test_container_runtime_errors_point_into_the_file(edit: tuple[str, str], marker: str, message: str) -> None:
    flow = DOCKER_SHELL.replace(*edit)
    assert flow != DOCKER_SHELL
    assert_error_at(flow, marker, message)


def test_apple_container_takes_no_gpus_and_runs_shell_components_only() -> None:
    assert_error_at(APPLE_CONTAINER.replace("    stop_timeout: 30s\n", "    stop_timeout: 30s\n    gpus: all\n"), "gpus: all", "unknown key 'gpus'")
    server = APPLE_CONTAINER.replace("type: shell", "type: http-server\n  port: 8123").replace('command: [ "uname", "-a" ]', "path: /")
    assert_error_at(server, "type: apple-container", "runtime `apple-container` is lowered for a shell component only")


def test_the_guard_exits_with_the_command_s_status(tmp_path: Path, cli: dict[str, Any]) -> None:
    path = tmp_path / "model-compose.yml"
    path.write_text(DOCKER_SHELL.replace('[ "uname", "-a" ]', "[sh, -c, 'echo oops >&2; exit 7']"))
    result = subprocess.run([FLOWCTL, "run", str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, **cli["env"], "FLOWCTL_HOME": str(tmp_path / "home")})
    assert result.returncode != 0
    assert f"sh (in a docker container of {DEFAULT_IMAGE}) exited with code 7; stderr:\n  oops" in result.stderr, result.stderr
