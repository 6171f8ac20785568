"""Slow and big (issue 15, point 8): request heads and bodies have read deadlines
(slowloris), a managed process's log rotates while it runs, `flowctl logs` reads only the
tail and only logs of node ids, outputs kept for no-wait runs are capped by bytes, and a
client arriving while flowctl stops gets the documented 503, not a refused connection."""

from __future__ import annotations

import json
import signal
import socket
import sys
import tracemalloc
from pathlib import Path

import httpx
import pytest
from support.fake import expected_text
from support.flowctl_up import fake_flow_yaml
from support.procs import free_port
from support.waiting import async_wait_until, wait_until

from flowctl.cli import main as flowctl_main
from flowctl.engine.flow import load_flow_text
from flowctl.engine.host import FlowHost
from flowctl.engine.paths import state_dir_for
from flowctl.nodes import process_log
from flowctl.server.streaming import OutputStore, run_in_background

pytestmark = pytest.mark.timeout(90)


# -- slowloris ------------------------------------------------------------------------------------


def closed_by_server(sock: socket.socket) -> bytes | None:
    """What the server sent before closing, or None while it is still open."""
    sock.setblocking(False)
    got = b""
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return got or b"(closed)"
            got += data
    except BlockingIOError:
        return None


def test_slow_request_heads_and_bodies_are_cut_off(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port(), tokens=20, server={"read_timeout": 0.5}))
    held: list[tuple[str, socket.socket]] = []
    try:
        for index in range(30):
            sock = socket.create_connection(("127.0.0.1", up.api_port), timeout=5)
            kind = ("silent", "head", "body")[index % 3]
            if kind == "head":
                sock.sendall(b"POST /api/workflows/chat/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            elif kind == "body":
                sock.sendall(b"POST /api/workflows/chat/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"input\"")
            held.append((kind, sock))
        # a stream that lasts longer than the read deadline is not cut: its request was read
        payload = {"input": {"prompt": "p", "tokens": "20", "delay_ms": "60"}}
        answer = httpx.post(up.api + "/workflows/chat/runs", json=payload, headers={"accept": "application/json"}, timeout=30)
        assert answer.status_code == 200 and answer.json()["output"] == expected_text(20)
        for kind, sock in held:
            sent = wait_until(lambda: closed_by_server(sock), timeout=20, message=f"a {kind} connection is still held")  # noqa: B023  (called within the iteration)
            if kind != "silent":
                assert sent.startswith(b"HTTP/1.1 408 "), (kind, sent[:80])
    finally:
        for _, sock in held:
            sock.close()
    assert up.alive()


# -- logs -------------------------------------------------------------------------------------------


async def test_a_chatty_process_log_rotates_while_it_runs(tmp_path: Path, monkeypatch) -> None:
    limit = 64 * 1024
    monkeypatch.setattr(process_log, "LOG_ROTATE_BYTES", limit)
    chatty = "import sys, time\nfor i in range(40000): print('line', i, 'x' * 60)\nprint('all' + ' written', flush=True); time.sleep(300)"
    text = f"""
nodes:
  chatty: {{type: process-start, command: {json.dumps([sys.executable, "-c", chatty])}, restart: never, stop_timeout: 1}}
  call: {{type: http-stream, needs: [chatty], url: "http://127.0.0.1:9/"}}
  out: {{type: sse-sink, source: "${{nodes.call.output as stream/text}}"}}
"""
    host = FlowHost(load_flow_text(text, str(tmp_path / "flow.yml")), state_dir=tmp_path / "state", log=lambda line: None)
    log = tmp_path / "state" / "logs" / "chatty.log"
    await host.start()
    try:
        await async_wait_until(lambda: log.exists() and "all written" in log.read_text(errors="replace"), timeout=60)
        assert log.stat().st_size <= 2 * limit, f"the log grew to {log.stat().st_size} bytes"
        rotated = log.with_name("chatty.log.1")
        assert rotated.exists() and rotated.stat().st_size <= 2 * limit
    finally:
        await host.stop(0)


def test_flowctl_logs_reads_the_tail_only(tmp_path: Path, capsys) -> None:
    flow = tmp_path / "flow.yml"
    logs = state_dir_for(flow) / "logs"
    logs.mkdir(parents=True)
    with (logs / "llm.log").open("w") as out:
        block = "".join(f"old line {i} {'x' * 80}\n" for i in range(10_000))
        for _ in range(25):  # about 25 MB
            out.write(block)
        out.write("last but one\nthe last line\n")
    tracemalloc.start()
    try:
        assert flowctl_main(["logs", "llm", str(flow), "-n", "2"]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert capsys.readouterr().out == "last but one\nthe last line\n"
    assert peak < 2 * 1024 * 1024, f"reading the tail allocated {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("node", ["../../secret", "../secret", "..", "a/b", "/etc/passwd"])
def test_flowctl_logs_refuses_paths_for_node_ids(tmp_path: Path, capsys, node: str) -> None:
    flow = tmp_path / "flows" / "flow.yml"
    (state_dir_for(flow) / "logs").mkdir(parents=True)
    (tmp_path / "secret.log").write_text("private\n")
    (state_dir_for(flow) / "secret.log").write_text("private\n")
    assert flowctl_main(["logs", node, str(flow)]) == 2
    captured = capsys.readouterr()
    assert "private" not in captured.out and "not a node id" in captured.err


# -- outputs of runs nobody listens to -------------------------------------------------------------


async def test_outputs_of_no_wait_runs_are_capped_by_bytes(fake_vllm, tmp_path: Path) -> None:
    server = fake_vllm(tokens=3000)
    text = f"""
nodes:
  chat:
    type: http-stream
    url: {server.url}/v1/chat/completions
    headers: {{content-type: application/json, x-fake-tokens: "${{input.tokens | 3000}}"}}
    body: {{model: qwen2-7b-instruct, stream: true, messages: [{{role: user, content: hi}}]}}
    output: ${{response[].choices[0].delta.content}}
  reply: {{type: sse-sink, source: "${{nodes.chat.output as stream/text}}"}}
"""
    host = FlowHost(load_flow_text(text, str(tmp_path / "flow.yml")), state_dir=tmp_path / "state")
    store = OutputStore(keep=1000, max_bytes=8 * 4096)  # 4 kB per run, 32 kB in all
    tasks: set = set()
    try:
        big = host.prepare(None, {})  # about 17 kB of text
        await run_in_background(host, big, store, tasks)
        assert big.record.status.value == "failed" and "4,096 bytes" in (big.record.error or ""), big.record.error
        assert store.get(big.record.id) is None
        small = []
        for _ in range(20):  # 20 x 2.3 kB: more than the store holds
            run = host.prepare(None, {"tokens": 400})
            await run_in_background(host, run, store, tasks)
            assert store.get(run.record.id) == expected_text(400)
            small.append(run.record.id)
        kept = [run_id for run_id in small if store.get(run_id) is not None]
        assert kept == small[-len(kept):] and len(kept) * len(expected_text(400)) <= store.max_bytes
        assert len(kept) < 20
    finally:
        await host.stop(0)


# -- stopping ----------------------------------------------------------------------------------------


def test_a_client_arriving_while_flowctl_stops_gets_503_not_a_refused_connection(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port(), tokens=8, server={"drain_timeout": 30}), ui_port=None)
    payload = {"input": {"prompt": "p", "tokens": "60", "delay_ms": "50"}}
    with httpx.stream("POST", up.api + "/workflows/chat/runs", json=payload, timeout=60) as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data: ")) == "data: w0"
        up.signal(signal.SIGTERM)
        ready = wait_until(lambda: (r := httpx.get(up.api + "/ready", timeout=5)).status_code == 503 and r, timeout=10, message=lambda: up.log_tail())
        assert ready.json()["not_ready"]["flowctl"] == "shutting down"
        late = httpx.post(up.api + "/workflows/chat/runs", json={"input": {"prompt": "late"}}, timeout=10)
        assert late.status_code == 503 and late.headers["retry-after"] == "5", late.text
        assert "shutting down" in late.json()["error"]
        rest = list(lines)
    assert "event: done" in rest and '"status":"succeeded"' in "".join(rest).replace(" ", "")
    assert up.wait(30) == 0
