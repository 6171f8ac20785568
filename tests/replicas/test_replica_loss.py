"""One replica of two killed by SIGKILL in the middle of runs: the runs it was streaming fail
naming it, the runs on the other replica finish whole, the service is degraded (still ready,
new runs go to the survivor) until the lost replica is back, then balanced again."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any

import httpx
from replicas_support import replica_rows, replicas_flow, run_many, stats
from support.fake import expected_text
from support.waiting import wait_until


def test_a_replica_killed_mid_run_fails_its_runs_only_and_comes_back(flowctl_up, mark) -> None:
    # backoff 2 s: the degraded state lasts at least that long, whatever the machine's load
    up = flowctl_up(replicas_flow(2, mark, restart="on-failure", backoff=2))
    client = up.client()
    replicas = replica_rows(client.get("/ready").json())
    urls = {r["name"]: r["url"] for r in replicas}

    # four long runs, two on each replica (least in flight), in a thread of their own
    runs = [{"tag": f"long-{i}", "tokens": 400, "delay_ms": 10} for i in range(4)]
    answers: list[httpx.Response] = []
    runner = threading.Thread(target=lambda: answers.extend(asyncio.run(run_many(up.api, runs))))
    runner.start()
    try:
        wait_until(lambda: all(stats(url)["active_streams"] == 2 for url in urls.values()), timeout=20, message="runs not spread 2 + 2")
        doomed = {g["tag"] for g in stats(urls["llm.1"])["generations"]}
        os.kill(replicas[1]["pid"], signal.SIGKILL)

        # degraded, not down: /ready still 200, the lost replica named, new runs served
        def degraded() -> dict[str, Any] | None:
            answer = client.get("/ready")
            body: dict[str, Any] = answer.json()
            return body if answer.status_code == 200 and body["services"]["llm"]["state"] == "degraded" else None

        body = wait_until(degraded, timeout=10, message="never degraded")
        assert "llm.1" in body["degraded"]["llm"] and body["ready"] is True
        assert replica_rows(body)[0]["state"] == "ready" and replica_rows(body)[1]["state"] != "ready"
        during = asyncio.run(run_many(up.api, [{"tag": "during", "tokens": 3}]))[0]
        assert during.status_code == 200 and during.json()["output"] == expected_text(3)
        assert "during" in {g["tag"] for g in stats(urls["llm.0"])["generations"]}
    finally:
        runner.join(60)

    by_tag = dict(zip([r["tag"] for r in runs], answers, strict=True))
    for tag, answer in by_tag.items():
        if tag in doomed:
            assert answer.status_code >= 500, answer.text
            error = answer.json()["error"]
            assert "node 'generate': replica 'llm.1': POST http://127.0.0.1:" in error, error
            assert "service 'llm' degraded: 1 of 2 replicas ready (llm.1 " in error, error
        else:
            assert answer.status_code == 200 and answer.json()["output"] == expected_text(400), answer.text

    # replaced: ready again, its restart counted, and it takes runs again
    def back() -> list[dict[str, Any]] | None:
        body = client.get("/ready").json()
        return replica_rows(body) if body["services"]["llm"]["state"] == "ready" else None

    rows = wait_until(back, timeout=30, message="llm.1 never came back")
    assert rows[1]["restarts"] == 1 and rows[1]["pid"] != replicas[1]["pid"] and "SIGKILL" in (rows[1]["last_exit"] or "")
    after = asyncio.run(run_many(up.api, [{"tag": f"after-{i}", "tokens": 50, "delay_ms": 10} for i in range(2)]))
    assert [a.status_code for a in after] == [200, 200]
    assert {"after-0", "after-1"} & {g["tag"] for g in stats(rows[1]["url"])["generations"]}
