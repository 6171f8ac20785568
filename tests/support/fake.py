"""Start tests/servers/fake_vllm.py as a real subprocess and talk to it.

``start_fake_vllm(log_dir, **flags)`` turns keyword flags into CLI flags
(``token_delay_ms=5`` -> ``--token-delay-ms 5``; ``ignore_sigterm=True`` -> ``--ignore-sigterm``;
``None``/``False`` are left out), starts the script in its own session (process group) with
its stdout+stderr in ``log_dir/fake-vllm.log``, and by default waits (with a deadline) until
``GET /v1/models`` answers 200. If anything fails on the way, the process group is killed
before the error propagates. ``fake_vllm_argv(port, **flags)`` gives the same argv without
starting anything (for flows that make flowctl launch the fake itself).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from servers.fake_vllm import (  # noqa: F401  (re-exported for tests)
    DEFAULT_MODEL,
    DIE_EXIT_CODE,
    echo_tokens,
    expected_text,
    expected_tokens,
)

from support.paths import FAKE_VLLM, PYTHON
from support.procs import free_port, kill_process_group, pid_alive
from support.waiting import wait_until

LISTENING_RE = re.compile(r"fake-vllm listening on http://(?P<host>[^\s]+):(?P<port>\d+)")


def flags_to_args(flags: Mapping[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in flags.items():
        opt = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(opt)
        else:
            args += [opt, str(value)]
    return args


def fake_vllm_argv(port: int, **flags: Any) -> list[str]:
    """argv that starts the fake server on 127.0.0.1:``port`` with ``flags``."""
    return [PYTHON, str(FAKE_VLLM), "--port", str(port), *flags_to_args(flags)]


@dataclass
class FakeServer:
    proc: subprocess.Popen
    port: int
    log_path: Path
    argv: list[str]
    model: str = DEFAULT_MODEL
    host: str = "127.0.0.1"
    _returncode: int | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL (``.../v1``)."""
        return self.url + "/v1"

    @property
    def chat_url(self) -> str:
        return self.url + "/v1/chat/completions"

    def stats(self) -> dict[str, Any]:
        r = httpx.get(self.url + "/stats", timeout=5.0)
        r.raise_for_status()
        return r.json()

    async def astats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5.0) as c:
            r = await c.get(self.url + "/stats")
            r.raise_for_status()
            return r.json()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None and pid_alive(self.pid)

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit on its own; return its exit status."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"fake vllm (pid {self.pid}) still running after {timeout:g}s\n{self.log_tail()}"
            ) from None

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM the process group, SIGKILL after ``grace``; return the exit status."""
        return kill_process_group(self.proc, grace)

    def kill(self) -> int:
        return kill_process_group(self.proc, 0.0)


def start_fake_vllm(
    log_dir: Path,
    *,
    port: int = 0,
    wait_ready: bool = True,
    timeout: float = 15.0,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    **flags: Any,
) -> FakeServer:
    """Start the fake server. ``port=0`` lets it pick a free port (read from its log line);
    with ``wait_ready=False`` and ``port=0`` a free port is chosen here instead, since a
    server told not to become ready may never print one."""
    log_dir.mkdir(parents=True, exist_ok=True)
    if port == 0 and not wait_ready:
        port = free_port()
    argv = fake_vllm_argv(port, **flags) + list(extra_args)
    log_path = log_dir / "fake-vllm.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    model = flags.get("served_model_name") or flags.get("model") or DEFAULT_MODEL
    server = FakeServer(proc=proc, port=port, log_path=log_path, argv=argv, model=model)
    if not wait_ready:
        return server
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.kill()
        raise
    return server


def _wait_ready(server: FakeServer, timeout: float) -> None:
    def failure() -> str:
        return f"fake vllm did not become ready: {server.argv}\n--- log ---\n{server.log_tail()}"

    def check_exited() -> None:
        rc = server.proc.poll()
        if rc is not None:
            raise AssertionError(f"fake vllm exited with {rc} before ready\n--- log ---\n{server.log_tail()}")

    def listening() -> int | None:
        check_exited()
        m = LISTENING_RE.search(server.log_text())
        return int(m["port"]) if m else None

    port = wait_until(listening, timeout=timeout, message=failure)
    if server.port == 0:
        server.port = port

    def models_ok() -> bool:
        check_exited()
        return httpx.get(server.url + "/v1/models", timeout=2.0).status_code == 200

    wait_until(models_ok, timeout=timeout, message=failure, ignore=(httpx.TransportError,))
