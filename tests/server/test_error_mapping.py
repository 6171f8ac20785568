"""Errors map to statuses and never leak a traceback, checked in-process (Litestar's
TestClient) on a host whose services were never started."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from support.flowctl_up import fake_flow_yaml
from support.procs import free_port

from flowctl.engine.flow import load_flow_text
from flowctl.engine.host import FlowHost
from flowctl.server.app import create_app
from flowctl.server.errors import describe


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
    from flowctl.engine.errors import Busy, FlowctlError, InputError, RunError, ServiceError, ShuttingDown, UpstreamError, WorkflowNotFound

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


def test_each_error_carries_its_meaning_for_http_and_the_shell() -> None:
    from flowctl.engine.errors import (
        BadRequest,
        Busy,
        ExitCode,
        FlowError,
        InputError,
        ModelNotFound,
        RunCancelled,
        RunNotFound,
        ServiceError,
        ShuttingDown,
        Unauthorized,
        UpstreamError,
        WorkflowNotFound,
    )

    table = [
        (FlowError("bad"), 500, ExitCode.FLOW, None),
        (InputError("t", "bad"), 422, ExitCode.USAGE, None),
        (BadRequest("not JSON"), 400, ExitCode.USAGE, None),
        (BadRequest("wrong", field="input", status=422), 422, ExitCode.USAGE, None),
        (Unauthorized("missing API key"), 401, ExitCode.USAGE, None),
        (WorkflowNotFound("w", []), 404, ExitCode.USAGE, None),
        (RunNotFound("r"), 404, ExitCode.USAGE, None),
        (Busy("full"), 429, ExitCode.RUN, "1"),
        (ShuttingDown("bye"), 503, ExitCode.RUN, "5"),
        (ServiceError("llm", "down"), 503, ExitCode.SERVICE, "5"),
        (UpstreamError("chat", "502"), 502, ExitCode.RUN, None),
        (RunCancelled("cancelled"), 499, ExitCode.INTERRUPTED, None),
    ]
    for error, status, exit_code, retry in table:
        got_status, _, headers = describe(error)
        assert (got_status, error.exit_code, headers.get("retry-after")) == (status, exit_code, retry), type(error).__name__
    assert ModelNotFound("gpt", ["chat"]).status_code == 404 and "chat" in str(ModelNotFound("gpt", ["chat"]))


def test_the_openai_body_is_built_from_the_same_attributes() -> None:
    from litestar.exceptions import HTTPException

    from flowctl.engine.errors import Busy, InputError, ModelNotFound, RunCancelled
    from flowctl.server.errors import openai_error_body

    assert openai_error_body(InputError("temperature", "not a number")) == (
        400,  # OpenAI answers every invalid request with 400
        {"error": {"message": "input 'temperature': not a number", "type": "invalid_request_error", "param": "temperature", "code": "invalid_input"}},
    )
    status, body = openai_error_body(ModelNotFound("gpt", ["chat"]))
    assert status == 404 and body["error"]["param"] == "model" and body["error"]["code"] == "model_not_found"
    assert openai_error_body(Busy("full"))[1]["error"]["type"] == "rate_limit_error"
    assert openai_error_body(RunCancelled("gone"))[1]["error"] == {"message": "gone", "type": "server_error", "param": None, "code": "cancelled"}
    assert openai_error_body(HTTPException(status_code=413, detail="too large"))[1]["error"]["code"] == "request_too_large"
    status, body = openai_error_body(KeyError("secret"))
    assert status == 500 and body["error"]["message"].startswith("internal error (id ") and "secret" not in json.dumps(body)
