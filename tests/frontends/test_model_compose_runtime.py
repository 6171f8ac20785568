"""model-compose component runtimes: `virtualenv` lowers onto an env-setup venv that the
component's processes run in; `docker` on an http-server with an `image:` lowers onto a
process-start running `docker run` (docker is not on the test machines: the argv is checked,
not run); a shell component in a container is test_model_compose_containers.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.model_compose import assert_error_at, run, spec_of

from flowctl.engine.frontends import to_flow_spec
from flowctl.engine.loader import load_text

#: model-compose's examples/runtime/docker-custom-image (commit 1b6d99a)
DOCKER_NGINX = """\
workflow:
  job:
    input: ${input}
    output:
      body: ${response as text}

component:
  type: http-server
  runtime:
    type: docker
    image: nginx:alpine
    container_name: runtime-nginx
    ports:
      - "8090:80"
    volumes:
      - ./html:/usr/share/nginx/html:ro
    restart: unless-stopped
  port: 8090
  action:
    method: GET
    path: /${input.path | index.html}
"""

#: model-compose's examples/runtime/virtualenv-pyenv (commit 1b6d99a), its shell action kept
VENV_SHELL = """\
workflow:
  job:
    input: ${input}
    output:
      prefix: ${output.stdout as text}

component:
  type: shell
  runtime:
    type: virtualenv
    driver: python
    path: .venv/inside
    env: {GREETING: hello}
  action:
    command: [python3, -c, "import os, sys; print(sys.prefix, os.environ['VIRTUAL_ENV'], os.environ['GREETING'])"]
"""


def spec_at(text: str, folder: Path) -> Any:
    path = folder / "model-compose.yml"
    path.write_text(text)
    return to_flow_spec(load_text(text, str(path))).spec


def test_a_docker_image_server_becomes_a_process_running_docker_run(tmp_path: Path) -> None:
    spec = spec_at(DOCKER_NGINX, tmp_path)
    server = spec.nodes["component"]
    assert server.type == "process-start" and server.port == 8090 and server.restart.policy == "always"
    docker = ["docker", "run", "--rm", "--init", "--name", "runtime-nginx", "-p", "127.0.0.1:8090:80",
              "-v", f"{tmp_path}/html:/usr/share/nginx/html:ro", "nginx:alpine"]
    assert server.command == ["sh", "-c", 'docker rm -f "$1" >/dev/null 2>&1; shift; exec "$@"', "sh", "runtime-nginx", *docker]
    job = spec.nodes["job"]
    assert job.needs == ["component"] and job.url.startswith("http://127.0.0.1:8090/")


def test_docker_settings_map_to_their_flags(tmp_path: Path) -> None:
    flow = DOCKER_NGINX.replace("    restart: unless-stopped\n", "    environment: {MODE: fast, DEBUG: false}\n    command: [nginx, -g, daemon off;]\n"
                                "    gpus: all\n    user: '101'\n    stop_timeout: 20s\n").replace("    container_name: runtime-nginx\n", "")
    server = spec_at(flow, tmp_path).nodes["component"]
    argv = server.command[5:]
    assert argv[:6] == ["docker", "run", "--rm", "--init", "--name", "flowctl-component"]
    assert argv[argv.index("-e") : argv.index("-e") + 4] == ["-e", "MODE=fast", "-e", "DEBUG=false"]
    assert ["-u", "101", "--gpus", "all", "nginx:alpine", "nginx", "-g", "daemon off;"] == argv[-8:]
    assert server.stop_timeout == 20 and server.restart.policy == "never"


@pytest.mark.parametrize(
    ("edit", "marker", "message"),
    [
        (("    image: nginx:alpine\n", "    image: nginx:alpine\n    build: {context: .}\n"), "build:", "model-compose key 'build' is not supported"),
        (('      - "8090:80"', '      - "web:80"'), '"web:80"', "port mapping 'web:80' is not HOST:CONTAINER"),
        (("container_name: runtime-nginx", "container_name: 'bad name'"), "container_name", "'bad name' is not a container name"),
        (("    image: nginx:alpine\n", ""), "type: docker", "runtime `docker` is lowered for a shell component, or an http-server component with an `image:` only"),
        (("type: docker", "type: apple-container"), "type: apple-container", "runtime `apple-container` is lowered for a shell component only"),
    ],
)
def test_runtime_errors_point_into_the_file(edit: tuple[str, str], marker: str, message: str) -> None:
    flow = DOCKER_NGINX.replace(*edit)
    assert flow != DOCKER_NGINX
    assert_error_at(flow, marker, message)


def test_a_shell_component_in_a_virtualenv_runs_its_commands_there(tmp_path: Path) -> None:
    spec = spec_at(VENV_SHELL, tmp_path)
    venv, job = spec.nodes["component-venv"], spec.nodes["job"]
    assert venv.type == "env-setup" and venv.venv and venv.path == str(tmp_path / ".venv/inside")
    assert job.needs == ["component-venv"]
    assert job.env["PATH"] == "${nodes.component-venv.output.bin}:${env.PATH}"
    out = run(tmp_path, VENV_SHELL)
    venv_path = str(tmp_path / ".venv" / "inside")
    assert out == {"prefix": f"{venv_path} {venv_path} hello"}


def test_a_requirements_file_beside_the_flow_is_installed_into_the_venv(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six\n")
    assert spec_at(VENV_SHELL, tmp_path).nodes["component-venv"].pip_args == ["-r", str(tmp_path / "requirements.txt")]


def test_the_pyenv_driver_uses_that_version_of_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    flow = VENV_SHELL.replace("driver: python", 'driver: pyenv\n    python: "3.11.9"')
    assert spec_of(flow).nodes["component-venv"].python == str(tmp_path / "pyenv/versions/3.11.9/bin/python")
    assert_error_at(VENV_SHELL.replace("driver: python", "driver: pyenv"), "driver: pyenv", "the pyenv driver needs `python:`")


def test_a_managed_server_in_a_virtualenv_starts_in_it() -> None:
    flow = """\
workflow:
  job: {input: "${input}"}
component:
  type: http-server
  port: 8123
  runtime: {type: virtualenv, env: {MODE: x}}
  manage:
    install: [pip, install, "-e", "."]
    start: [python3, -m, http.server, "8123"]
  action: {path: /, method: GET}
"""
    spec = spec_of(flow)
    install, server = spec.nodes["component-install"], spec.nodes["component"]
    assert install.needs == ["component-venv"] and "component-venv" in server.needs
    assert server.env["VIRTUAL_ENV"] == install.env["VIRTUAL_ENV"] == "${nodes.component-venv.output.venv}"
    assert server.env["MODE"] == "x"
