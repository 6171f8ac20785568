"""Reload semantics (issue 15, point 7), against a real `flowctl up` with hot reload on.

- A save that changes a service's spec no longer cuts the runs in flight on it: they finish
  on the old process (up to `server.drain_timeout`), new runs get 503 meanwhile, then the
  service restarts. `drain_timeout: 0` is the opt-in to cut them at once.
- Server settings a reload changes are applied where they can be (`allowed_hosts`,
  `read_timeout`, `max_queue`...), and the rest is reported as "restart needed for X" in the
  log, on `/ready` and in the UI."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from support.console import messages
from support.fake import expected_text
from support.flowctl_up import UpHandle, fake_flow_yaml
from support.procs import free_port
from support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

STREAMS = 16


def reload_lines(up: UpHandle) -> list[str]:
    return [line for line in messages(up.log_text()) if line.startswith(("reloaded ", "reload failed"))]


def stream_in_thread(up: UpHandle, results: list, tokens: int, delay_ms: int) -> threading.Thread:
    def read() -> None:
        payload = {"input": {"prompt": "p", "tokens": str(tokens), "delay_ms": str(delay_ms)}}
        try:
            with httpx.stream("POST", up.api + "/workflows/chat/runs", json=payload, timeout=60) as response:
                data, kind, end = [], "message", None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        if kind == "message":
                            data.append(line[6:])
                        else:
                            end = (kind, json.loads(line[6:]))
                        kind = "message"
            results.append((data, end))
        except Exception as exc:
            results.append(([], ("exception", repr(exc))))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def start_streams(up: UpHandle, tokens: int, delay_ms: int) -> tuple[list, list[threading.Thread]]:
    results: list = []
    threads = [stream_in_thread(up, results, tokens, delay_ms) for _ in range(STREAMS)]
    wait_until(lambda: _in_flight(up) >= STREAMS, timeout=20)
    return results, threads


def _in_flight(up: UpHandle) -> float:
    for line in httpx.get(up.root + "/metrics", timeout=5).text.splitlines():
        if line.startswith("flowctl_runs_in_flight"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_runs_in_flight_finish_on_the_old_service_before_it_restarts(flowctl_up) -> None:
    port = free_port()
    flow = fake_flow_yaml(port, tokens=8, server={"drain_timeout": 60})
    up = flowctl_up(flow, reload=True)
    results, threads = start_streams(up, tokens=100, delay_ms=30)
    up.flow_path.write_text(fake_flow_yaml(port, tokens=5, server={"drain_timeout": 60}))  # the service's argv changes
    # while the old process drains, the service is not ready for new runs
    ready = wait_until(lambda: (r := httpx.get(up.api + "/ready", timeout=5)).status_code == 503 and r, timeout=20, message=lambda: up.log_tail())
    assert "restarting after a reload" in ready.json()["not_ready"]["llm"]
    refused = httpx.post(up.api + "/workflows/chat/runs", json={"input": {"prompt": "p"}}, timeout=10)
    assert refused.status_code == 503 and "restarting after a reload" in refused.json()["error"]
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == STREAMS
    for data, end in results:
        assert end is not None and end[0] == "done", end
        assert end[1]["status"] == "succeeded" and end[1]["chunks"] == len(data) == 100
    [line] = wait_until(lambda: reload_lines(up) or None, timeout=30)
    assert line.endswith("(restarted: llm)"), line
    wait_until(lambda: httpx.get(up.api + "/ready", timeout=5).status_code == 200, timeout=30)
    answer = httpx.post(up.api + "/workflows/chat/runs", json={"input": {"prompt": "p"}}, headers={"accept": "application/json"}, timeout=30)
    assert answer.json()["output"] == expected_text(5)  # the new process


def test_drain_timeout_zero_cuts_them_at_once_with_the_reason(flowctl_up) -> None:
    port = free_port()
    up = flowctl_up(fake_flow_yaml(port, tokens=8, server={"drain_timeout": 0}), reload=True)
    results, threads = start_streams(up, tokens=400, delay_ms=30)
    up.flow_path.write_text(fake_flow_yaml(port, tokens=5, server={"drain_timeout": 0}))
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == STREAMS
    for data, end in results:
        assert end is not None and end[0] == "error", end
        assert "spec changed (reload)" in end[1]["message"], end
        assert len(data) < 400


def test_settings_a_reload_cannot_apply_are_reported_and_the_rest_apply(flowctl_up) -> None:
    port = free_port()
    up = flowctl_up(fake_flow_yaml(port, tokens=3), reload=True)
    assert httpx.get(up.api + "/workflows", headers={"host": "flows.example.test"}, timeout=5).status_code == 403
    # `port` and `ui_port` come from the command line (not changed, not reported); the others
    # are the flow's own
    server = {"port": 1, "ui_port": 2, "host": "127.0.0.2", "max_body_bytes": 1000, "allowed_hosts": ["flows.example.test"], "read_timeout": 3}
    up.flow_path.write_text(fake_flow_yaml(port, tokens=3, server=server))
    [line] = wait_until(lambda: reload_lines(up) or None, timeout=30, message=lambda: up.log_tail())
    assert "restart needed for host (127.0.0.1 -> 127.0.0.2), max_body_bytes (1048576 -> 1000)" in line, line
    ready = httpx.get(up.api + "/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["restart_needed"] == ["host (127.0.0.1 -> 127.0.0.2)", "max_body_bytes (1048576 -> 1000)"]
    # applied at once
    assert httpx.get(up.api + "/workflows", headers={"host": "flows.example.test"}, timeout=5).status_code == 200
    # a reload back to the start values clears the notice
    up.flow_path.write_text(fake_flow_yaml(port, tokens=3, server={"allowed_hosts": ["flows.example.test"]}))
    wait_until(lambda: "restart_needed" not in httpx.get(up.api + "/ready", timeout=5).json(), timeout=30)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_the_ui_says_restart_needed(flowctl_up) -> None:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    port = free_port()
    up = flowctl_up(fake_flow_yaml(port, tokens=3), reload=True)
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"], headless=True)
        try:
            page = browser.new_page()
            page.goto(up.ui + "/?poll=100")
            page.wait_for_selector("#services li[data-node=llm][data-state=ready]")
            assert page.is_hidden("#restart-needed")
            up.flow_path.write_text(fake_flow_yaml(port, tokens=3, server={"max_body_bytes": 1000}))
            page.wait_for_selector("#restart-needed:not([hidden])", timeout=15_000)
            assert "max_body_bytes (1048576 -> 1000)" in page.text_content("#restart-needed")
        finally:
            browser.close()
