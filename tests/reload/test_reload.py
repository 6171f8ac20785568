"""Hot reload end to end: a real `flowctl up` subprocess (with reload on) serving a flow over the
fake vLLM server, edited on disk the ways editors save, observed over HTTP and in its log.

"Exactly one reload" is checked without sleeping: after the save under test has reloaded, a
different save (a sentinel) is made and waited for; saves are handled in order, so a spurious
extra reload would be logged before the sentinel's.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse
from support.console import messages
from support.fake import expected_text, fake_vllm_argv
from support.flowctl_up import UpHandle, fake_flow_yaml, wait_ready_200
from support.paths import PYTHON, REPO_ROOT
from support.procs import free_port, pid_alive
from support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

PROMPT = 'content: "${input.prompt}"'


def edited(flow: str, prefix: str) -> str:
    """The flow with the chat request's user message prefixed by `echo: PREFIX`: the fake
    server then answers PREFIX followed by the prompt."""
    assert PROMPT in flow
    return flow.replace(PROMPT, f'content: "echo: {prefix} ${{input.prompt}}"', 1)


def with_other_service(flow: str, port: int) -> str:
    """Add a second managed fake server, `other`, that no workflow uses."""
    argv = fake_vllm_argv(port, quiet=True)
    node = (
        "  other:\n"
        "    type: process-start\n"
        f"    command: {json_list(argv)}\n"
        f"    port: {port}\n"
        "    readiness: {http: /v1/models, timeout: 30, interval: 0.05}\n"
        "    restart: {policy: never}\n"
        "    stop_timeout: 5\n"
    )
    return flow.replace("nodes:\n", "nodes:\n" + node, 1)


def json_list(items: list[str]) -> str:
    return "[" + ", ".join('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items) + "]"


class Up:
    """`flowctl up` on a flow in its own folder, with hot reload on."""

    def __init__(self, handle: UpHandle) -> None:
        self.handle = handle
        self.path = handle.flow_path
        self.http = httpx.Client(base_url=handle.api, timeout=30.0)

    # -- saving --------------------------------------------------------------------------

    def write(self, text: str) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    def replace(self, text: str) -> None:
        tmp = self.path.with_name(f".{self.path.name}.swp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)

    # -- observing ------------------------------------------------------------------------

    def reloads(self) -> list[str]:
        return [line for line in messages(self.handle.log_text()) if line.startswith(("reloaded ", "reload failed"))]

    def wait_reloads(self, n: int, timeout: float = 20.0) -> list[str]:
        def enough() -> bool:
            if not self.handle.alive():
                raise AssertionError(f"flowctl up exited\n{self.handle.log_tail()}")
            return len(self.reloads()) >= n

        wait_until(enough, timeout=timeout, message=lambda: f"{n} reload(s) expected\n--- log ---\n{self.handle.log_tail()}")
        return self.reloads()

    def ready(self) -> httpx.Response:
        return self.http.get("/ready")

    def pid(self, node: str) -> int:
        return self.ready().json()["services"][node]["pid"]

    def run(self, prompt: str = "p", **inputs: str) -> str:
        r = self.http.post("/workflows/chat/runs", json={"input": {"prompt": prompt, **inputs}}, headers={"Accept": "application/json"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "succeeded", body
        return body["output"]

    def sentinel(self, flow: str) -> None:
        """A different save, waited for until it shows."""
        before = len(self.reloads())
        self.write(edited(flow, "sentinel"))
        self.wait_reloads(before + 1)
        assert self.run("p") == "sentinel p"


@pytest.fixture
def up_reloading(tmp_path: Path) -> Iterator:
    handles: list[UpHandle] = []

    def start(flow: str) -> Up:
        folder = tmp_path / f"flows{len(handles)}"
        folder.mkdir()
        path = folder / "flow.yml"
        path.write_text(flow, encoding="utf-8")
        api_port, ui_port = free_port(), free_port()
        argv = [PYTHON, "-m", "flowctl", "up", str(path), "--port", str(api_port), "--ui-port", str(ui_port)]
        log_path = tmp_path / f"up-{api_port}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("FLOWCTL_API_KEY", None)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=str(REPO_ROOT))
        handle = UpHandle(process=proc, flow_path=path, api_port=api_port, ui_port=ui_port, log_path=log_path)
        handles.append(handle)
        wait_ready_200(handle, timeout=30)
        # the watcher starts once the API serves: wait for it to be told so in the log
        wait_until(lambda: "serving " in handle.log_text(), timeout=10)
        return Up(handle)

    yield start
    for handle in handles:
        try:
            handle.stop(timeout=15.0)
        except Exception:
            handle.kill()


def test_edit_during_a_long_stream(up_reloading) -> None:
    """The stream in flight completes unchanged; the next run sees the edit; nothing restarts."""
    flow = fake_flow_yaml(free_port())
    up = up_reloading(flow)
    pid = up.pid("llm")
    with httpx.Client(base_url=up.handle.api, timeout=30.0) as client:
        payload = {"input": {"prompt": "hello", "tokens": "40", "delay_ms": "40"}}
        with connect_sse(client, "POST", "/workflows/chat/runs", json=payload) as source:
            events = source.iter_sse()
            first = next(events)
            assert first.data == "w0"
            up.write(edited(flow, "edited"))
            [line] = up.wait_reloads(1)
            assert re.fullmatch(rf"reloaded {re.escape(str(up.path))} in \d+ ms \(restarted: none\)", line)
            assert up.run("x") == "edited x"  # while the long stream is still going
            rest = []
            for event in events:
                if event.event == "done":
                    done = event.json()
                    break
                rest.append(event.data)
    text = "w0" + "".join(" " + data if not data.startswith(" ") else data for data in rest)
    assert text == expected_text(40)
    assert done["status"] == "succeeded" and done["chunks"] == 40
    assert up.pid("llm") == pid


def test_broken_edit_then_fix(up_reloading) -> None:
    flow = fake_flow_yaml(free_port(), tokens=3)
    up = up_reloading(flow)
    pid = up.pid("llm")
    broken = edited(flow, "broken").replace("    readiness:", "    readyness:", 1)
    bad_line = next(i for i, line in enumerate(broken.splitlines(), 1) if "readyness" in line)
    up.write(broken)
    [line] = up.wait_reloads(1)
    where = f"{up.path}:{bad_line}:"
    assert line.startswith(f"reload failed, still serving the last good flow: {where}"), line
    assert "readyness" in line
    ready = up.ready()
    assert ready.status_code == 200  # a warning, still ready
    assert ready.json()["reload_error"].startswith(where)
    assert up.run("p") == "w0 w1 w2"  # the last good flow still serves

    up.write(edited(flow, "fixed"))
    [_, line] = up.wait_reloads(2)
    assert line.endswith("(restarted: none)"), line
    ready = up.ready()
    assert ready.status_code == 200 and "reload_error" not in ready.json()
    assert up.run("p") == "fixed p"
    assert up.pid("llm") == pid


def test_process_command_edit_restarts_that_process_only(up_reloading) -> None:
    port, other_port = free_port(), free_port()
    up = up_reloading(with_other_service(fake_flow_yaml(port), other_port))
    llm, other = up.pid("llm"), up.pid("other")
    assert up.run("p") == expected_text(8)
    up.replace(with_other_service(fake_flow_yaml(port, tokens=3), other_port))
    [line] = up.wait_reloads(1, timeout=30)
    assert line.endswith("(restarted: llm)"), line
    assert not pid_alive(llm)
    assert up.pid("llm") not in (None, llm)
    assert up.pid("other") == other
    log = up.handle.log_text()
    started = {node: sum(m.startswith("started pid") for m in messages(log, node)) for node in ("llm", "other")}
    assert started == {"llm": 2, "other": 1}, started
    assert up.run("p") == "w0 w1 w2"
    assert up.ready().status_code == 200


def test_rename_based_save_reloads_once(up_reloading) -> None:
    flow = fake_flow_yaml(free_port())
    up = up_reloading(flow)
    pid = up.pid("llm")
    up.replace(edited(flow, "renamed"))
    up.wait_reloads(1)
    assert up.run("p") == "renamed p"
    up.sentinel(flow)
    reloads = up.reloads()
    assert len(reloads) == 2 and all("reloaded" in line for line in reloads), reloads
    assert up.pid("llm") == pid


def test_burst_of_writes_reloads_once(up_reloading) -> None:
    flow = fake_flow_yaml(free_port())
    up = up_reloading(flow)
    final = edited(flow, "burst")
    up.write(final[: len(final) // 2])
    up.write("")
    up.replace(final)
    up.path.touch()
    up.wait_reloads(1)
    assert up.run("p") == "burst p"
    up.sentinel(flow)
    reloads = up.reloads()
    assert len(reloads) == 2 and all("reloaded" in line for line in reloads), reloads
