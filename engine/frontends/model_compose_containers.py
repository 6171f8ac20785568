"""model-compose container runtimes (`docker`, `apple-container`) of a `shell` component:
each action's command runs in a fresh container (`nodes/container.py`).

    runtime:                          command node
      type: docker | apple-container  container.program: docker | container
      image: IMAGE                    container.image (default DEFAULT_IMAGE)
      container_name: NAME            container.name_prefix (NAME-<run>-<node>-<random>)
      volumes: [HOST:CONTAINER[:ro]]  container.options: -v ABSOLUTE_HOST:CONTAINER[:ro]
      environment: {K: V}             container.options: -e K=V
      working_dir / user / gpus       container.options: -w / -u / --gpus (docker only)
      start_timeout: 90s              container.start_timeout (fetching the image)
      stop_timeout: 30s               container.stop_timeout (`stop -t` when interrupted)

model-compose starts one long-lived container per component from its own worker image
(`mindor/component:<version>`) and talks to a worker inside it. flowctl has no in-container
worker: it runs each command as `docker run --rm -i IMAGE COMMAND...`, so any image that has
the command works, and with no `image:` it uses DEFAULT_IMAGE, a public image with a shell,
coreutils and Python 3 (what model-compose's worker image is built on). The component's and
action's `env` go into the container; an action's `working_dir` is a path in the container.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..loader import PathKey
from . import model_compose_keys as keys

if TYPE_CHECKING:
    from .model_compose import _Lowering

#: the image a shell command runs in when the runtime names none
DEFAULT_IMAGE = "python:3.11-slim"
#: model-compose's defaults for its container runtimes
_DEFAULT_TIMEOUTS = {"start_timeout": 90.0, "stop_timeout": 30.0}

_SHELL_UNSUPPORTED = frozenset({"build", "ports", "command", "entrypoint", "restart", "networks", "env_file", "healthcheck", "labels"})
#: `runtime:` keys lowered for a shell component, by runtime type
SHELL_RUNTIMES = {
    "docker": keys.Section(
        supported=frozenset({"type", "image", "container_name", "volumes", "environment", "working_dir", "user", "gpus", "start_timeout", "stop_timeout"}),
        unsupported=_SHELL_UNSUPPORTED | {"hostname", "extra_hosts", "shm_size", "mem_limit", "memswap_limit", "cpus", "cpu_shares", "privileged", "security_opt"},
    ),
    "apple-container": keys.Section(
        supported=frozenset({"type", "image", "container_name", "volumes", "environment", "working_dir", "user", "start_timeout", "stop_timeout"}),
        unsupported=_SHELL_UNSUPPORTED | {"cpus", "mem_limit"},
    ),
}
_PROGRAMS = {"docker": "docker", "apple-container": "container"}
#: what a container name may be (docker's own rule)
CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def lower_shell_container(lw: _Lowering, info: dict[str, Any], kind: str, settings: dict[str, Any], where: PathKey) -> None:
    """The component's `container` settings, which its actions' command nodes carry."""
    component, path = info["data"], info["path"]
    if "base_dir" in component:
        lw.error("`base_dir` is a folder on this machine, and the commands run in a container", (*path, "base_dir"),
                 hint="mount it with `runtime.volumes` and set `runtime.working_dir` to where it is mounted")
        return
    prefix = str(settings.get("container_name") or "flowctl")
    if not CONTAINER_NAME.fullmatch(prefix):
        lw.error(f"'{prefix}' is not a container name {_PROGRAMS[kind]} takes", (*where, "container_name"))
        return
    options = run_options(lw, settings, where)
    timeouts = runtime_timeouts(lw, settings, where)
    if options is None or timeouts is None:
        return
    info["container"] = {"program": _PROGRAMS[kind], "image": str(settings.get("image") or DEFAULT_IMAGE), "options": options,
                         "name_prefix": prefix, **_DEFAULT_TIMEOUTS, **timeouts}


def run_options(lw: _Lowering, settings: dict[str, Any], where: PathKey) -> list[str] | None:
    """`run` flags for the runtime's volumes, environment, working_dir, user and gpus; None
    after a reported error. Relative host paths of volumes are the flow file's folder's."""
    argv: list[str] = []
    for index, volume in enumerate(settings.get("volumes") or []):
        if not isinstance(volume, str) or ":" not in volume:
            lw.error("a volume is HOST:CONTAINER[:ro]", (*where, "volumes", index))
            return None
        host, rest = volume.split(":", 1)
        if host.startswith((".", "/")) or "/" in host:  # a path, not a named volume
            host = lw.resolve_dir(host)
        argv += ["-v", f"{host}:{rest}"]
    environment = settings.get("environment") or {}
    if not isinstance(environment, dict):
        lw.error("`environment` must be a mapping of NAME: value", (*where, "environment"))
        return None
    for key, value in environment.items():
        argv += ["-e", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    for key, flag in (("working_dir", "-w"), ("user", "-u"), ("gpus", "--gpus")):
        if settings.get(key) is not None:
            argv += [flag, str(settings[key])]
    return argv


def runtime_timeouts(lw: _Lowering, settings: dict[str, Any], where: PathKey) -> dict[str, float] | None:
    """`start_timeout` and `stop_timeout` in seconds, those given; None after a reported error."""
    timeouts = {}
    for key in ("start_timeout", "stop_timeout"):
        if settings.get(key) is not None:
            seconds = keys.parse_duration(settings[key])
            if seconds is None or seconds <= 0:
                lw.error(f"`{key}` must be a duration such as 90s", (*where, key))
                return None
            timeouts[key] = seconds
    return timeouts
