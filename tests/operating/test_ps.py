"""`flowctl ps`: a table of a running `up`'s services (state, pid, port, restarts, uptime, why
it last went down, URL) with its API and UI URLs; `--json`; a clear answer when nothing is up
or it is still starting; rows for whatever per-item detail (replicas) a service reports."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
from support.fake import fake_vllm_argv
from support.flowctl_up import fake_flow_yaml
from support.flows import chat_nodes, chat_url, server_node
from support.paths import PYTHON, REPO_ROOT
from support.procs import free_port
from support.waiting import wait_until

from flowctl.server import ps as ps_module
from flowctl.server.pidfile import UpRecord


def flowctl(*args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "flowctl", *args], capture_output=True, text=True, timeout=30, cwd=str(cwd), env={**os.environ, **(env or {})})


def table(text: str) -> dict[str, dict[str, str]]:
    """The table's rows by service, each a dict by column heading (cells cut at the
    heading's column)."""
    lines = text.splitlines()
    head_at = next(i for i, line in enumerate(lines) if line.startswith("SERVICE"))
    head = lines[head_at]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", head)]
    names = [head[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = {}
    for line in lines[head_at + 1 :]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def test_nothing_up_is_said_plainly(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yml"
    flow.write_text(fake_flow_yaml(free_port()))
    result = flowctl("ps", str(flow))
    assert result.returncode == 0, result.stderr
    assert f"{flow} is not up" in result.stdout and "flowctl up" in result.stdout
    answer = json.loads(flowctl("ps", str(flow), "--json").stdout)
    assert answer["up"] is False and answer["flow"] == str(flow)


def test_a_running_up_as_a_table_and_as_json(flowctl_up) -> None:
    port, other = free_port(), free_port()
    flow = (
        "version: 1\nname: two\nnodes:\n"
        + server_node("llm", fake_vllm_argv(port, quiet=True), port, restart="on-failure", backoff=0.1)
        + server_node("other", fake_vllm_argv(other, quiet=True), other)
        + chat_nodes(chat_url(port), needs="llm")
    )
    up = flowctl_up(flow)
    ready = httpx.get(up.api + "/ready", timeout=5).json()
    result = flowctl("ps", str(up.flow_path))
    assert result.returncode == 0, result.stderr
    assert f"{up.flow_path}: up for " in result.stdout and f"(pid {up.pid}), ready" in result.stdout
    assert f"API     {up.api}" in result.stdout and f"web UI  {up.ui}" in result.stdout
    rows = table(result.stdout)
    llm = rows["llm"]
    assert llm["TYPE"] == "process-start" and llm["STATE"] == "ready"
    assert llm["PID"] == str(ready["services"]["llm"]["pid"]) and llm["PORT"] == str(port) and llm["RESTARTS"] == "0"
    assert llm["URL"] == f"http://127.0.0.1:{port}" and re.fullmatch(r"\d+s", llm["UPTIME"])
    assert rows["other"]["PORT"] == str(other)

    # a crash and its restart: the count and the reason show
    os.kill(ready["services"]["llm"]["pid"], signal.SIGKILL)
    wait_until(lambda: httpx.get(up.api + "/ready", timeout=5).json()["services"]["llm"]["restarts"] == 1 and httpx.get(up.api + "/ready", timeout=5).status_code == 200, timeout=15)
    llm = table(flowctl("ps", str(up.flow_path)).stdout)["llm"]
    assert llm["RESTARTS"] == "1" and llm["LAST EXIT"] == "was killed by SIGKILL" and llm["STATE"] == "ready"

    answer = json.loads(flowctl("ps", "--json", str(up.flow_path)).stdout)
    assert answer["up"] is True and answer["pid"] == up.pid and answer["api"] == up.api and answer["ui"] == up.ui
    assert answer["services"]["llm"]["last_exit"] == "was killed by SIGKILL" and answer["services"]["other"]["port"] == other


def test_found_from_the_flows_directory_without_naming_it(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port()))
    result = flowctl("ps", cwd=up.flow_path.parent)
    assert "up for" in result.stdout and "llm" in result.stdout, result.stdout + result.stderr


def test_while_its_services_start_it_says_so(flowctl_up) -> None:
    port = free_port()
    up = flowctl_up(fake_flow_yaml(port, startup_delay_ms=60_000, readiness_timeout=120), wait_ready=False)
    wait_until(lambda: (up.flow_path.parent / ".flowctl" / "flow" / "up.pid").exists(), timeout=15, message=up.log_tail)
    result = flowctl("ps", str(up.flow_path))
    assert result.returncode == 0 and f"(pid {up.pid}), starting" in result.stdout, result.stdout
    assert "still starting" in result.stdout and "flowctl logs -f" in result.stdout


def test_per_item_detail_a_service_reports_gets_rows() -> None:
    """What /ready says per replica (or any list of objects on a service) is a row each."""
    ready = {
        "ready": True,
        "services": {
            "llm": {
                "type": "ray-serve",
                "state": "ready",
                "pid": None,
                "restarts": 0,
                "replicas": [
                    {"id": "a1", "state": "ready", "pid": 11, "port": 9001, "restarts": 2, "last_exit": "was killed by SIGSEGV"},
                    {"id": "b2", "state": "starting", "reason": "loading", "pid": 12, "port": 9002},
                ],
            }
        },
    }
    record = UpRecord(pid=1, flow="f.yml", api="http://127.0.0.1:1/api", started=None)
    rows = table(ps_module._render("f.yml", record, ready, None, colour=False))
    assert rows["llm"]["TYPE"] == "ray-serve"
    assert rows["llm/a1"]["PID"] == "11" and rows["llm/a1"]["RESTARTS"] == "2" and rows["llm/a1"]["LAST EXIT"] == "was killed by SIGSEGV"
    assert rows["llm/b2"]["STATE"] == "starting (loading)" and rows["llm/b2"]["PORT"] == "9002"
