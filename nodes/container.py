"""A command node's `container:`: run its argv in a fresh container instead of on the host.

    count:
      type: command
      argv: [wc, -w]
      container:
        program: docker            # or `container` (Apple's CLI on macOS)
        image: python:3.11-slim
        options: [-v, /data:/data:ro, -w, /data]   # run flags, given as they are
        start_timeout: 90          # seconds to fetch the image when it is not there yet
        stop_timeout: 30           # seconds `PROGRAM stop -t` waits before killing it

Each run of the node is one `PROGRAM run --rm -i --name NAME OPTIONS [-e K=V ...] IMAGE
ARGV...` (argv, never a shell string; the node's `env` goes in as `-e` flags, the client
itself runs with flowctl's environment). NAME is `flowctl-<run id>-<node id>-<random>`, one
per invocation (a `for-each` runs a node many times in one run).

Why a guard: `docker run` is only a client. Killing it (SIGKILL after a grace, or flowctl's
watchdog when flowctl itself was SIGKILLed) leaves the container running under the daemon. So
the process flowctl starts is a tiny guard (`python -I -S -c`, no flowctl import) that runs
the client as its child and, on SIGTERM, runs `PROGRAM stop -t STOP_TIMEOUT NAME`: every way
the node's process group is stopped (run done early, cancelled, failed, timed out, flowctl
stopping, flowctl killed and its watchdog stopping the group) stops the container by name.
The group's grace is the stop timeout plus a margin, so `stop` can finish before SIGKILL.

The image is fetched (`PROGRAM image inspect`, else `PROGRAM image pull`) before the first
run in this process, bounded by `start_timeout`; a pull that does not finish in time fails
the run naming the image and the setting, instead of counting against the command's own
`timeout`.
"""

from __future__ import annotations

import asyncio
import collections
import re
import secrets
import shutil
import sys
import weakref
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engine.errors import RunError
from .process_group import ProcessGroup, describe_exit

#: what a missing program's error says to do, by program
_INSTALL = {
    "docker": "install Docker (https://docs.docker.com/get-docker/) and make sure `docker` is on flowctl's PATH, "
              "or run the component without a container runtime",
    "container": "Apple's `container` CLI runs on macOS on Apple silicon: install it (https://github.com/apple/container) "
                 "and run `container system start`, or use `runtime: docker` on other systems",
}
#: seconds `stop` gets beyond the stop timeout before the group is SIGKILLed
_STOP_MARGIN = 5.0

# Runs the client as its child (stdin/stdout/stderr passed through) and exits with its status.
# Once SIGTERM/SIGHUP/SIGINT came, it runs `PROGRAM stop -t SECONDS NAME`, again each second
# while the client lives: a stop that came before the daemon created the container finds
# nothing, and the one after it does. The signals and the client's exit (SIGCHLD) wake the
# loop through the wakeup fd, so no wakeup is lost between a check and the wait.
_GUARD = r"""
import os, select, signal, subprocess, sys
program, name, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
wake_read, wake_write = os.pipe()
os.set_blocking(wake_read, False)
os.set_blocking(wake_write, False)
signal.set_wakeup_fd(wake_write)
stop_requested = []
for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(signum, lambda signum, frame: stop_requested.append(signum))
signal.signal(signal.SIGCHLD, lambda signum, frame: None)
if stop_requested:
    sys.exit(143)
client = subprocess.Popen(sys.argv[4:])
while (code := client.poll()) is None:
    if stop_requested:
        try:
            subprocess.run([program, "stop", "-t", seconds, name], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=float(seconds) + 4)
        except (OSError, subprocess.SubprocessError):
            pass
    if client.poll() is None:
        select.select([wake_read], [], [], 1.0 if stop_requested else None)
        try:
            os.read(wake_read, 512)
        except BlockingIOError:
            pass
sys.exit(code if code >= 0 else 128 - code)
"""


class ContainerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: the container CLI: `docker`, or Apple's `container`
    program: Literal["docker", "container"] = "docker"
    image: str = Field(min_length=1)
    #: flags for `run`, placed before the image (`-v`, `-w`, `-u`, `--gpus`, `-e`), as given
    options: list[str] = []
    #: the container name starts with this (then the run id, the node id and a random part)
    name_prefix: str = Field(default="flowctl", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    #: seconds to fetch the image when it is not there yet
    start_timeout: float = Field(default=90.0, gt=0)
    #: seconds `stop` lets the container's command end after SIGTERM before killing it
    stop_timeout: float = Field(default=30.0, ge=0)

    @property
    def grace(self) -> float:
        """The process group's grace: time for the guard's `stop` to finish."""
        return self.stop_timeout + _STOP_MARGIN

    def container_name(self, run_id: str, node_id: str) -> str:
        parts = (self.name_prefix, run_id[:24], node_id[:40], secrets.token_hex(4))
        return re.sub(r"[^A-Za-z0-9_.-]", "-", "-".join(parts))

    def argv(self, name: str, env: Mapping[str, str], command: Sequence[str]) -> list[str]:
        """The guard, then the `run` it starts: each item one argument."""
        run = [self.program, "run", "--rm", "-i", "--name", name, *self.options]
        for key, value in env.items():  # after the options: the node's env wins over theirs
            run += ["-e", f"{key}={value}"]
        run += [self.image, *command]
        return [sys.executable, "-I", "-S", "-c", _GUARD, self.program, name, f"{self.stop_timeout:g}", *run]


def require_program(spec: ContainerSpec, node_id: str) -> str:
    """The program's path; a RunError naming it and the fix when it is not on PATH."""
    found = shutil.which(spec.program)
    if found is None:
        raise RunError(node_id, f"this command runs in a container, but the `{spec.program}` program is not on PATH: {_INSTALL[spec.program]}")
    return found


#: images known to be present, by (program path, image): fetched once per flowctl process
_present: set[tuple[str, str]] = set()
#: one fetch at a time per image, by event loop (an asyncio lock belongs to one loop)
_fetching: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Lock]] = weakref.WeakKeyDictionary()


async def ensure_image(spec: ContainerSpec, program: str, node_id: str) -> None:
    """Fetch the image unless it is there, within `start_timeout`; concurrent runs wait for
    one fetch. A failed or late fetch is a RunError naming the image."""
    key = (program, spec.image)
    if key in _present:
        return
    loop = asyncio.get_running_loop()
    async with _fetching.setdefault(loop, {}).setdefault(key, asyncio.Lock()):
        if key in _present:
            return
        deadline = loop.time() + spec.start_timeout
        if await _succeeds([program, "image", "inspect", spec.image], deadline) is not None:
            output: collections.deque[str] = collections.deque(maxlen=5)
            try:
                code = await _succeeds([program, "image", "pull", spec.image], deadline, output)
            except TimeoutError:
                raise RunError(node_id, f"fetching the image {spec.image} took longer than start_timeout ({spec.start_timeout:g}s): "
                                        f"raise start_timeout, or `{spec.program} image pull {spec.image}` beforehand") from None
            if code is not None:
                detail = "; " + " / ".join(output) if output else ""
                raise RunError(node_id, f"cannot fetch the image {spec.image}: `{spec.program} image pull` {code}{detail}")
        _present.add(key)


async def _succeeds(argv: list[str], deadline: float, output: collections.deque[str] | None = None) -> str | None:
    """Run a short CLI step to its end before `deadline` (TimeoutError after, the step
    stopped); None when it exits 0, else how it exited."""
    sink = output.append if output is not None else (lambda line: None)
    group = await ProcessGroup.spawn(argv, on_line=sink, grace=2.0)
    try:
        async with asyncio.timeout_at(deadline):
            code = await group.wait()
    except TimeoutError:
        if output is None:  # `inspect` ran late: let the pull's deadline report it
            return "timed out"
        raise
    finally:
        await group.stop()
    return None if code == 0 else describe_exit(code)
