"""env-setup: an isolated Python environment (venv) with packages and install commands.

Idempotent: a stamp file holds a hash of the spec (python, packages, pip_args, commands, env);
when it matches, the whole setup is skipped. A failed step leaves no stamp, so the next start
retries, and its error carries the exit code and the tail of the output. Two flowctl processes
setting up the same environment take turns (a lock file beside it).

pip's cache is the node's own: `<cache dir>/pip/<build key>`, where the build key is a digest
of what changes the wheels pip builds from source (the node's `env` and `pip_args`, and the
compiler variables it inherits from the shell). pip keys its wheel cache by the source's URL
and the interpreter only, so a shared cache would hand a venv built with other flags (say
`CMAKE_ARGS=-DGGML_NATIVE=ON`) the wheel built for another spec. Setups with the same build
key still share downloads and built wheels.

Its output and flowctl's events about it go to `<state dir>/logs/<node id>.log` (`flowctl logs
NODE`), and to the console as output lines (shown with `--verbose`); while a step runs, a
heartbeat says what it is doing, for how long, and its latest output line, every `progress`
seconds. A flowctl that uses the environment holds a lease on it (`env_store.py`), so `flowctl
prune` leaves it alone; `flowctl up --build` (`ServiceContext.rebuild`) makes it again from
nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..engine.errors import ServiceError
from .base import NodeKind, NodeSpecBase, ServiceContext, ServiceState, ServiceStatus, duration
from .env_store import FileLock, lease_path, lock_path
from .heartbeat import heartbeat
from .process_group import describe_exit, run_to_completion
from .process_log import ProcessLog, log_file

#: variables from the shell that compilers and build backends read: they change what pip builds
#: from source, so their inherited values are part of the pip cache's build key
INHERITED_BUILD_VARS = ("CC", "CXX", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "CMAKE_ARGS")


class EnvSetupSpec(NodeSpecBase):
    kind: ClassVar[NodeKind] = NodeKind.SERVICE
    template_fields: ClassVar[tuple[str, ...]] = ("packages", "commands", "env", "path")

    type: Literal["env-setup"]
    #: interpreter that creates the venv
    python: str = Field(default_factory=lambda: sys.executable)
    #: pip requirement strings installed into the venv
    packages: list[str] = []
    #: extra pip arguments, e.g. ["--no-deps"] or an index
    pip_args: list[str] = []
    #: commands run after the packages, in the venv: an argv list each, or a string run by `bash -c`
    commands: list[list[str] | str] = []
    #: extra environment variables for pip and the commands (build flags such as CMAKE_ARGS go
    #: here: they are part of the spec's digest and of the pip cache's build key)
    env: dict[str, str] = {}
    #: make a venv (false: only run `commands`, e.g. a model-compose install script that makes its own)
    venv: bool = True
    #: install pip into the venv; default: when there are packages or commands (a bare venv
    #: takes a fraction of a second, one with pip several seconds)
    pip: bool | None = None
    #: where the venv lives; default `~/.cache/flowctl/envs/<node id>-<spec digest>`
    path: str | None = None
    #: seconds the whole setup may take
    timeout: float = 3600.0
    #: seconds between heartbeats (elapsed time, latest output line) while a step runs
    progress: float = Field(default=10.0, gt=0)


class EnvSetupNode:
    def __init__(self, spec: EnvSetupSpec) -> None:
        self.spec = spec
        self.status = ServiceStatus()
        #: the build's output and flowctl's events, in `<state dir>/logs/<node id>.log`
        self._log = ProcessLog()
        #: held while this process uses the environment (`env_store.py`): prune leaves it be
        self._lease: FileLock | None = None

    async def start(self, ctx: ServiceContext) -> dict[str, Any]:
        spec = self.spec
        resolved = ctx.resolved
        digest = _spec_digest(spec, resolved)
        venv = env_path(spec, resolved, ctx.cache_dir, ctx.node_id, digest)
        stamp_dir = venv if spec.venv else ctx.state_dir / "stamps"
        stamp = stamp_dir / (".flowctl-stamp" if spec.venv else f"{ctx.node_id}.stamp")
        output = _output(venv, spec.venv)
        self.status = ServiceStatus(state=ServiceState.STARTING, reason="checking the stamp")
        self._log.open(log_file(ctx.state_dir, ctx.node_id))
        try:
            if spec.venv:
                self._lease = FileLock(lease_path(venv))
                await self._lease.acquire(shared=True, on_wait=lambda: self._event(ctx, f"waiting: {venv} is being removed (flowctl prune)"))
            if not ctx.rebuild and self._up_to_date(stamp, digest, venv):
                return self._skipped(ctx, output)
            # one setup at a time per environment, also across flowctl processes (`up` and `run`)
            setup_lock = FileLock(lock_path(venv) if spec.venv else stamp_dir / f"{ctx.node_id}.lock")
            await setup_lock.acquire(shared=False, on_wait=lambda: self._event(ctx, f"waiting for another flowctl to finish setting up {venv if spec.venv else ctx.node_id}"))
            try:
                if not ctx.rebuild and self._up_to_date(stamp, digest, venv):
                    return self._skipped(ctx, output)
                stamp.unlink(missing_ok=True)  # a setup that fails half-way leaves no stamp
                if ctx.rebuild:
                    self._clear(ctx, venv)
                self.status = ServiceStatus(state=ServiceState.STARTING, reason="setting up")
                started = time.monotonic()
                try:
                    await asyncio.wait_for(self._setup(ctx, venv, resolved), timeout=spec.timeout)
                except TimeoutError:
                    self.status = ServiceStatus(state=ServiceState.FAILED, reason=f"setup took longer than {spec.timeout:g}s")
                    self._log.event(self.status.reason or "timed out")
                    raise ServiceError(ctx.node_id, self.status.reason or "timed out", hint="raise `timeout:` on the node") from None
                except ServiceError as exc:
                    self.status = ServiceStatus(state=ServiceState.FAILED, reason=exc.message.removeprefix(f"service '{ctx.node_id}': ").splitlines()[0])
                    self._log.event(f"failed: {self.status.reason}")
                    raise
                _write_atomically(stamp, digest + "\n")
            finally:
                setup_lock.release()
            self._event(ctx, f"set up in {duration(time.monotonic() - started)} (build output: flowctl logs {ctx.node_id})")
            self.status = ServiceStatus(state=ServiceState.READY, started=time.time())
            return output
        except BaseException:
            self._release_lease()
            raise
        finally:
            self._log.close()

    async def exited_within(self, timeout: float) -> bool:
        return False  # a finished setup has no process that could die

    def exiting(self) -> bool:
        return False

    async def stop(self) -> None:
        """Nothing runs between setups (a setup in progress is cancelled by its caller); the
        lease on the environment goes."""
        self._release_lease()
        if self.status.state is not ServiceState.FAILED:
            self.status = ServiceStatus(state=ServiceState.STOPPED)

    def _release_lease(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def _clear(self, ctx: ServiceContext, venv: Path) -> None:
        """`--build`: the environment is made again from nothing (pip's cache still helps).
        Not while another flowctl uses it: its server runs from those files."""
        if not self.spec.venv or not venv.exists():
            return
        lease = self._lease
        assert lease is not None
        if not lease.try_acquire(shared=False):
            raise ServiceError(ctx.node_id, f"cannot rebuild {venv}: another running flowctl uses it", hint="stop that one first, or start without --build")
        try:
            self._event(ctx, f"--build: removing {venv} to set it up again")
            shutil.rmtree(venv)
        finally:
            lease.try_acquire(shared=True)  # back to a shared lease, as every user holds

    def _up_to_date(self, stamp: Path, digest: str, venv: Path) -> bool:
        try:
            current = stamp.read_text().strip() == digest
        except OSError:
            return False
        return current and (not self.spec.venv or (venv / "bin" / "python").exists())

    def _skipped(self, ctx: ServiceContext, output: dict[str, Any]) -> dict[str, Any]:
        self._event(ctx, "environment up to date, setup skipped")
        self.status = ServiceStatus(state=ServiceState.READY, reason="up to date", started=time.time())
        return output

    def _event(self, ctx: ServiceContext, text: str) -> None:
        self._log.event(text)
        ctx.event(text)

    async def _setup(self, ctx: ServiceContext, venv: Path, resolved: Mapping[str, Any]) -> None:
        spec = self.spec
        own_env = {str(k): str(v) for k, v in (resolved.get("env") or {}).items()}
        env = {**os.environ, **own_env}
        pip_lease: FileLock | None = None
        if "PIP_CACHE_DIR" not in own_env:  # a node that names its own cache keeps it
            pip_cache = pip_cache_dir(ctx.cache_dir, spec, own_env, os.environ)
            env["PIP_CACHE_DIR"] = str(pip_cache)
            pip_lease = FileLock(lease_path(pip_cache))
            await pip_lease.acquire(shared=True, on_wait=lambda: self._event(ctx, f"waiting: {pip_cache} is being removed (flowctl prune)"))
        try:
            if spec.venv:
                with_pip = spec.pip if spec.pip is not None else bool(resolved.get("packages") or resolved.get("commands"))
                if not (venv / "bin" / "python").exists():
                    await self._step(ctx, f"creating venv {venv}", [spec.python, "-m", "venv", *([] if with_pip else ["--without-pip"]), str(venv)], env)
                elif with_pip and not (venv / "bin" / "pip").exists():
                    await self._step(ctx, "installing pip", [str(venv / "bin" / "python"), "-m", "ensurepip", "--upgrade"], env)
                env["VIRTUAL_ENV"] = str(venv)
                env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
                env.pop("PYTHONHOME", None)
                packages = [str(p) for p in resolved.get("packages") or []]
                if packages:
                    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", *spec.pip_args, *packages]
                    await self._step(ctx, f"installing {' '.join(packages)}", pip, env)
            for command in resolved.get("commands") or []:
                argv = ["bash", "-c", command] if isinstance(command, str) else [str(a) for a in command]
                await self._step(ctx, f"running {_shown(command)}", argv, env)
        finally:
            if pip_lease is not None:
                pip_lease.release()

    async def _step(self, ctx: ServiceContext, what: str, argv: list[str], env: dict[str, str]) -> None:
        """One command of the setup; its output goes to the log, and while it runs a heartbeat
        (elapsed time, latest line) every `progress` seconds."""
        if shutil.which(argv[0], path=env.get("PATH")) is None and not Path(argv[0]).exists():
            raise ServiceError(ctx.node_id, f"command not found: {argv[0]}")
        self._event(ctx, what)
        self.status.reason = what
        tail: deque[str] = deque(maxlen=20)
        latest = ["no output yet"]

        def on_line(line: str) -> None:
            tail.append(line)
            latest[0] = line
            self._log.line(line)
            ctx.output(line)

        def on_partial(text: str) -> None:  # a progress bar redrawn in place
            latest[0] = text

        def beat(elapsed: float) -> None:
            ctx.progress(f"{what} ({duration(elapsed)}): {latest[0][:160]}")

        try:
            async with heartbeat(self.spec.progress, beat):
                code = await run_to_completion(argv, env=env, on_line=on_line, on_partial=on_partial)
        except OSError as exc:
            raise ServiceError(ctx.node_id, f"cannot run `{_shown(argv)}`: {exc.strerror or exc}") from None
        if code != 0:
            excerpt = "\n".join(tail) or "(no output)"
            raise ServiceError(ctx.node_id, f"`{_shown(argv)}` {describe_exit(code)}; last output:\n{excerpt}")


def env_path(spec: EnvSetupSpec, resolved: Mapping[str, Any], cache_dir: Path, node_id: str, digest: str | None = None) -> Path:
    """Where the node's environment lives: its `path:`, else content-addressed in the cache
    (the same spec in any flow shares one environment)."""
    digest = digest or _spec_digest(spec, resolved)
    default_path = cache_dir / "envs" / f"{node_id}-{digest[:12]}"
    return Path(resolved.get("path") or default_path).expanduser().resolve()


def _spec_digest(spec: EnvSetupSpec, resolved: Mapping[str, Any]) -> str:
    material = {
        "python": os.path.realpath(shutil.which(spec.python) or spec.python),  # .venv/bin/python and python3 are one interpreter
        "packages": resolved.get("packages"),
        "pip_args": spec.pip_args,
        "commands": resolved.get("commands"),
        "env": resolved.get("env"),
        "venv": spec.venv,
    }
    if spec.pip is not None:  # only when given, so that stamps made before the field existed hold
        material["pip"] = spec.pip
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def pip_cache_dir(cache_dir: Path, spec: EnvSetupSpec, own_env: Mapping[str, str], inherited: Mapping[str, str]) -> Path:
    """pip's cache for a setup: one per build key (what changes the wheels pip builds)."""
    material = {
        "env": dict(own_env),
        "pip_args": spec.pip_args,
        "inherited": {name: inherited[name] for name in INHERITED_BUILD_VARS if name in inherited and name not in own_env},
    }
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return cache_dir / "pip" / key[:16]


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _output(venv: Path, has_venv: bool) -> dict[str, Any]:
    if not has_venv:
        return {"python": sys.executable, "venv": None, "bin": str(Path(sys.executable).parent)}
    return {"python": str(venv / "bin" / "python"), "venv": str(venv), "bin": str(venv / "bin")}


def _shown(command: list[str] | str) -> str:
    text = command if isinstance(command, str) else " ".join(command)
    return text if len(text) < 120 else text[:117] + "..."
