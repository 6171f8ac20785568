"""Concurrency bounds (queue, then 429) and the API key rule, against real `flowctl up`s."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
from httpx_sse import connect_sse
from support.fake import expected_text
from support.flowctl_up import fake_flow_yaml
from support.paths import REPO_ROOT
from support.procs import free_port, port_in_use

SLOW = {"prompt": "slow", "tokens": "200", "delay_ms": "10"}


def test_excess_runs_queue_then_get_429(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port(), server={"max_concurrency": 1, "max_queue": 1}), ui_port=None)
    with httpx.Client(base_url=up.api, timeout=20) as a, httpx.Client(base_url=up.api, timeout=20) as b, httpx.Client(base_url=up.api, timeout=20) as c:
        with connect_sse(a, "POST", "/workflows/chat/runs", json={"input": SLOW}) as first:
            events = first.iter_sse()
            assert next(events).data == "w0"  # the one slot is taken
            # an SSE answer starts (headers) at once, even while the run waits for a slot
            with connect_sse(b, "POST", "/workflows/chat/runs", json={"input": {"prompt": "queued", "tokens": "3"}}) as queued:
                run_id = queued.response.headers["x-run-id"]
                assert c.get(f"/runs/{run_id}").json()["status"] == "queued"
                # the second waits in the queue (one place): a third is refused before anything runs
                for refused in (
                    c.post("/workflows/chat/runs", json={"input": {"prompt": "x"}}),
                    c.post("/workflows/chat/runs", json={"input": {"prompt": "x"}}, headers={"Accept": "application/json"}),
                    c.post("/workflows/runs", json={"input": {"prompt": "x"}}),
                ):
                    assert refused.status_code == 429
                    assert "queue" in refused.json()["error"]
                    assert refused.headers["retry-after"]
                rest = list(events)
                assert rest[-1].event == "done"
                second = list(queued.iter_sse())
                assert "".join(e.data for e in second if e.event == "message") == expected_text(3)
                assert json.loads(second[-1].data)["status"] == "succeeded"
        # the slot is free again
        r = c.post("/workflows/chat/runs", json={"input": {"prompt": "x", "tokens": "2"}}, headers={"Accept": "application/json"})
        assert r.status_code == 200


def test_no_queue_means_429_at_once(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port(), server={"max_concurrency": 1, "max_queue": 0}), ui_port=None)
    with httpx.Client(base_url=up.api, timeout=20) as a, httpx.Client(base_url=up.api, timeout=20) as b:
        with connect_sse(a, "POST", "/workflows/chat/runs", json={"input": SLOW}) as first:
            events = first.iter_sse()  # keep it: a dropped iterator closes the connection
            assert next(events).data == "w0"
            refused = b.post("/workflows/chat/runs", json={"input": {"prompt": "x"}})
            assert refused.status_code == 429, refused.text[:200]
            # another workflow has its own bound
            assert b.post("/workflows/complete/runs", json={"input": {"prompt": "x"}}).status_code == 200


def test_an_api_key_is_required_when_set_even_on_loopback(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port()), api_key="s3cret-key")
    with httpx.Client(base_url=up.api, timeout=10) as anon:
        assert anon.get("/health").status_code == 200
        assert httpx.get(up.root + "/health").status_code == 200  # probes know no key
        assert httpx.get(up.root + "/version").status_code == 401
        assert httpx.get(up.root + "/version", headers=up.headers).status_code == 200
        for r in (anon.get("/ready"), anon.get("/workflows"), anon.post("/workflows/chat/runs", json={"input": {"prompt": "x"}})):
            assert r.status_code == 401
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert anon.get("/ready", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert anon.get("/ready", headers={"Authorization": "Basic czNjcmV0LWtleQ=="}).status_code == 401
    with up.client(timeout=10) as authed:
        assert authed.get("/ready").status_code == 200
        r = authed.post("/workflows/chat/runs", json={"input": {"prompt": "x", "tokens": "2"}}, headers={"Accept": "application/json"})
        assert r.json()["output"] == expected_text(2)
    # the UI's page loads without a key; the API behind it does not
    assert httpx.get(up.ui + "/").status_code == 200
    assert httpx.get(up.ui + "/app.js").status_code == 200
    assert httpx.get(up.ui + "/api/workflows").status_code == 401
    assert httpx.get(up.ui + "/api/workflows", headers=up.headers).status_code == 200
    assert httpx.get(up.ui + "/ui-config.json").json()["auth"] is True


def _env_without_key() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FLOWCTL_API_KEY", None)
    return env


def test_a_non_loopback_bind_without_a_key_is_refused(tmp_path) -> None:
    fake_port = free_port()
    flow = tmp_path / "flow.yml"
    flow.write_text(fake_flow_yaml(fake_port))
    result = subprocess.run(
        [sys.executable, "-m", "flowctl", "up", str(flow), "--host", "0.0.0.0", "--port", str(free_port()), "--no-reload"],
        capture_output=True, text=True, timeout=30, env=_env_without_key(), cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "FLOWCTL_API_KEY" in lines[0] and "--insecure" in lines[0]
    assert not port_in_use(fake_port)  # nothing was started


def test_a_non_loopback_bind_with_insecure_serves(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port()), extra_args=["--host", "0.0.0.0", "--insecure"], ui_port=None)
    assert httpx.get(up.api + "/ready").status_code == 200


def test_a_non_loopback_bind_with_a_key_checks_it(flowctl_up) -> None:
    up = flowctl_up(fake_flow_yaml(free_port()), extra_args=["--host", "0.0.0.0"], api_key="k", ui_port=None)
    assert httpx.get(up.api + "/workflows").status_code == 401
    assert httpx.get(up.api + "/workflows", headers=up.headers).status_code == 200
    assert json.loads(httpx.get(up.api + "/health").text) == {"status": "ok"}
