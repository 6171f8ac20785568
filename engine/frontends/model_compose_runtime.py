"""model-compose component runtimes: where a component's processes run.

    native, process, embedded   →  nothing: flowctl runs every component as local processes
    virtualenv (python, pyenv)  →  an env-setup node making the venv (`path:`, or flowctl's own
                                   place; packages from `requirements.txt` beside the file);
                                   the component's processes (shell commands, a managed
                                   server, its install scripts) wait for it and run with its
                                   `bin/` first on PATH, VIRTUAL_ENV set, and `runtime.env`
    docker, on an http-server   →  a process-start node running `docker run --rm --init
    with an `image:`               --name NAME -p 127.0.0.1:HOST:CONTAINER ... IMAGE [command]`,
                                   ready when the host port accepts connections; `docker run`
                                   passes flowctl's SIGTERM on to the container, which `--rm`
                                   then removes. Before it starts, a container left with that
                                   name (by a flowctl that was SIGKILLed) is removed.
    docker, apple-container     →  each action's command runs in a fresh container
    on a shell component           (`model_compose_containers`)
    docker otherwise            →  an error at the `runtime:` line with what to use

A docker runtime on an http-server is lowered only where it is the whole component (a server
image speaking HTTP); an http-server without an `image:` would need model-compose's
in-container worker, which flowctl does not have.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..loader import PathKey
from . import model_compose_keys as keys
from .model_compose_containers import CONTAINER_NAME, SHELL_RUNTIMES, run_options, runtime_timeouts

if TYPE_CHECKING:
    from .model_compose import _Lowering

#: `runtime:` keys lowered, by type (the rest of model-compose's are reported at their line)
VIRTUALENV = keys.Section(
    supported=frozenset({"type", "driver", "path", "python", "env", "start_timeout", "stop_timeout"}),
)
DOCKER = keys.Section(
    supported=frozenset({"type", "image", "container_name", "ports", "volumes", "environment", "command", "working_dir", "user",
                         "gpus", "restart", "start_timeout", "stop_timeout"}),
    unsupported=frozenset({"build", "hostname", "networks", "extra_hosts", "env_file", "entrypoint", "shm_size", "mem_limit",
                           "memswap_limit", "cpus", "cpu_shares", "healthcheck", "labels", "privileged", "security_opt"}),
)

#: a `HOST:CONTAINER` port mapping (an optional `/tcp`), or one port for both
_PORT = re.compile(r"(?:(?P<host>\d{1,5}):)?(?P<container>\d{1,5})(?:/tcp)?")
_CONTAINER_FIX = "flowctl runs a container as a shell component's commands, or as a whole http-server component with an `image:`"


def runtime_of(lw: _Lowering, component: dict[str, Any], path: PathKey) -> tuple[str, dict[str, Any], PathKey] | None:
    """The component's runtime (its type, its settings, where it is written) when it is one
    flowctl lowers (virtualenv, docker, apple-container), None for a local one or after a
    reported error."""
    if "runtime" not in component:
        return None
    runtime = component["runtime"]
    where: PathKey = (*path, "runtime")
    settings = runtime if isinstance(runtime, dict) else {"type": runtime}
    kind = settings.get("type", "native")
    type_where = (*where, "type") if isinstance(runtime, dict) and "type" in runtime else where
    if kind in keys.LOCAL_RUNTIMES:
        return None
    if kind == "virtualenv":
        keys.check_keys(settings, where, VIRTUALENV, "in runtime (virtualenv)", lw.errors, lw.doc.locate)
        return kind, settings, where
    if kind in SHELL_RUNTIMES and component.get("type") == "shell":
        keys.check_keys(settings, where, SHELL_RUNTIMES[kind], f"in runtime ({kind})", lw.errors, lw.doc.locate)
        return kind, settings, where
    if kind in SHELL_RUNTIMES and (kind != "docker" or component.get("type") != "http-server" or not settings.get("image")):
        what = "a shell component, or an http-server component with an `image:`" if kind == "docker" else "a shell component"
        lw.error(f"runtime `{kind}` is lowered for {what} only", type_where, hint=_CONTAINER_FIX)
        return None
    if kind == "docker":
        keys.check_keys(settings, where, DOCKER, "in runtime (docker)", lw.errors, lw.doc.locate)
        return kind, settings, where
    hint = "flowctl runs components as local processes, in a virtualenv, or in docker / apple-container"
    lw.error(f"component runtime '{kind}' is not supported by flowctl", type_where, hint=hint)
    return None


# -- virtualenv ------------------------------------------------------------------------------


def lower_virtualenv(lw: _Lowering, info: dict[str, Any], settings: dict[str, Any], where: PathKey) -> None:
    """The venv node, and every process node of the component made to wait for it and run in it."""
    driver = settings.get("driver", "python")
    if driver not in ("python", "pyenv"):
        lw.error(f"unknown virtualenv driver '{driver}'", (*where, "driver"), hint="python or pyenv")
        return
    node: dict[str, Any] = {"type": "env-setup", "description": f"the virtualenv of {info['label']}", "venv": True}
    fields: dict[Any, PathKey] = {}
    if driver == "pyenv":
        version = settings.get("python")
        if not isinstance(version, str) or not version:
            lw.error("the pyenv driver needs `python:`, the version pyenv installed", (*where, "driver"), hint='add `python: "3.11.9"`')
            return
        root = Path(os.environ.get("PYENV_ROOT") or "~/.pyenv").expanduser()
        node["python"] = str(root / "versions" / version / "bin" / "python")
        fields["python"] = (*where, "python")
    else:
        node["python"] = sys.executable
    if settings.get("path") is not None:
        node["path"] = lw.resolve_dir(str(settings["path"]))
        fields["path"] = (*where, "path")
    requirements = Path(lw.resolve_dir("requirements.txt"))
    if lw.doc.file != "<string>" and requirements.is_file():
        node["pip_args"] = ["-r", str(requirements)]
    env = settings.get("env") or {}
    if not isinstance(env, dict):
        lw.error("`env` must be a mapping of NAME: value", (*where, "env"))
        return
    venv_id = lw.unique(f"{info['base']}-venv")
    lw.add_node(venv_id, node, where, fields)
    in_venv = {"PATH": f"${{nodes.{venv_id}.output.bin}}:${{env.PATH}}", "VIRTUAL_ENV": f"${{nodes.{venv_id}.output.venv}}",
               **{str(name): str(value) for name, value in env.items()}}
    # the component's service nodes (install scripts, a managed server) run in it too
    for node_id in info.get("services", []):
        service = lw.nodes[node_id]
        service["env"] = {**in_venv, **service.get("env", {})}
        service["needs"] = [venv_id, *service.get("needs", [])]
        lw.origin[("nodes", node_id, "env")] = where
    info["runtime_env"] = in_venv
    info["needs"] = [venv_id, *info["needs"]] if not info.get("services") else info["needs"]


# -- docker ----------------------------------------------------------------------------------


def lower_docker_server(lw: _Lowering, info: dict[str, Any], settings: dict[str, Any], where: PathKey) -> None:
    """An http-server component whose runtime is a docker image: the container is its server."""
    component, path = info["data"], info["path"]
    port = component.get("port", 8000)
    info["base_url"] = f"http://127.0.0.1:{port}{component.get('base_path') or ''}"  # the jobs' URL, even after an error here
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        lw.error("`port` must be a number from 1 to 65535", (*path, "port"))
        return
    argv = docker_argv(lw, settings, where, default_name=f"flowctl-{info['base']}")
    if argv is None:
        return
    restart = settings.get("restart", "no")
    timeouts = runtime_timeouts(lw, settings, where)
    if timeouts is None:
        return
    name = argv[argv.index("--name") + 1]
    # a container a SIGKILLed flowctl left behind under this name goes first (docker refuses
    # a second one), then `exec` makes `docker run` the process flowctl signals
    command = ["sh", "-c", 'docker rm -f "$1" >/dev/null 2>&1; shift; exec "$@"', "sh", name, *argv]
    start_id = lw.unique(info["base"])
    node: dict[str, Any] = {
        "type": "process-start",
        "description": f"the docker container of {info['label']}",
        "command": _literal(command),
        "host": "127.0.0.1",
        "port": port,
        "readiness": {"tcp": True, "timeout": timeouts.get("start_timeout", 1800.0)},
        "restart": {"policy": "never" if restart == "no" else "always" if restart in ("always", "unless-stopped") else "on-failure"},
    }
    if "stop_timeout" in timeouts:
        node["stop_timeout"] = timeouts["stop_timeout"]
    lw.add_node(start_id, node, where, {"command": where, "port": (*path, "port") if "port" in component else where})
    info["needs"] = [start_id]
    info["services"] = [start_id]


def docker_argv(lw: _Lowering, settings: dict[str, Any], where: PathKey, *, default_name: str) -> list[str] | None:
    """`docker run` for the runtime's settings; None after a reported error. Ports are
    published on 127.0.0.1 only; relative host paths of volumes are the flow file's folder's."""
    name = str(settings.get("container_name") or re.sub(r"[^A-Za-z0-9_.-]", "-", default_name))
    if not CONTAINER_NAME.fullmatch(name):
        lw.error(f"'{name}' is not a container name docker takes", (*where, "container_name"))
        return None
    argv = ["docker", "run", "--rm", "--init", "--name", name]
    for index, port in enumerate(settings.get("ports") or []):
        match = _PORT.fullmatch(str(port))
        if match is None:
            lw.error(f"port mapping {port!r} is not HOST:CONTAINER", (*where, "ports", index), hint='write "8090:80"')
            return None
        argv += ["-p", f"127.0.0.1:{match['host'] or match['container']}:{match['container']}"]
    options = run_options(lw, settings, where)
    if options is None:
        return None
    argv += options
    argv.append(str(settings["image"]))
    command = settings.get("command")
    if isinstance(command, str):
        argv += ["sh", "-c", command]
    elif isinstance(command, list):
        argv += [str(item) for item in command]
    elif command is not None:
        lw.error("`command` must be a list of arguments or a string", (*where, "command"))
        return None
    return argv


def _literal(value: Any) -> Any:
    from .model_compose import literal

    return literal(value)
