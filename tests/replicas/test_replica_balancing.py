"""Local replicas of one process-start node, balanced by `service:`: each replica on a port
of its own (`port: auto`), eight concurrent runs split over them (checked with the fake
servers' own counters), per-replica state on /ready, in `flowctl ps` and in /metrics, and the
replicas' logs under their own names."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import httpx
from replicas_support import replica_rows, replicas_flow, run_many, stats
from supervision.supervision_support import MARK_ENV
from support.fake import expected_text
from support.paths import FAKE_VLLM, PYTHON, REPO_ROOT
from support.waiting import wait_until

from flowctl.nodes.process_log import split_stamp


def flowctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "flowctl", *args], capture_output=True, text=True, timeout=30, cwd=str(REPO_ROOT))


def test_eight_concurrent_runs_are_split_over_two_replicas_on_ports_of_their_own(flowctl_up, mark) -> None:
    up = flowctl_up(replicas_flow(2, mark, tokens=6))
    ready = up.client().get("/ready").json()
    replicas = replica_rows(ready)
    assert [r["name"] for r in replicas] == ["llm.0", "llm.1"]
    assert all(r["state"] == "ready" and isinstance(r["port"], int) and r["pid"] for r in replicas), replicas
    assert replicas[0]["port"] != replicas[1]["port"]
    assert ready["services"]["llm"]["state"] == "ready" and "degraded" not in ready

    runs = [{"tag": f"run-{i}", "delay_ms": 20} for i in range(8)]
    answers = asyncio.run(run_many(up.api, runs))
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert all(a.json()["output"] == expected_text(6) for a in answers)

    served = {r["name"]: {g["tag"] for g in stats(r["url"])["generations"]} for r in replicas}
    assert served["llm.0"] and served["llm.1"], served  # both served
    assert served["llm.0"] | served["llm.1"] == {f"run-{i}" for i in range(8)} and not served["llm.0"] & served["llm.1"]

    # /metrics counts per replica what each fake counted
    metrics = httpx.get(up.root + "/metrics").text
    for r in replicas:
        requests = re.search(rf'flowctl_replica_requests_total{{node="llm",replica="{r["name"]}"}} (\S+)', metrics)
        assert requests and float(requests[1]) == stats(r["url"])["requests"] == len(served[r["name"]]), metrics
        assert f'flowctl_replica_up{{node="llm",replica="{r["name"]}"}} 1.0' in metrics
        assert f'flowctl_replica_in_flight{{node="llm",replica="{r["name"]}"}} 0.0' in metrics


def test_ps_and_logs_show_each_replica(flowctl_up, mark) -> None:
    # `bash -c`: each replica says which GPUs it was given (`resources: {GPU: 1}`), then is the fake
    command = f'echo "gpus=$CUDA_VISIBLE_DEVICES"; exec {PYTHON} {FAKE_VLLM} --quiet --port "$0"'
    up = flowctl_up(replicas_flow(2, mark, command=["bash", "-c", command, "${replica.port}"], placement={"resources": {"GPU": 1}}))
    flow = str(up.flow_path)

    table = flowctl("ps", flow)
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip().startswith("llm")}
    assert set(rows) == {"llm", "llm.0", "llm.1"}, table.stdout
    assert " ready" in rows["llm.0"] and " ready" in rows["llm.1"]
    answer = json.loads(flowctl("ps", flow, "--json").stdout)
    assert [r["name"] for r in answer["services"]["llm"]["replicas"]] == ["llm.0", "llm.1"]

    # `flowctl logs llm` is every replica's log, each line under its replica's name
    logs = flowctl("logs", flow, "llm")
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert any(re.match(r"llm\.0\s+\|.*gpus=0$", line) for line in lines), logs.stdout
    assert any(re.match(r"llm\.1\s+\|.*gpus=1$", line) for line in lines), logs.stdout
    one = flowctl("logs", flow, "llm.1")
    assert one.returncode == 0 and "gpus=1" in one.stdout and "gpus=0" not in one.stdout
    assert Path(up.flow_path.parent / ".flowctl" / up.flow_path.stem / "logs" / "llm.0.log").is_file()


def test_a_router_node_is_fed_the_replicas_urls_one_argument_each(flowctl_up, mark) -> None:
    # a stand-in for vllm-router (`--worker-urls URL...`): prints each argument on a line
    router = (
        "  router:\n    type: process-start\n"
        '    command: ["bash", "-c", "printf \'arg=%s\\\\n\' \\"$@\\"; exec sleep 600", "router", "--worker-urls", "${nodes.llm.output.replicas}"]\n'
        f'    env: {{"{MARK_ENV}": "{mark}"}}\n    restart: never\n    stop_timeout: 1\n'
    )
    text = replicas_flow(2, mark).replace("  generate:\n", router + "  generate:\n")
    up = flowctl_up(text)
    urls = [r["url"] for r in replica_rows(up.client().get("/ready").json())]
    log = up.flow_path.parent / ".flowctl" / up.flow_path.stem / "logs" / "router.log"
    wait_until(lambda: log.is_file() and urls[1] in log.read_text(), timeout=10, message=lambda: log.read_text() if log.is_file() else "no log")
    texts = [split_stamp(line)[1] for line in log.read_text().splitlines()]
    args = [text.removeprefix("arg=") for text in texts if text.startswith("arg=")]
    assert args == ["--worker-urls", *urls], args
