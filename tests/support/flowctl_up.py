"""Run `flowctl up` as a real subprocess against a test flow, for tests over real HTTP.

``fake_flow_yaml(port, **fake_flags)`` is a native flow whose one service node is a
process-start node running the fake vLLM server (``tests/servers/fake_vllm.py``) on
``port``, with two workflows:

- ``chat`` (default): streams the completion's text (inputs: ``prompt`` required,
  ``max_tokens`` integer = 512, ``temperature`` number = 0.7, and per-request switches of
  the fake passed as ``x-fake-*`` headers, empty = the server's flag: ``tokens``,
  ``delay_ms`` (between tokens), ``fail_status``);
- ``complete``: the same request not streamed; its output is the message text (a value).

``start_up(flow, tmp_path, extra_args=..., env=...)`` writes the flow (text, or a path to
use as is), starts ``flowctl up FLOW --port P --ui-port U [--no-reload]`` in its own session
with free ports, waits (deadline) until ``GET /api/ready`` answers 200, and returns an
``UpHandle``. ``UpHandle.stop()`` SIGTERMs it and waits; ``kill()`` is the hard way; both
are idempotent. The ``flowctl_up`` fixture (tests/conftest.py) is a factory over
``start_up`` that stops every handle at teardown, pass or fail::

    def test_stream(flowctl_up):
        up = flowctl_up(fake_flow_yaml(free_port(), tokens=5))
        r = httpx.post(up.api + "/workflows/chat/runs", json={"input": {"prompt": "hi"}})
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from support.fake import fake_vllm_argv
from support.flows import chat_nodes, chat_url, server_node
from support.flows import q as _q
from support.paths import PYTHON, REPO_ROOT
from support.procs import free_port, kill_process_group, term_when_parent_dies
from support.waiting import wait_until


def fake_flow_yaml(
    port: int,
    *,
    server: Mapping[str, Any] | None = None,
    name: str = "fake-chat",
    readiness_timeout: float = 30.0,
    restart: str = "never",
    stop_timeout: float = 5.0,
    messages: str | None = None,
    usage: bool = False,
    **fake_flags: Any,
) -> str:
    """A flow over the fake vLLM server on ``port``. ``fake_flags`` become the fake's CLI
    flags (``tokens=5``, ``token_delay_ms=20``...); ``server`` is the flow's ``server:``
    section (``max_concurrency``, ``max_queue``, ``drain_timeout``...); ``messages``, a
    template, is the chat workflow's whole message list (``${input.messages as list}``)
    instead of one user message with the prompt; ``usage`` makes the chat workflow ask the
    fake for token counts (``stream_options.include_usage``)."""
    argv = fake_vllm_argv(port, quiet=True, **fake_flags)
    lines = [
        "version: 1",
        f"name: {_q(name)}",
        "description: test flow over the fake vLLM server",
    ]
    if server:
        lines.append("server:")
        lines += [f"  {key}: {_q(value)}" for key, value in server.items()]
    lines.append("nodes:")
    text = "\n".join(lines) + "\n"
    text += server_node("llm", argv, port, readiness_timeout=readiness_timeout, interval=0.05, restart=restart, stop_timeout=stop_timeout)
    fake_headers = {"x-fake-tokens": _optional("tokens"), "x-fake-token-delay-ms": _optional("delay_ms"), "x-fake-fail-status": _optional("fail_status")}
    text += chat_nodes(chat_url(port), needs="llm", headers=fake_headers, sampling=True, messages=messages, usage=usage)
    lines = [
        "  complete:",
        "    type: http-stream",
        "    needs: [llm]",
        f"    url: {_q(chat_url(port))}",
        "    body:",
        "      model: qwen2-7b-instruct",
        "      messages:",
        "        - role: user",
        f"          content: {_q('${input.prompt}')}",
        f"      max_tokens: {_q('${input.max_tokens as integer | 512}')}",
        "      stream: false",
        "    stream_format: null",
        f"    output: {_q('${response.choices[0].message.content}')}",
        "workflows:",
        "  chat:",
        "    title: Chat",
        "    description: Stream a reply from the fake vLLM server",
        "    output: reply",
        "    default: true",
        "  complete:",
        "    title: Complete",
        "    description: The whole reply at once",
        "    output: complete",
    ]
    return text + "\n".join(lines) + "\n"


def _optional(name: str) -> str:
    return "${input." + name + ' as text | ""}'


@dataclass
class UpHandle:
    process: subprocess.Popen
    flow_path: Path
    api_port: int
    ui_port: int | None
    log_path: Path
    base_path: str = "/api"
    api_key: str | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def root(self) -> str:
        """``http://127.0.0.1:PORT`` of the API (the OpenAI facade and /metrics live here)."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def api(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:PORT/api``."""
        return self.root + self.base_path

    @property
    def ui(self) -> str | None:
        return f"http://127.0.0.1:{self.ui_port}" if self.ui_port else None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.api, headers=self.headers, **kwargs)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"flowctl up (pid {self.pid}) still running after {timeout:g}s\n{self.log_tail()}") from None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM `up` (it drains and stops its services), wait; SIGKILL its group if it
        hangs. Returns its exit status."""
        if self._stopped:
            return self.process.wait()
        self._stopped = True
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return kill_process_group(self.process, 0.0)
        finally:
            kill_process_group(self.process, 0.0)  # whatever it left in its own group

    def kill(self) -> int:
        self._stopped = True
        return kill_process_group(self.process, 0.0)


def start_up(
    flow: str | Path,
    tmp_path: Path,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    api_port: int | None = None,
    ui_port: int | None = 0,
    wait_ready: bool = True,
    timeout: float = 30.0,
    api_key: str | None = None,
    base_path: str = "/api",
    flow_name: str = "flow.yml",
    reload: bool = False,
) -> UpHandle:
    """Start `flowctl up`. ``flow`` is YAML text, or a Path to an existing flow file.
    ``ui_port=0`` picks a free port, ``None`` turns the UI off. ``api_key`` sets
    FLOWCTL_API_KEY for it (and is what ``UpHandle.headers`` sends). Hot reload is off
    (``--no-reload``) unless ``reload=True``."""
    if isinstance(flow, Path):
        flow_path = flow
    else:
        flow_path = tmp_path / flow_name
        flow_path.write_text(flow)
    api_port = api_port or free_port()
    if ui_port == 0:
        ui_port = free_port()
    argv = [PYTHON, "-m", "flowctl", "up", str(flow_path), "--port", str(api_port), "--ui-port", str(ui_port or 0), *([] if reload else ["--no-reload"]), *extra_args]
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child_env.pop("FLOWCTL_API_KEY", None)
    if api_key:
        child_env["FLOWCTL_API_KEY"] = api_key
    if env:
        child_env.update(env)
    log_path = tmp_path / f"up-{api_port}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=child_env, cwd=str(REPO_ROOT), preexec_fn=term_when_parent_dies)
    handle = UpHandle(process=proc, flow_path=flow_path, api_port=api_port, ui_port=ui_port, log_path=log_path, base_path=base_path, api_key=api_key)
    if not wait_ready:
        return handle
    try:
        wait_ready_200(handle, timeout)
    except BaseException:
        handle.kill()
        raise
    return handle


def wait_ready_200(handle: UpHandle, timeout: float = 30.0) -> None:
    def ready() -> bool:
        code = handle.process.poll()
        if code is not None:
            raise AssertionError(f"flowctl up exited with {code} before ready\n--- log ---\n{handle.log_tail()}")
        r = httpx.get(handle.api + "/ready", headers=handle.headers, timeout=2.0)
        return r.status_code == 200

    wait_until(ready, timeout=timeout, interval=0.05, message=lambda: f"flowctl up not ready\n--- log ---\n{handle.log_tail()}", ignore=(httpx.TransportError,))


class UpFactory:
    """What the ``flowctl_up`` fixture yields: call it to start one; all stop at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.handles: list[UpHandle] = []

    def __call__(self, flow: str | Path, extra_args: Sequence[str] = (), **kwargs: Any) -> UpHandle:
        index = len(self.handles)
        work = self.tmp_path / f"up{index}" if index else self.tmp_path
        work.mkdir(parents=True, exist_ok=True)
        handle = start_up(flow, work, extra_args=extra_args, **kwargs)
        self.handles.append(handle)
        return handle

    def close(self) -> None:
        for handle in self.handles:
            try:
                handle.stop(timeout=15.0)
            except Exception:
                handle.kill()


def wait_port_free(port: int, timeout: float = 10.0) -> None:
    from support.procs import port_in_use

    wait_until(lambda: not port_in_use(port), timeout=timeout, message=f"port {port} still in use")


__all__ = ["UpFactory", "UpHandle", "fake_flow_yaml", "start_up", "wait_port_free", "wait_ready_200"]
