"""Errors map to statuses and never leak a traceback, checked in-process (Litestar's
TestClient) on a host whose services were never started."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from flowctl.engine.flow import load_flow_text
from flowctl.engine.host import FlowHost
from flowctl.server.app import create_app
from flowctl.server.errors import describe
from support.flowctl_up import fake_flow_yaml
from support.procs import free_port


@pytest.fixture
def host(tmp_path) -> FlowHost:
    return FlowHost(load_flow_text(fake_flow_yaml(free_port()), str(tmp_path / "flow.yml")))


@pytest.fixture
def client(host: FlowHost) -> Iterator[TestClient[Any]]:
    with TestClient(app=create_app(host, keepalive=0), base_url="http://127.0.0.1") as c:
        yield c


def test_not_ready_is_503_naming_the_service(client: TestClient[Any]) -> None:
    ready = client.get("/api/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False and body["not_ready"] == {"llm": "not started"}
    assert body["services"]["llm"]["state"] == "pending"
    run = client.post("/api/workflows/chat/runs", json={"input": {"prompt": "x"}})
    assert run.status_code == 503
    assert run.json()["node"] == "llm" and "not ready" in run.json()["error"]
    # input errors come first: nothing about services is needed to say a field is missing
    assert client.post("/api/workflows/chat/runs", json={"input": {}}).status_code == 422


def test_an_unexpected_error_is_a_generic_500_logged_server_side(client: TestClient[Any], host: FlowHost, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("secret internals")

    host.readiness = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="flowctl.server"):
        r = client.get("/api/ready")
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "internal error" and body["id"]
    assert "secret" not in r.text and "Traceback" not in r.text
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert body["id"] in logged
    assert any(record.exc_info for record in caplog.records)


def test_a_bug_mid_stream_ends_it_with_an_error_event(client: TestClient[Any], host: FlowHost) -> None:
    host.supervisor.not_ready = lambda node_ids=None: {}  # type: ignore[method-assign]

    async def stream(run: Any):  # type: ignore[no-untyped-def]
        yield "first"
        raise ValueError("secret internals")

    host.stream = stream  # type: ignore[method-assign]
    r = client.post("/api/workflows/chat/runs", json={"input": {"prompt": "x"}})
    assert r.status_code == 200
    assert "data: first" in r.text
    assert "event: error" in r.text and "internal error (id " in r.text
    assert "secret" not in r.text and "Traceback" not in r.text


def test_describe_covers_the_tree() -> None:
    from flowctl.engine.errors import FlowctlError, InputError, RunError, ServiceError, UpstreamError
    from flowctl.engine.errors import Busy, ShuttingDown, WorkflowNotFound

    assert describe(InputError("t", "bad"))[:2] == (422, {"error": "input 't': bad", "field": "t"})
    assert describe(WorkflowNotFound("w", ["a"]))[0] == 404
    assert describe(Busy("full"))[0] == 429 and describe(Busy("full"))[2]["retry-after"]
    assert describe(ShuttingDown("bye"))[0] == 503
    assert describe(ServiceError("llm", "down"))[0] == 503
    assert describe(UpstreamError("chat", "500"))[0] == 502
    assert describe(RunError("chat", "x"))[0] == 500
    assert describe(FlowctlError("x"))[:2] == (500, {"error": "x"})
    status, body, _ = describe(KeyError("secret"))
    assert status == 500 and body["error"] == "internal error" and "secret" not in json.dumps(body)
