"""Fixtures for the process-supervision tests; the helpers they use are in
supervision_support.py beside this file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from supervision_support import FLOWCTL, MARK_ENV, Flowctl, Managed, Recorder
from support.fake import fake_vllm_argv
from support.paths import REPO_ROOT
from support.procs import free_port, kill_process_group, term_when_parent_dies

from flowctl.nodes.base import ServiceContext
from flowctl.nodes.process_start import ProcessStartNode, ProcessStartSpec

# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
async def managed(tmp_path: Path, mark: str) -> AsyncIterator[Any]:
    """Factory: ``managed(command=..., port=..., **spec)`` -> Managed, a ProcessStartNode with
    the test's marker in its environment. ``fake={...}`` makes the command the fake vLLM
    server on a free port. Every node made is stopped at teardown (then the marker sweep
    kills anything that survived even that)."""
    made: list[Managed] = []

    def make(*, fake: dict[str, Any] | None = None, node_id: str = "llm", env: dict[str, str] | None = None, **spec: Any) -> Managed:
        if fake is not None:
            port = spec.setdefault("port", free_port())
            spec.setdefault("command", fake_vllm_argv(port, **fake))
            spec.setdefault("readiness", {"http": "/v1/models", "timeout": 15, "interval": 0.02})
        spec.setdefault("stop_timeout", 3)
        spec.setdefault("restart", "never")
        node_spec = ProcessStartSpec.model_validate({"type": "process-start", **spec, "env": {**(env or {}), MARK_ENV: mark}})
        rec = Recorder()
        resolved = {"command": node_spec.command, "env": dict(node_spec.env), "cwd": node_spec.cwd}
        ctx = ServiceContext(
            node_id=node_id,
            resolved=resolved,
            state_dir=tmp_path / "state",
            cache_dir=tmp_path / "cache",
            log=rec.log,
            on_change=rec.on_change,
        )
        item = Managed(ProcessStartNode(node_spec), ctx, rec, node_spec.port)
        made.append(item)
        return item

    try:
        yield make
    finally:
        for item in made:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(item.node.stop(), timeout=10)


# -- flowctl as a subprocess --------------------------------------------------------------


@pytest.fixture
def flowctl_proc(tmp_path: Path, mark: str) -> Iterator[Any]:
    """Factory: ``flowctl_proc(*args)`` starts ``python -m flowctl ARGS`` in its own session,
    with the test's marker in its environment (so its managed processes carry it too),
    stdout piped (text) and stderr to a file. All are killed at teardown."""
    started: list[Flowctl] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Flowctl:
        log_path = tmp_path / f"flowctl-{len(started)}.stderr"
        child_env = {**os.environ, MARK_ENV: mark, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [*FLOWCTL, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
                env=child_env,
                cwd=str(REPO_ROOT),
                preexec_fn=term_when_parent_dies,
            )
        item = Flowctl(proc, log_path)
        started.append(item)
        return item

    yield start
    for item in started:
        with contextlib.suppress(OSError):
            kill_process_group(item.proc, 0.0)
        if item.proc.stdout is not None:
            item.proc.stdout.close()
