"""env-setup: an isolated Python environment (venv) with packages and install commands.

Idempotent: a stamp file holds a hash of the spec (python, packages, commands); when it
matches, the whole setup is skipped. A failed step leaves no stamp, so the next start retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
from collections import deque
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..engine.errors import ServiceError
from .base import NodeKind, NodeSpecBase, ServiceContext, ServiceState, ServiceStatus
from .process_group import run_to_completion


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
    #: extra environment variables for the commands
    env: dict[str, str] = {}
    #: make a venv (false: only run `commands`, e.g. a model-compose install script that makes its own)
    venv: bool = True
    #: where the venv lives; default `~/.cache/flowctl/envs/<node id>-<spec digest>`
    path: str | None = None
    #: seconds the whole setup may take
    timeout: float = 3600.0


class EnvSetupNode:
    def __init__(self, spec: EnvSetupSpec) -> None:
        self.spec = spec
        self.status = ServiceStatus()

    async def start(self, ctx: ServiceContext) -> dict[str, Any]:
        spec = self.spec
        resolved = ctx.resolved
        digest = _spec_digest(spec, resolved)
        # venvs are content-addressed: the same spec in any flow shares one environment
        default_path = ctx.cache_dir / "envs" / f"{ctx.node_id}-{digest[:12]}"
        venv = Path(resolved.get("path") or default_path).expanduser().resolve()
        stamp_dir = venv if spec.venv else ctx.state_dir / "stamps"
        stamp = stamp_dir / (".flowctl-stamp" if spec.venv else f"{ctx.node_id}.stamp")
        output = _output(venv, spec.venv)
        self.status = ServiceStatus(state=ServiceState.STARTING)
        if stamp.is_file() and stamp.read_text().strip() == digest:
            ctx.log(f"[{ctx.node_id}] environment up to date, setup skipped")
            self.status = ServiceStatus(state=ServiceState.READY, reason="up to date")
            return output
        try:
            await asyncio.wait_for(self._setup(ctx, venv, resolved), timeout=spec.timeout)
        except TimeoutError:
            self.status = ServiceStatus(state=ServiceState.FAILED, reason=f"setup took longer than {spec.timeout:g}s")
            raise ServiceError(ctx.node_id, self.status.reason, hint="raise `timeout:` on the node") from None
        except ServiceError as exc:
            self.status = ServiceStatus(state=ServiceState.FAILED, reason=exc.message)
            raise
        stamp_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest + "\n")
        self.status = ServiceStatus(state=ServiceState.READY)
        return output

    async def _setup(self, ctx: ServiceContext, venv: Path, resolved: dict[str, Any]) -> None:
        spec = self.spec
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (resolved.get("env") or {}).items()})
        if spec.venv:
            stamp = venv / ".flowctl-stamp"
            stamp.unlink(missing_ok=True)
            if not (venv / "bin" / "python").exists():
                ctx.log(f"[{ctx.node_id}] creating venv {venv}")
                await self._step(ctx, [spec.python, "-m", "venv", str(venv)], env)
            env["VIRTUAL_ENV"] = str(venv)
            env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            env.pop("PYTHONHOME", None)
            packages = [str(p) for p in resolved.get("packages") or []]
            if packages:
                ctx.log(f"[{ctx.node_id}] installing {' '.join(packages)}")
                pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", *spec.pip_args, *packages]
                await self._step(ctx, pip, env)
        for command in resolved.get("commands") or []:
            argv = ["bash", "-c", command] if isinstance(command, str) else [str(a) for a in command]
            ctx.log(f"[{ctx.node_id}] running {_shown(command)}")
            await self._step(ctx, argv, env)

    async def _step(self, ctx: ServiceContext, argv: list[str], env: dict[str, str]) -> None:
        if shutil.which(argv[0], path=env.get("PATH")) is None and not Path(argv[0]).exists():
            raise ServiceError(ctx.node_id, f"command not found: {argv[0]}")
        tail: deque[str] = deque(maxlen=20)

        def on_line(line: str) -> None:
            tail.append(line)
            ctx.log(f"[{ctx.node_id}] {line}")

        code = await run_to_completion(argv, env=env, on_line=on_line)
        if code != 0:
            excerpt = "\n".join(tail)
            raise ServiceError(ctx.node_id, f"`{_shown(argv)}` exited with code {code}; last output:\n{excerpt}")


def _spec_digest(spec: EnvSetupSpec, resolved: dict[str, Any]) -> str:
    material = {
        "python": spec.python,
        "packages": resolved.get("packages"),
        "pip_args": spec.pip_args,
        "commands": resolved.get("commands"),
        "env": resolved.get("env"),
        "venv": spec.venv,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _output(venv: Path, has_venv: bool) -> dict[str, Any]:
    if not has_venv:
        return {"python": sys.executable, "venv": None, "bin": str(Path(sys.executable).parent)}
    return {"python": str(venv / "bin" / "python"), "venv": str(venv), "bin": str(venv / "bin")}


def _shown(command: list[str] | str) -> str:
    text = command if isinstance(command, str) else " ".join(command)
    return text if len(text) < 120 else text[:117] + "..."
